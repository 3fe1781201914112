"""Which decoder layers attend in both directions, and how.

transformers 4.53 builds one causal mask in the model's forward and hands it to
every decoder layer (with `sdpa` it is often `None`, and causality then comes from
the attention module's `is_causal` flag). A layer becomes bidirectional when its
attention module has `is_causal = False` *and* it receives a padding-only mask.
We get there through the model's own seams: a forward pre-hook on the model keeps
the 2-D padding mask of the call, and a pre-hook on each chosen layer swaps the
`attention_mask` keyword for a mask built by transformers' own
`create_causal_mask`, widened with an or-mask that lets every query see every key.
"""
from typing import Any, Dict, FrozenSet, Optional, Tuple

import torch
from transformers import PretrainedConfig, PreTrainedModel
from transformers.masking_utils import create_causal_mask

from .errors import ConfigError

SUPPORTED_ATTENTION = ("sdpa", "eager")


def check_attention_implementation(config: PretrainedConfig, key: str = "attn_implementation") -> None:
    """Refuse attention paths whose masks the hooks do not control (flash, flex)."""
    implementation = getattr(config, "_attn_implementation", None) or "eager"
    if implementation not in SUPPORTED_ATTENTION:
        raise ConfigError(
            key,
            implementation,
            f"spacy-unmask controls the masks of {', '.join(SUPPORTED_ATTENTION)} only; "
            "flash and flex attention build their own masks and flags",
        )


def _see_everything(batch_idx, head_idx, q_idx, kv_idx):
    # Or-ed with the causal pattern: every query may attend to every key;
    # padding is still and-ed in by the mask builder.
    return kv_idx >= 0


class LayerUnmasker:
    """Installs the hooks that make `layers` of `model` bidirectional.

    `model` is the bare decoder (e.g. `LlamaModel`) whose `layers` hold the decoder
    blocks. The hooks stay attached to those modules, so wrapping the model later
    (peft) keeps them working.
    """

    def __init__(self, model: PreTrainedModel, layers: FrozenSet[int]):
        check_attention_implementation(model.config)
        self.config = model.config
        self.layers = frozenset(layers)
        self._padding_mask: Optional[torch.Tensor] = None
        self._mask: Any = None
        self._mask_ready = False
        self._handles = []
        if not self.layers:
            return
        self._handles.append(model.register_forward_pre_hook(self._remember_padding, with_kwargs=True))
        for index in sorted(self.layers):
            block = model.layers[index]
            block.self_attn.is_causal = False
            self._handles.append(block.register_forward_pre_hook(self._swap_mask, with_kwargs=True))

    def _remember_padding(self, module, args: Tuple, kwargs: Dict) -> None:
        self._padding_mask = kwargs.get("attention_mask")
        self._mask = None
        self._mask_ready = False

    def _swap_mask(self, module, args: Tuple, kwargs: Dict):
        hidden_states = args[0] if args else kwargs["hidden_states"]
        if not self._mask_ready:
            self._mask = self._bidirectional_mask(hidden_states, kwargs)
            self._mask_ready = True
        return args, {**kwargs, "attention_mask": self._mask}

    def _bidirectional_mask(self, hidden_states: torch.Tensor, kwargs: Dict):
        padding = self._padding_mask
        if padding is None or bool(padding.all()):
            # No padding: no mask at all, and `is_causal = False` does the rest
            # (this keeps sdpa on its fast kernels).
            return None
        cache_position = kwargs.get("cache_position")
        if cache_position is None:
            cache_position = torch.arange(hidden_states.shape[1], device=hidden_states.device)
        return create_causal_mask(
            config=self.config,
            input_embeds=hidden_states,
            attention_mask=padding,
            cache_position=cache_position,
            past_key_values=None,
            position_ids=kwargs.get("position_ids"),
            or_mask_function=_see_everything,
        )

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []
