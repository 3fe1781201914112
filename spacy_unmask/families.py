"""The decoder families spacy-unmask supports, and what each needs from the rest of the package.

One table, keyed by transformers' `model_type`: the loader refuses any other type by
naming these, LoRA takes its default `target_modules` from here, and the masking asks
which layers attend through a sliding window. What was checked for each family is listed
in the README ("Decoder families"); the tests build a tiny random model of each.
"""
from dataclasses import dataclass
from typing import Optional, Tuple

from transformers import PretrainedConfig

from .errors import ConfigError


@dataclass(frozen=True)
class Family:
    """What differs between families, as far as spacy-unmask is concerned.

    lora_targets: the linear layers LoRA adapts when a config names none (the
        attention's query and value projections, as in the unmasking paper; Phi-3
        fuses q, k and v into one `qkv_proj`, so its adapter sits on the fused layer).
    sliding: how the model decides which layers attend through a sliding window:
        "layer_types" (per layer, `config.layer_types[i] == "sliding_attention"`),
        "all" (every layer, when `config.sliding_window` is set) or "none".
    """

    lora_targets: Tuple[str, ...] = ("q_proj", "v_proj")
    sliding: str = "none"


FAMILIES = {
    "llama": Family(),
    "mistral": Family(sliding="all"),
    "qwen2": Family(sliding="layer_types"),
    "qwen3": Family(sliding="layer_types"),
    "gemma": Family(),
    "gemma2": Family(sliding="layer_types"),
    "gemma3_text": Family(sliding="layer_types"),
    "phi3": Family(lora_targets=("qkv_proj",), sliding="all"),
    "olmo2": Family(),
    "granite": Family(),
    "smollm3": Family(sliding="layer_types"),
}
SUPPORTED_MODEL_TYPES = tuple(FAMILIES)


def family_of(config: PretrainedConfig) -> Family:
    """The family of a model's config; any other model type is refused, naming the supported ones."""
    family = FAMILIES.get(getattr(config, "model_type", None))
    if family is None:
        raise ConfigError("name", config.model_type, f"the model type must be one of {', '.join(SUPPORTED_MODEL_TYPES)}")
    return family


def sliding_windows(config: PretrainedConfig) -> Tuple[Optional[int], ...]:
    """Each decoder layer's sliding window (None: the layer attends to the whole sequence),
    read the way the family's own forward reads it when it builds the layers' causal masks."""
    family = family_of(config)
    window = getattr(config, "sliding_window", None)
    n_layers = config.num_hidden_layers
    if window is None or family.sliding == "none":
        return (None,) * n_layers
    if family.sliding == "all":
        return (window,) * n_layers
    types = getattr(config, "layer_types", None) or ["full_attention"] * n_layers
    return tuple(window if kind == "sliding_attention" else None for kind in types[:n_layers])


def check_attention(config: PretrainedConfig, attn_implementation: str) -> None:
    """Refuse an attention path that would compute this model's attention wrongly.

    torch's sdpa has no attention-logit soft-capping, and transformers' sdpa path drops the
    `softcap` that Gemma 2 asks for without a word: every layer, masked or not, would then
    attend unlike the pretrained model. The eager path applies it.
    """
    softcap = getattr(config, "attn_logit_softcapping", None)
    if attn_implementation == "sdpa" and softcap is not None:
        raise ConfigError(
            "attn_implementation", attn_implementation,
            f'"eager" for this {config.model_type} model: its config sets attn_logit_softcapping = {softcap}, '
            "which sdpa cannot apply",
        )
