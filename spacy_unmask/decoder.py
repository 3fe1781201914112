"""The PyTorch module spaCy trains: a bare decoder with unmasked layers and optional LoRA.

`DecoderEncoder` runs the decoder as an encoder under the `settings.DecoderSettings` the
config gives; `DecoderFactory` turns a transformers config into a ready module, and is what
the shim (`transformer_model.DecoderShim`) calls to rebuild the module before loading saved
weights, so a saved pipeline needs neither the original folder nor a network.
"""
from contextlib import contextmanager, nullcontext
from typing import Dict, Optional

import torch
from accelerate import init_empty_weights
from torch import nn
from transformers import AutoModel, PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import BaseModelOutput
from transformers.modeling_utils import no_init_weights

from .checks import check_model
from .embedding_grad import accumulate_in_place
from .lora import apply_lora
from .masking import LayerUnmasker
from .precision import autocast_dtype, cast_weights, inference_choice, notify, storage_dtype
from .quantization import holds_4bit_weights, prepare_for_training, rebuild_quantized, split_state
from .repetition import last_copy, repeat_pieces
from .settings import DecoderSettings

# transformers' own recomputation; non-reentrant needs no input that requires grad
# (frozen embeddings under LoRA), and the layers' pre-hooks run again on the recompute
# with the same call's padding, so unmasked layers get the same masks.
CHECKPOINTING = {"use_reentrant": False}


class DecoderEncoder(nn.Module):
    """A bare decoder used as an encoder: hidden states of every piece, float32."""

    def __init__(self, transformer: PreTrainedModel, settings: DecoderSettings):
        super().__init__()
        self.settings = settings
        # Loaded from disk for annotation: the weights run as `inference_dtype` picked, with no
        # autocast, until the module trains again.
        self._loaded = False
        self._autocast_dtypes: Dict[str, Optional[torch.dtype]] = {}
        self._attach(transformer)

    def _attach(self, transformer: PreTrainedModel) -> None:
        settings = self.settings
        self.unmasked_layers = settings.unmask.layers(transformer.config.num_hidden_layers)
        self.unmasker = LayerUnmasker(transformer, self.unmasked_layers)
        if getattr(transformer, "is_loaded_in_4bit", False):
            transformer = prepare_for_training(transformer, settings.gradient_checkpointing, CHECKPOINTING)
        else:
            cast_weights(transformer, settings.torch_dtype)
            if settings.gradient_checkpointing:
                transformer.gradient_checkpointing_enable(gradient_checkpointing_kwargs=CHECKPOINTING)
        if settings.lora is not None:
            transformer = apply_lora(transformer, settings.lora)
        self.transformer = transformer

    @property
    def config(self) -> PretrainedConfig:
        return self.transformer.config

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def forward(self, input_ids: torch.Tensor, attention_mask: Optional[torch.Tensor] = None, **kwargs):
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        repeat = self.settings.repeat
        if repeat > 1:
            input_ids, attention_mask, index = repeat_pieces(input_ids, attention_mask, repeat)
        if self.training:
            if self._loaded:
                # A loaded pipeline trained further goes back to its training precision.
                cast_weights(self.transformer, self.settings.torch_dtype)
                self._loaded = False
            accumulate_in_place(self.transformer)
        with self._autocast():
            output = self.transformer(
                input_ids=input_ids,
                attention_mask=attention_mask,
                use_cache=False,
                return_dict=True,
                **kwargs,
            )

        def piece_states(states: torch.Tensor) -> torch.Tensor:
            # Downstream thinc layers work in float32 (numpy and cupy have no bfloat16).
            states = states.float()
            return last_copy(states, index) if repeat > 1 else states

        hidden_states = output.hidden_states
        if hidden_states is not None:
            hidden_states = tuple(piece_states(h) for h in hidden_states)
        return BaseModelOutput(
            last_hidden_state=piece_states(output.last_hidden_state),
            hidden_states=hidden_states,
            attentions=None if repeat > 1 else output.attentions,
        )

    def _autocast(self):
        # bfloat16 (no loss scaling, unlike thinc's float16) where the device has it
        # natively, GPU or CPU; a pipeline loaded for annotation runs as `inference_dtype` says.
        if not self.settings.mixed_precision or self._loaded:
            return nullcontext()
        device = self.device
        if device.type not in self._autocast_dtypes:
            self._autocast_dtypes[device.type] = autocast_dtype(True, device)
        dtype = self._autocast_dtypes[device.type]
        return nullcontext() if dtype is None else torch.autocast(device.type, dtype=dtype)

    @property
    def compute_dtype(self) -> torch.dtype:
        """The precision the forward pass multiplies in now: bfloat16 under autocast, else the weights'."""
        context = self._autocast()
        if isinstance(context, torch.autocast):
            return context.fast_dtype
        return next(p.dtype for p in self.parameters() if p.is_floating_point())

    def run_loaded(self, device: torch.device) -> None:
        """Cast the weights of a pipeline just loaded from disk (`DecoderShim.from_bytes`) to
        the precision that `inference_dtype` picks for `device`, and say which, once per process."""
        if self.settings.quantization is not None:
            return  # 4-bit weights compute in their own `compute_dtype`
        choice = inference_choice(self.settings.inference_dtype, device)
        name = str(choice.dtype).replace("torch.", "")
        notify(f"spacy-unmask: the loaded pipeline's decoder runs in {name} on {device.type} ({choice.reason}).")
        cast_weights(self.transformer, choice.dtype)
        self._loaded = True

    @contextmanager
    def stored(self):
        """Within the block, `state_dict()` holds the floating-point weights in the precision
        a saved pipeline stores them in (`precision.storage_dtype`); the module is untouched."""
        dtype = storage_dtype(self.settings.inference_dtype, self.settings.torch_dtype)
        if self.settings.quantization is not None or dtype == torch.float32:
            yield
            return

        params = {name for name, _ in self.named_parameters()}  # not buffers: they keep their precision

        def cast(module, state_dict, prefix, local_metadata):
            for key in params:
                value = state_dict.get(prefix + key)
                if value is not None and value.dtype == torch.float32:
                    state_dict[prefix + key] = value.to(dtype)

        handle = self.register_state_dict_post_hook(cast)
        try:
            yield
        finally:
            handle.remove()

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        # Always strict (spacy-transformers' own shim retries with strict=False): a
        # mismatch means the config no longer describes the saved weights.
        if self.settings.quantization is not None:
            return self._load_quantized(state_dict)
        try:
            result = super().load_state_dict(state_dict, strict=True, assign=assign)
        except RuntimeError as err:
            changed = "`quantization` (the saved weights are 4-bit)" if holds_4bit_weights(state_dict) else "`n_layers` or `lora`"
            raise ValueError(
                "The saved decoder weights do not fit the model that the config describes "
                f"(was {changed} changed after training?). "
                f"torch says: {str(err)[:500]}"
            ) from err
        return result

    def _load_quantized(self, state_dict):
        """Rebuild the 4-bit base from its saved packed weights, then load the adapters."""
        base, adapters = split_state(state_dict, "transformer.")
        if not holds_4bit_weights(base):
            raise ValueError(
                "The saved decoder weights are not 4-bit, but the config sets `quantization` "
                "(was it added after training?): load the pipeline with the config it was saved with."
            )
        device = next(iter(state_dict.values())).device
        self._attach(rebuild_quantized(self.config, base, self.settings, device))
        result = super().load_state_dict(adapters, strict=False)
        missing = [key for key in result.missing_keys if ".lora_" in key]
        if missing or result.unexpected_keys:
            raise ValueError(
                "The saved LoRA adapters do not fit the model that the config describes (was `lora` changed "
                f"after training?): missing {missing[:3]}, unexpected {result.unexpected_keys[:3]}"
            )
        return result


class DecoderFactory:
    """Config in, module out: what the shim (`transformer_model.DecoderShim`) rebuilds a saved
    pipeline's decoder with, and what wraps freshly loaded weights (`wrap`)."""

    def __init__(self, settings: DecoderSettings):
        self.settings = settings

    def from_config(self, config: PretrainedConfig) -> DecoderEncoder:
        """The module of a saved pipeline, from its saved config, before its weights load."""
        check_model(self.settings, config)
        config.use_cache = False
        # The saved weights are loaded right after (`DecoderShim.from_bytes`, strictly: every
        # parameter), so drawing random initial values would only cost time (seconds for a
        # decoder, at every `spacy.load`): transformers' own loader skips it the same way.
        # A 4-bit model is rebuilt from its saved packed weights when they are loaded
        # (`DecoderEncoder.load_state_dict`): until then a skeleton with no memory stands in.
        skeleton = init_empty_weights() if self.settings.quantization is not None else no_init_weights()
        with skeleton:
            transformer = AutoModel.from_config(
                config, attn_implementation=self.settings.attn_implementation, torch_dtype=self.settings.torch_dtype
            )
        return self.wrap(transformer)

    def wrap(self, transformer: PreTrainedModel) -> DecoderEncoder:
        return DecoderEncoder(transformer, self.settings)
