"""The thinc model: spaCy docs in, spacy-transformers' `FullTransformerBatch` out.

It reuses spacy-transformers' wrapper, shim, tokenization, truncation and data
classes; what differs is where the model comes from (`init`), the decoder module
(`DecoderFactory`) and the piece alignment (`align_spans`).
"""
import copy
import warnings
from typing import Callable, List, Tuple

from spacy.tokens import Doc
from spacy_transformers.data_classes import FullTransformerBatch, HFObjects, WordpieceBatch
from spacy_transformers.layers._util import replace_listener
from spacy_transformers.layers.hf_shim import HFShim
from spacy_transformers.layers.hf_wrapper import HFWrapper
from spacy_transformers.layers.transformer_model import (
    TransformerModel,
    _convert_transformer_inputs,
    _convert_transformer_outputs,
    huggingface_tokenize,
    set_pytorch_transformer,
)
from spacy_transformers.truncate import truncate_oversize_splits
from thinc.api import Model, get_torch_default_device, torch2xp, xp2torch
from transformers import AutoConfig, PreTrainedTokenizerFast

from .alignment import align_spans
from .decoder import DecoderFactory, DecoderSettings
from .loading import load_config, load_tokenizer, load_weights, resolve_source
from .optimizer import TorchAdam, mirror_refusal, notify_fallback
from .quantization import load_kwargs


class DecoderShim(HFShim):
    """spacy-transformers' shim, with the decoder's optimizer step done by torch.

    `finish_update` gets spaCy's thinc optimizer (`[training.optimizer]`). When it is
    an Adam that `TorchAdam` can mirror, the step runs as torch's fused Adam on the
    module's tensors with the settings read from that optimizer; otherwise it runs
    through thinc, one parameter at a time, as in thinc's own shim.
    """

    def to_bytes(self):
        # The weights are saved in the storage precision (bfloat16 unless
        # `inference_dtype = "float32"`), the live module untouched.
        if self._model is None:
            return super().to_bytes()
        with self._model.stored():
            return super().to_bytes()

    def from_bytes(self, bytes_data):
        # A pipeline loaded from disk: its decoder runs in the precision `inference_dtype`
        # picks for this device (bf16 where native), decided here, once per load.
        super().from_bytes(bytes_data)
        if self._model is not None:
            self._model.run_loaded(get_torch_default_device())
        return self

    def finish_update(self, optimizer) -> None:
        named = [((self.id, n), p) for n, p in self._model.named_parameters() if p.requires_grad]
        refusal = mirror_refusal(optimizer)
        if refusal is not None:
            notify_fallback(refusal)
        if self._grad_scaler.found_inf:  # an overflow under mixed precision: skip the step
            for _, param in named:
                if param.grad is not None:
                    param.grad.zero_()
        elif refusal is not None:
            self._thinc_update(optimizer, named)
        else:
            TorchAdam(optimizer, named).step()
        self._grad_scaler.update()

    def _thinc_update(self, optimizer, named) -> None:
        # thinc's `PyTorchShim.finish_update`, minus its second zeroing of each
        # gradient: thinc's optimizers already hand every gradient back zeroed.
        half = sorted({str(p.dtype).replace("torch.", "") for _, p in named} - {"float32"})
        if half:
            raise ValueError(
                f"The decoder's weights are {', '.join(half)} (`dtype`), which thinc's optimizers cannot update "
                "(they work on float32 numpy arrays). Use `Adam.v1` with `use_averages = false` in "
                '[training.optimizer] (torch applies it), or dtype = "float32".'
            )
        for key, param in named:
            if param.grad is None:
                continue
            data, grad = optimizer(key, torch2xp(param.data), torch2xp(param.grad))
            param.data = xp2torch(data, requires_grad=True, device=param.device)
            returned = xp2torch(grad, device=param.device)
            if returned.data_ptr() != param.grad.data_ptr():
                param.grad.copy_(returned)


class DecoderTransformerModel(TransformerModel):
    """A `TransformerModel` whose transformer is a decoder LLM with unmasked layers."""

    def __init__(
        self,
        name: str,
        get_spans: Callable,
        settings: DecoderSettings,
        tokenizer_config: dict,
        transformer_config: dict,
        grad_scaler_config: dict,
    ):
        hf_objects = HFObjects(None, None, None, dict(tokenizer_config), dict(transformer_config))
        # spacy-transformers' own wrapper, with our shim in place of its HFShim. thinc's
        # shim would autocast to float16 on a GPU only: the decoder autocasts itself, to
        # bfloat16, on a GPU or a CPU that has it (`DecoderEncoder._autocast`).
        shim_args = dict(
            mixed_precision=False,
            config_cls=AutoConfig,
            model_cls=DecoderFactory(settings),
            tokenizer_cls=PreTrainedTokenizerFast,
        )
        wrapper = HFWrapper(
            hf_objects,
            convert_inputs=_convert_transformer_inputs,
            convert_outputs=_convert_transformer_outputs,
            grad_scaler_config=dict(grad_scaler_config),
            **shim_args,
        )
        wrapper.shims[0] = DecoderShim(hf_objects, grad_scaler_config=dict(grad_scaler_config), **shim_args)
        Model.__init__(
            self,
            "decoder-transformer",
            forward,
            init=init,
            layers=[wrapper],
            dims={"nO": None},
            attrs={
                "get_spans": get_spans,
                "name": name,
                "settings": settings,
                "set_transformer": set_pytorch_transformer,
                "has_transformer": False,
                "flush_cache_chance": 0.0,
                "replace_listener": replace_listener,
                "replace_listener_cfg": replace_listener_cfg,
                "truncation_warned": False,
            },
        )
        self._construction = (tokenizer_config, transformer_config, grad_scaler_config)

    def copy(self):
        copied = DecoderTransformerModel(
            self.attrs["name"], self.attrs["get_spans"], self.attrs["settings"], *self._construction
        )
        copied.dims = copy.deepcopy(self._dims)
        copied.layers[0] = copy.deepcopy(self.layers[0])
        copied.attrs["has_transformer"] = self.attrs["has_transformer"]
        return copied


def replace_listener_cfg(tok2vec_model_cfg: dict, listener_model_cfg: dict) -> dict:
    """The config of a listener replaced by its own copy of the decoder (`nlp.replace_listeners`)."""
    result = dict(tok2vec_model_cfg)
    if "TransformerListener" in listener_model_cfg.get("@architectures", ""):
        result["@architectures"] = "spacy-unmask.Tok2VecDecoder.v1"
        for key in ("pooling", "grad_factor"):
            if key in listener_model_cfg:
                result[key] = listener_model_cfg[key]
    return result


def load_decoder(name: str, settings: DecoderSettings, tok_cfg: dict, trf_cfg: dict) -> HFObjects:
    """Tokenizer and ready decoder module from a local folder or .gguf file."""
    source = resolve_source(name)
    config = load_config(source, settings.n_layers, trf_cfg)
    settings.check(config)
    tokenizer = load_tokenizer(source, tok_cfg)
    device = get_torch_default_device()
    quantization = load_kwargs(settings.quantization, device, config) if settings.quantization is not None else None
    weights = load_weights(source, config, settings.attn_implementation, settings.torch_dtype, quantization)
    factory = DecoderFactory(settings)
    module = factory.wrap(weights)
    module.to(device)
    return HFObjects(tokenizer, module, None, tok_cfg, trf_cfg)


def init(model: DecoderTransformerModel, X=None, Y=None) -> None:
    if model.attrs["has_transformer"]:
        return
    hf_objects = load_decoder(
        model.attrs["name"],
        model.attrs["settings"],
        model._init_tokenizer_config,
        model._init_transformer_config,
    )
    model.attrs["set_transformer"](model, hf_objects)


def max_pieces(model: DecoderTransformerModel) -> int:
    """How many pieces one window may hold: the tokenizer's and the positions' limit,
    shared among the copies when the text is repeated."""
    config = model.transformer.config
    positions = getattr(config, "max_position_embeddings", 10**9) // model.attrs["settings"].repeat
    return min(model.tokenizer.model_max_length, positions)


def forward(model: DecoderTransformerModel, docs: List[Doc], is_train: bool) -> Tuple[FullTransformerBatch, Callable]:
    nested_spans = model.attrs["get_spans"](docs)
    flat_spans = [span for doc_spans in nested_spans for span in doc_spans]
    if not flat_spans:
        # Only empty docs: nothing to run, and nothing to backpropagate.
        return FullTransformerBatch.empty(len(docs)), lambda d_output: docs
    batch_encoding = huggingface_tokenize(model.tokenizer, [span.text for span in flat_spans])
    wordpieces = WordpieceBatch.from_batch_encoding(batch_encoding)
    align = align_spans(flat_spans, batch_encoding["offset_mapping"])
    limit = max_pieces(model)
    if wordpieces.input_ids.shape[1] > limit and not model.attrs["truncation_warned"]:
        warnings.warn(
            f"A window of {wordpieces.input_ids.shape[1]} pieces is longer than the model's "
            f"{limit}; its last pieces are dropped and their tokens get zero vectors. "
            "Use a smaller `get_spans` window."
        )
        model.attrs["truncation_warned"] = True
    wordpieces, align = truncate_oversize_splits(wordpieces, align, limit)
    model_output, bp_tensors = model.layers[0](wordpieces, is_train)
    output = FullTransformerBatch(spans=nested_spans, wordpieces=wordpieces, model_output=model_output, align=align)

    def backprop(d_output: FullTransformerBatch) -> List[Doc]:
        bp_tensors(d_output.model_output)
        return docs

    return output, backprop
