"""Which decoder layers attend in both directions, and how.

transformers 4.53 builds one causal mask in the model's forward and hands it to
every decoder layer (with `sdpa` it is often `None`, and causality then comes from
the attention module's `is_causal` flag). A layer becomes bidirectional when its
attention module has `is_causal = False` *and* it receives a padding-only mask.
We get there through the model's own seams: a forward pre-hook on the model passes
the 2-D padding mask of the call down to the layers, and a pre-hook on each chosen layer swaps the
`attention_mask` keyword for a mask built (once per call) by transformers' own
`create_causal_mask`, widened with an or-mask that lets every query see every key.

Layers that attend through a sliding window (Gemma 2 and 3's local layers, Mistral or
Phi-3 with `sliding_window` set) stay local when unmasked: the window opens on both sides,
so a piece sees the `sliding_window - 1` pieces before it *and* after it, as the pretrained
layer saw them before it only; the mask is the same builder's, and-ed with that window.
"""
from functools import partial
from typing import Dict, FrozenSet, Optional, Tuple

import torch
from transformers import PretrainedConfig, PreTrainedModel
from transformers.masking_utils import create_causal_mask

from .families import sliding_windows
from .settings import SUPPORTED_ATTENTION, attention_error

def check_attention_implementation(config: PretrainedConfig) -> None:
    """Refuse a module whose attention path builds masks the hooks do not control (flash,
    flex): what transformers resolved for this module, which the config value alone
    (`settings.DecoderSettings`) does not pin down."""
    implementation = getattr(config, "_attn_implementation", None) or "eager"
    if implementation not in SUPPORTED_ATTENTION:
        raise attention_error(implementation)


def _see_everything(batch_idx, head_idx, q_idx, kv_idx):
    # Or-ed with the causal pattern: every query may attend to every key;
    # padding is still and-ed in by the mask builder.
    return kv_idx >= 0


def _window_both_sides(window: int):
    """And-ed in for a sliding-window layer: keys less than `window` positions away, on either
    side (the causal sliding mask's `kv > q - window`, mirrored)."""

    def inner(batch_idx, head_idx, q_idx, kv_idx):
        return (kv_idx > q_idx - window) & (kv_idx < q_idx + window)

    return inner


_PADDING_KEY = "spacy_unmask_padding"


class _CallPadding:
    """The 2-D padding mask of one forward call, and the 4-D masks built from it.

    The unmasked layers of one call with the same window share one mask, so the first
    one builds it and the others (and gradient-checkpointing recomputes of the same call)
    reuse it: `masks` maps a window (None: no window) to its mask.
    """

    __slots__ = ("padding", "masks")

    def __init__(self, padding: Optional[torch.Tensor]):
        self.padding = padding
        self.masks = {}


class LayerUnmasker:
    """Installs the hooks that make `layers` of `model` bidirectional.

    `model` is the bare decoder (e.g. `LlamaModel`) whose `layers` hold the decoder
    blocks. The model's pre-hook passes the call's 2-D padding mask down as an extra
    keyword, which the model hands to every decoder layer; each layer's pre-hook
    takes it out again, and the unmasked ones build their mask from it. Keeping the
    padding in the call (not in this object) keeps gradient-checkpointing
    recomputes right. The hooks stay attached to the modules, so wrapping the model
    later (peft) keeps them working.
    """

    def __init__(self, model: PreTrainedModel, layers: FrozenSet[int]):
        check_attention_implementation(model.config)
        self.config = model.config
        self.layers = frozenset(layers)
        self.windows = sliding_windows(model.config)
        self._handles = []
        if not self.layers:
            return
        self._handles.append(model.register_forward_pre_hook(self._pass_padding_down, with_kwargs=True))
        for index, block in enumerate(model.layers):
            if index in self.layers:
                block.self_attn.is_causal = False
                hook = partial(self._swap_mask, window=self.windows[index])
            else:
                hook = self._drop_padding
            self._handles.append(block.register_forward_pre_hook(hook, with_kwargs=True))

    def _pass_padding_down(self, module, args: Tuple, kwargs: Dict):
        return args, {**kwargs, _PADDING_KEY: _CallPadding(kwargs.get("attention_mask"))}

    def _drop_padding(self, module, args: Tuple, kwargs: Dict):
        kwargs = dict(kwargs)
        kwargs.pop(_PADDING_KEY, None)
        return args, kwargs

    def _swap_mask(self, module, args: Tuple, kwargs: Dict, window: Optional[int] = None):
        kwargs = dict(kwargs)
        call = kwargs.pop(_PADDING_KEY, None) or _CallPadding(None)
        if window not in call.masks:
            hidden_states = args[0] if args else kwargs["hidden_states"]
            call.masks[window] = self._bidirectional_mask(hidden_states, call.padding, kwargs, window)
        kwargs["attention_mask"] = call.masks[window]
        return args, kwargs

    def _bidirectional_mask(
        self, hidden_states: torch.Tensor, padding: Optional[torch.Tensor], kwargs: Dict, window: Optional[int]
    ):
        local = window is not None and hidden_states.shape[1] > window
        if not local and (padding is None or bool(padding.all())):
            # No padding and no window that bites: no mask at all, and `is_causal = False`
            # does the rest (this keeps sdpa on its fast kernels).
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
            and_mask_function=_window_both_sides(window) if local else None,
        )
