"""Which floating-point precision the decoder computes in, decided from the hardware.

bfloat16 pays only where the hardware multiplies it natively: on GPUs that support it,
and on CPUs with AMX-BF16 or AVX512-BF16, where oneDNN runs bf16 matrix products several
times faster than float32 (`scripts/roofline.py` measures both on the machine at hand).
Elsewhere torch emulates bf16, about 2x *slower* than float32 (pytorch issue 86270), so
there the decoder stays in float32.

Two config values ask this question, and both are answered here, once per process with a
notice that says which precision was chosen and why:

- `inference_dtype` ("auto", "bfloat16", "float32"): the precision of the decoder's
  weights in a pipeline that is *loaded* (`spacy.load`, `nlp.from_disk`); "auto" picks
  bfloat16 where it is native. It also sets how a saved pipeline stores the weights
  (`storage_dtype`): bfloat16 unless it is "float32".
- `mixed_precision` (bool): bf16 autocast over float32 weights while training (and in a
  pipeline that is not loaded from disk), where bf16 is native.
"""
import warnings
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Optional, Tuple

import torch

class PrecisionNotice(UserWarning):
    """The one-time notice of the precision the decoder runs in. Silence it with
    `warnings.filterwarnings("ignore", category=PrecisionNotice)`."""


@lru_cache(maxsize=1)
def cpu_bf16_instructions() -> Tuple[str, ...]:
    """The CPU's native bfloat16 instruction sets, e.g. ("AMX-BF16", "AVX512-BF16"); () if none.

    torch answers through private functions (torch 2.13: `torch.cpu._is_amx_tile_supported`,
    `_is_avx512_bf16_supported`); where they are gone, Linux's /proc/cpuinfo flags answer.
    """
    found = []
    try:
        if torch.cpu._is_amx_tile_supported():
            found.append("AMX-BF16")
        if torch.cpu._is_avx512_bf16_supported():
            found.append("AVX512-BF16")
        return tuple(found)
    except AttributeError:
        pass
    cpuinfo = Path("/proc/cpuinfo")
    flags = set(cpuinfo.read_text().split()) if cpuinfo.is_file() else set()
    return tuple(name for flag, name in (("amx_bf16", "AMX-BF16"), ("avx512_bf16", "AVX512-BF16")) if flag in flags)


def native_bf16(device: torch.device) -> Tuple[bool, str]:
    """Whether `device` multiplies bfloat16 natively, and a phrase that says why (not)."""
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        if torch.cuda.is_bf16_supported():
            return True, f"the GPU ({name}) supports bfloat16"
        return False, f"the GPU ({name}) has no bfloat16 support"
    if device.type == "cpu":
        found = cpu_bf16_instructions()
        if found:
            return True, f"this CPU has {' and '.join(found)}"
        return False, "this CPU has neither AMX-BF16 nor AVX512-BF16, so bfloat16 would be emulated (about 2x slower)"
    return False, f"bfloat16 is not known to be native on {device.type}"


@dataclass(frozen=True)
class Choice:
    """A decided precision, with the reason given in the notice."""

    dtype: torch.dtype
    reason: str


def inference_choice(setting: str, device: torch.device) -> Choice:
    """The precision a loaded pipeline's decoder runs in, for the `inference_dtype` setting."""
    if setting == "float32":
        return Choice(torch.float32, 'inference_dtype = "float32" in the config')
    if setting == "bfloat16":
        return Choice(torch.bfloat16, 'inference_dtype = "bfloat16" in the config')
    native, why = native_bf16(device)
    if native:
        return Choice(torch.bfloat16, f'inference_dtype = "auto" and {why}')
    return Choice(torch.float32, f'inference_dtype = "auto" and {why}')


def autocast_dtype(mixed_precision: bool, device: torch.device) -> Optional[torch.dtype]:
    """bfloat16 when `mixed_precision` is on and `device` has it natively, else None."""
    if not mixed_precision:
        return None
    native, why = native_bf16(device)
    if native:
        notify(f"spacy-unmask: the decoder's forward pass runs under bfloat16 autocast on {device.type} "
               f"(mixed_precision = true and {why}); the weights stay float32.")
        return torch.bfloat16
    notify(f"spacy-unmask: mixed_precision = true, but the decoder runs in float32 on {device.type}: {why}.")
    return None


def storage_dtype(setting: str, training_dtype: torch.dtype) -> torch.dtype:
    """The precision a saved pipeline stores the decoder's weights in: bfloat16 (half the
    size; a loaded pipeline runs in bf16 where it is native and casts back to float32
    elsewhere, exactly) unless `inference_dtype` is "float32". Weights trained in half
    precision (`dtype`) are stored as they are."""
    if setting == "float32" or training_dtype != torch.float32:
        return training_dtype
    return torch.bfloat16


_NOTIFIED = set()


def notify(message: str) -> None:
    """Say `message` once per process."""
    if message in _NOTIFIED:
        return
    _NOTIFIED.add(message)
    warnings.warn(message, PrecisionNotice, stacklevel=3)



def cast_weights(model: torch.nn.Module, dtype: torch.dtype) -> torch.nn.Module:
    """Store the model's floating-point parameters in `dtype`, and nothing else.

    `model.to(dtype)` would also round buffers such as RoPE's inverse frequencies,
    which transformers keeps in float32: in bfloat16 the rotation angles drift by
    tenths of a radian at a few hundred positions.
    """
    for param in model.parameters():
        if param.is_floating_point() and param.dtype != dtype:
            param.data = param.data.to(dtype)
    return model
