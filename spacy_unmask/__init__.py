"""spacy-unmask: decoder LLMs as spaCy transformer layers, with layer-group causal-mask removal."""
from . import quantization  # noqa: F401  (first: quiets a bitsandbytes notice before peft imports it)
from . import architectures  # noqa: F401  (registers the functions)
from .decoder import DecoderEncoder, DecoderSettings
from .layer_groups import LayerGroups
from .lora import LoraSettings

__version__ = "0.1.0"
__all__ = ["DecoderEncoder", "DecoderSettings", "LayerGroups", "LoraSettings", "__version__"]
