"""What a config says about the decoder, validated: the settings every other module reads.

As peft's `config.py`: plain frozen dataclasses whose `__post_init__` checks each value on
its own (type, range, one of a list), so a bad config value fails when the config is
resolved, naming the key. What can only be checked against a model (its layer count, its
positions, its attention) is `checks.check_model`. This module imports nothing of the
package but the error type and the layer-group spec, so every module can import it.
"""
from dataclasses import dataclass
from typing import List, Optional

import torch

from .errors import ConfigError
from .layer_groups import LayerGroups

# The floating-point precisions configs may name: `dtype` (stored weights) and the 4-bit
# layers' `compute_dtype`.
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
# `inference_dtype`: the precision of a loaded pipeline's decoder (`precision.inference_choice`).
INFERENCE_DTYPES = ("auto", "bfloat16", "float32")
# The attention paths whose masks `masking.LayerUnmasker` controls.
SUPPORTED_ATTENTION = ("sdpa", "eager")
QUANT_TYPES = ("nf4", "fp4")


def attention_error(value) -> ConfigError:
    return ConfigError(
        "attn_implementation", value,
        f"one of {', '.join(SUPPORTED_ATTENTION)}; flash and flex attention build their own masks, "
        "which spacy-unmask cannot open",
    )


def n_layers_error(value, total: Optional[int] = None) -> ConfigError:
    accepted = f"an integer from 1 to {total}" if total is not None else "a positive integer"
    return ConfigError("n_layers", value, f"null (all layers) or {accepted}")


def is_positive_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _check_bool(key: str, value) -> None:
    if not isinstance(value, bool):
        raise ConfigError(key, value, "true or false")


@dataclass(frozen=True)
class LoraSettings:
    """What `spacy-unmask.LoRA.v1` sets; checked when the config is loaded."""

    r: int = 8
    alpha: int = 16
    dropout: float = 0.1
    # None: the family's own (`families.Family.lora_targets`), decided when applied
    target_modules: Optional[List[str]] = None

    def __post_init__(self):
        if not is_positive_int(self.r):
            raise ConfigError("lora.r", self.r, "a positive integer rank such as 8 or 64")
        if not isinstance(self.alpha, (int, float)) or isinstance(self.alpha, bool) or self.alpha <= 0:
            raise ConfigError("lora.alpha", self.alpha, "a positive scaling such as 16")
        if not isinstance(self.dropout, (int, float)) or not 0.0 <= float(self.dropout) < 1.0:
            raise ConfigError("lora.dropout", self.dropout, "a probability in [0, 1)")
        if self.target_modules is None:
            return
        if (isinstance(self.target_modules, str) or not self.target_modules
                or not all(isinstance(m, str) and m for m in self.target_modules)):
            raise ConfigError(
                "lora.target_modules",
                self.target_modules,
                "null (the model family's default) or a non-empty list of module names such as ['q_proj', 'v_proj']",
            )
        object.__setattr__(self, "target_modules", list(self.target_modules))


@dataclass(frozen=True)
class QuantizationSettings:
    """What `spacy-unmask.BitsAndBytes4bit.v1` sets; checked when the config is loaded."""

    quant_type: str = "nf4"
    double_quant: bool = True
    compute_dtype: str = "bfloat16"

    def __post_init__(self):
        if self.quant_type not in QUANT_TYPES:
            raise ConfigError("quantization.quant_type", self.quant_type, f"one of {', '.join(QUANT_TYPES)}")
        _check_bool("quantization.double_quant", self.double_quant)
        if self.compute_dtype not in DTYPES:
            raise ConfigError(
                "quantization.compute_dtype", self.compute_dtype,
                f"one of {', '.join(DTYPES)} (the precision the 4-bit weights are de-quantized to for each matmul)",
            )

    @property
    def torch_compute_dtype(self) -> torch.dtype:
        return DTYPES[self.compute_dtype]


@dataclass(frozen=True)
class DecoderSettings:
    """The decoder-side config values of `spacy-unmask.DecoderTransformer.v1`, validated.

    `window` is not a config value of its own: it is the size in tokens of the windows that
    `get_spans` cuts (None where the span getter does not say), carried here for the check
    that `repeat` copies of a window fit the model's positions.
    """

    unmask: LayerGroups
    n_layers: Optional[int] = None
    lora: Optional[LoraSettings] = None
    attn_implementation: str = "sdpa"
    mixed_precision: bool = False
    repeat: int = 1
    dtype: str = "float32"
    gradient_checkpointing: bool = False
    quantization: Optional[QuantizationSettings] = None
    inference_dtype: str = "auto"
    learn_rate_scale: float = 1.0
    window: Optional[int] = None

    def __post_init__(self):
        if not is_positive_int(self.repeat):
            raise ConfigError("repeat", self.repeat, "a positive integer: 1 = no repetition, 2 = the text twice, ...")
        if self.inference_dtype not in INFERENCE_DTYPES:
            raise ConfigError(
                "inference_dtype", self.inference_dtype,
                "one of auto (bfloat16 where the hardware multiplies it natively, else float32), bfloat16, float32",
            )
        _check_bool("mixed_precision", self.mixed_precision)
        if self.quantization is not None and self.lora is None:
            raise ConfigError(
                "quantization", "BitsAndBytes4bit",
                "a [lora] block beside it: 4-bit weights are frozen, only LoRA adapters on top of them train",
            )
        if self.dtype not in DTYPES:
            raise ConfigError("dtype", self.dtype, f"one of {', '.join(DTYPES)} (the precision of the stored weights)")
        _check_bool("gradient_checkpointing", self.gradient_checkpointing)
        if self.attn_implementation not in SUPPORTED_ATTENTION:
            raise attention_error(self.attn_implementation)
        if self.n_layers is not None and not is_positive_int(self.n_layers):
            raise n_layers_error(self.n_layers)
        scale = self.learn_rate_scale
        if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not 0 < scale < float("inf"):
            raise ConfigError(
                "learn_rate_scale", scale,
                "a positive number: the decoder's rate as a multiple of [training.optimizer]'s "
                "(to keep the decoder fixed, list the transformer in [training] frozen_components)",
            )

    @property
    def torch_dtype(self) -> torch.dtype:
        return DTYPES[self.dtype]
