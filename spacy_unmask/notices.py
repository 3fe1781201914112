"""Import-time notices of our dependencies that would only alarm a user; installed by the
package's `__init__`, so they are in place before any module of ours imports the dependency."""
import logging


class UnusedKernelNotice(logging.Filter):
    """bitsandbytes (0.50) warns at import, on CPUs with AVX512-BF16, that the optional kernel of
    its repacked CPU layout is not installed; spacy-unmask never uses that layout
    (`quantization.keep_training_layout`), so the warning says nothing about our runs."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "gemm_4bit_forward" not in record.getMessage()


logging.getLogger("bitsandbytes.backends.cpu.ops").addFilter(UnusedKernelNotice())
