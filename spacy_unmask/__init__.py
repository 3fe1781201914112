"""spacy-unmask: decoder LLMs as spaCy transformer layers, with layer-group causal-mask removal.

The package's names are imported on first use: spaCy loads `spacy_unmask.cli` (the
`spacy_cli` entry point) at every `python -m spacy ...` call, which must not pay for
transformers, peft and bitsandbytes. spaCy finds the registered functions through the
package's entry points (`spacy_architectures`, `spacy_misc`, `spacy_callbacks`, and
`spacy_factories` for `bio_ner`), which import `spacy_unmask.architectures` (or
`spacy_unmask.bio_tagger`) when a config names one of them.
"""
import importlib
from typing import Any

from . import notices

# The one process-wide effect of importing the package: a filter for one import-time message of
# bitsandbytes (see `notices`), which must precede any import of transformers or peft.
notices.install()

__version__ = "0.2.0"
_EXPORTS = {"DecoderEncoder": "decoder", "DecoderSettings": "settings", "LayerGroups": "layer_groups",
            "LoraSettings": "settings"}
__all__ = [*_EXPORTS, "__version__"]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted([*globals(), *_EXPORTS])
