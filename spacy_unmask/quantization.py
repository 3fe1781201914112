"""4-bit base weights (QLoRA) through transformers' `BitsAndBytesConfig` and peft.

The decoder's linear layers are stored in 4 bits (bitsandbytes' `Linear4bit`) and stay
frozen; LoRA adapters on top train in float32. What a saved pipeline holds is the module's
own state dict: the 4-bit packed weights with their quantization statistics (absmax,
quantization map, nested statistics for double quantization), the float32 embeddings and
norms, and the adapters, plus the model config, which carries the `quantization_config`.
`rebuild_quantized` turns that back into the same module with transformers' loader for
pre-quantized checkpoints, so loading neither needs the original folder nor quantizes again.
"""
from typing import Dict, List, Tuple

import torch
from peft import prepare_model_for_kbit_training
from transformers import MODEL_MAPPING, BitsAndBytesConfig, PretrainedConfig, PreTrainedModel

from .errors import ConfigError
from .settings import DecoderSettings, QuantizationSettings

def bnb_config(settings: QuantizationSettings) -> BitsAndBytesConfig:
    """transformers' quantization config for the settings: 4-bit, as `BitsAndBytes4bit.v1` says."""
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type=settings.quant_type,
        bnb_4bit_use_double_quant=settings.double_quant,
        bnb_4bit_compute_dtype=settings.torch_compute_dtype,
    )


def prepare_for_training(model: PreTrainedModel, gradient_checkpointing: bool, checkpointing_kwargs: Dict) -> PreTrainedModel:
    """peft's QLoRA preparation: freeze the base, keep the layers left in full precision
    (embeddings, norms) in float32, set up the recomputation, and keep the layout that trains."""
    return keep_training_layout(prepare_model_for_kbit_training(
        model,
        use_gradient_checkpointing=gradient_checkpointing,
        gradient_checkpointing_kwargs=checkpointing_kwargs,
    ))


def linear_input_sizes(config: PretrainedConfig) -> List[int]:
    """The input sizes of a decoder layer's linear layers (q/k/v, o, gate/up, down)."""
    heads = config.num_attention_heads * (getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads)
    return sorted({config.hidden_size, heads, config.intermediate_size})


def check_bitsandbytes(settings: QuantizationSettings, device: torch.device, config: PretrainedConfig = None) -> None:
    """Fail with what is missing unless bitsandbytes can quantize and run this model's layers on `device`.

    A probe, not a version table: what runs depends on the bitsandbytes version and build
    and on the device (bitsandbytes 0.50.2 from PyPI runs 4-bit layers on CPU). The probe
    runs a layer of each of the model's input sizes in a pipeline's order (a prediction
    without gradients, then a training step), set up as `keep_training_layout` sets the
    model's, and checks that the training step still reaches the input's gradient.
    """
    value = f"BitsAndBytes4bit({settings.quant_type}, compute_dtype={settings.compute_dtype})"
    try:
        import bitsandbytes as bnb
    except ImportError as err:
        raise ConfigError(
            "quantization", value,
            "the bitsandbytes package, which is not installed: pip install 'spacy-unmask[quantization]' "
            f"(or set quantization = null) ({err})",
        ) from err
    sizes = linear_input_sizes(config) if config is not None else [64]
    where = "this GPU" if device.type == "cuda" else f"device {device} (no GPU is in use)"
    for size in sizes:
        try:
            layer = bnb.nn.Linear4bit(size, 8, bias=False, compute_dtype=settings.torch_compute_dtype,
                                      quant_type=settings.quant_type, compress_statistics=settings.double_quant)
            layer.weight = bnb.nn.Params4bit(torch.randn(8, size), requires_grad=False, quant_type=settings.quant_type,
                                             compress_statistics=settings.double_quant)
            layer = keep_training_layout(layer.to(device))
            x = torch.randn(2, size, device=device)
            with torch.no_grad():
                layer.eval()(x)
            x.requires_grad_(True)
            layer.train()(x).sum().backward()
            if x.grad is None or getattr(layer.weight.quant_state, "packing_format_for_cpu", False):
                raise RuntimeError("after a prediction, a training step no longer runs through autograd "
                                   "(this version repacks the weights in a way spacy-unmask cannot turn off)")
        except Exception as err:  # bitsandbytes raises RuntimeError, NotImplementedError, its own errors...
            raise ConfigError(
                "quantization", value,
                f"a bitsandbytes build that trains 4-bit layers of input size {size} (this model's) on {where}; "
                f"bitsandbytes {getattr(bnb, '__version__', '?')} cannot ({type(err).__name__}: {str(err)[:300]}). "
                "Use a GPU (`--gpu-id 0` for spacy train, `spacy.require_gpu()` before spacy.load), bitsandbytes "
                "0.50.2 (tested on CPU), or quantization = null",
            ) from err


def keep_training_layout(model: torch.nn.Module) -> torch.nn.Module:
    """Keep 4-bit weights in the layout that trains, on every CPU.

    On CPUs with AVX512-BF16, bitsandbytes (0.50) repacks a layer's weights for a faster
    inference kernel at its first forward without gradients (spaCy's evaluation), for good;
    training steps after that run through a kernel with no autograd support (torch warns of
    "silently incorrect behavior"), and the repacking needs input sizes that are multiples
    of 64. A pipeline trains, evaluates and trains again, so the repacking is turned off.
    """
    for module in model.modules():
        if hasattr(module, "support_avx512bf16_for_cpu"):
            module.support_avx512bf16_for_cpu = False
    return model


def load_kwargs(settings: QuantizationSettings, device: torch.device, config: PretrainedConfig) -> Dict:
    """Extra `from_pretrained` arguments that quantize the weights while loading them onto `device`."""
    check_bitsandbytes(settings, device, config)
    return {"quantization_config": bnb_config(settings), "device_map": {"": device}}


def holds_4bit_weights(state_dict: Dict[str, torch.Tensor]) -> bool:
    """Whether a saved state holds bitsandbytes 4-bit weights (they carry absmax statistics)."""
    return any(key.endswith(".absmax") for key in state_dict)


def split_state(state_dict: Dict[str, torch.Tensor], prefix: str) -> Tuple[Dict, Dict]:
    """A saved module's state as (the base model's checkpoint, the LoRA adapters' tensors).

    Keys under `prefix` are peft's (`base_model.model.X.base_layer.weight`); the base
    checkpoint gets transformers' names (`X.weight`), quantization statistics included.
    """
    base, adapters = {}, {}
    for key, value in state_dict.items():
        if ".lora_" in key:
            adapters[key] = value
            continue
        name = key[len(prefix):] if key.startswith(prefix) else key
        name = name.replace("base_model.model.", "", 1).replace(".base_layer.", ".")
        base[name] = value
    return base, adapters


def rebuild_quantized(
    config: PretrainedConfig, base_state: Dict[str, torch.Tensor], settings: DecoderSettings, device: torch.device
) -> PreTrainedModel:
    """The bare decoder from a pre-quantized checkpoint (as `split_state` returns it)."""
    check_bitsandbytes(settings.quantization, device, config)
    model_class = MODEL_MAPPING[type(config)]
    return model_class.from_pretrained(
        None,
        config=config,
        state_dict=base_state,
        attn_implementation=settings.attn_implementation,
        torch_dtype=settings.torch_dtype,
        device_map={"": device},
    )
