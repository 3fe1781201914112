"""Import-time notices of our dependencies that would only alarm a user.

bitsandbytes logs its notice when it is imported, and transformers and peft import it on
their own whenever it is installed, so the filter must be in place before either is
imported: the package's `__init__` calls `install` first, before anything else of ours.
The filter matches one message on one logger and nothing else.
"""
import logging


class UnusedKernelNotice(logging.Filter):
    """bitsandbytes (0.50) warns at import, on CPUs with AVX512-BF16, that the optional kernel of
    its repacked CPU layout is not installed; spacy-unmask never uses that layout
    (`quantization.keep_training_layout`), so the warning says nothing about our runs."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "gemm_4bit_forward" not in record.getMessage()


_FILTER = UnusedKernelNotice()


def install() -> None:
    """Add the filter (once) to the logger bitsandbytes reports the unused kernel on."""
    logger = logging.getLogger("bitsandbytes.backends.cpu.ops")
    if _FILTER not in logger.filters:
        logger.addFilter(_FILTER)
