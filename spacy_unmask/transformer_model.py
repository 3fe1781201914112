"""The thinc model: spaCy docs in, spacy-transformers' `FullTransformerBatch` out.

Built the way spacy-transformers builds its `TransformerModel` (a thinc PyTorch wrapper
named "hf-pytorch" inside a model that cuts docs into windows and aligns pieces to tokens),
from spacy-transformers' public data classes and thinc's own wrapper, with our shim in it
from the start. What differs: where the model comes from (`init`, `load_decoder`), the
decoder module (`decoder.DecoderFactory`), the shim's optimizer step and serialization
(`DecoderShim`) and the piece alignment (`alignment.align_spans`). The little that
spacy-transformers does not promise is reached through `seam`.
"""
import copy
import warnings
from typing import Callable, List, Tuple

from spacy.tokens import Doc
from spacy.util import SimpleFrozenDict
from spacy_transformers.data_classes import FullTransformerBatch, HFObjects, WordpieceBatch
from spacy_transformers.layers import split_trf_batch
from thinc.api import (
    ArgsKwargs,
    Model,
    PyTorchGradScaler,
    PyTorchShim,
    chain,
    get_torch_default_device,
    torch2xp,
    xp2torch,
)
from thinc.layers.pytorchwrapper import forward as pytorch_forward

from . import seam
from .alignment import align_spans
from .checks import check_model
from .decoder import DecoderFactory
from .loading import load_config, load_tokenizer, load_weights, resolve_source
from .optimizer import TorchAdam, mirror_refusal, notify_fallback
from .quantization import load_kwargs
from .settings import DecoderSettings


class DecoderShim(PyTorchShim):
    """thinc's PyTorch shim for the decoder: its optimizer step done by torch, and saved in
    spacy-transformers' `HFShim` format (`seam.shim_to_bytes`).

    `finish_update` gets spaCy's thinc optimizer (`[training.optimizer]`). When it is
    an Adam that `TorchAdam` can mirror, the step runs as torch's fused Adam on the
    module's tensors with the settings read from that optimizer; otherwise it runs
    through thinc, one parameter at a time, as in thinc's own shim. Either way the
    decoder's rate is the optimizer's times `learn_rate_scale` (thinc's `lr_scale`).
    """

    def __init__(self, hf_objects: HFObjects, factory: DecoderFactory, grad_scaler_config: dict):
        self.hf_objects = hf_objects
        self.factory = factory
        # thinc's shim would autocast to float16 on a GPU only: the decoder autocasts itself,
        # to bfloat16, on a GPU or a CPU that has it (`DecoderEncoder._autocast`).
        super().__init__(hf_objects.transformer, mixed_precision=False,
                         grad_scaler=PyTorchGradScaler(**grad_scaler_config))

    def set_model(self, hf_objects: HFObjects) -> None:
        self.hf_objects = hf_objects
        self._model = hf_objects.transformer

    def to_bytes(self):
        if self._model is None:
            init_configs = {"_init_tokenizer_config": self.hf_objects._init_tokenizer_config,
                            "_init_transformer_config": self.hf_objects._init_transformer_config}
            return seam.shim_to_bytes(None, None, None, init_configs)
        # The weights are saved in the storage precision (bfloat16 unless
        # `inference_dtype = "float32"`), the live module untouched.
        with self._model.stored():
            state = self._model.state_dict()
        return seam.shim_to_bytes(self._model.config, state, self.hf_objects.tokenizer, {})

    def from_bytes(self, bytes_data):
        device = get_torch_default_device()
        saved = seam.shim_from_bytes(bytes_data, device)
        if saved["config"] is None:
            init = saved["init_configs"]
            self.hf_objects = HFObjects(None, None, None, init["_init_tokenizer_config"], init["_init_transformer_config"])
            return self
        module = self.factory.from_config(saved["config"])
        module.load_state_dict(saved["state"])
        module.to(device)
        self.set_model(HFObjects(saved["tokenizer"], module, None, SimpleFrozenDict(), SimpleFrozenDict()))
        # A pipeline loaded from disk: its decoder runs in the precision `inference_dtype`
        # picks for this device (bf16 where native), decided here, once per load.
        module.run_loaded(device)
        return self

    def finish_update(self, optimizer) -> None:
        named = [((self.id, n), p) for n, p in self._model.named_parameters() if p.requires_grad]
        refusal = mirror_refusal(optimizer)
        lr_scale = self.factory.settings.learn_rate_scale
        if refusal is not None:
            notify_fallback(refusal)
        if self._grad_scaler.found_inf:  # an overflow under mixed precision: skip the step
            for _, param in named:
                if param.grad is not None:
                    param.grad.zero_()
        elif refusal is not None:
            self._thinc_update(optimizer, named, lr_scale)
        else:
            TorchAdam(optimizer, named, lr_scale).step()
        self._grad_scaler.update()

    def _thinc_update(self, optimizer, named, lr_scale: float) -> None:
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
            # the keyword only when it matters: an optimizer of another kind may not take it
            scale = {} if lr_scale == 1.0 else {"lr_scale": lr_scale}
            data, grad = optimizer(key, torch2xp(param.data), torch2xp(param.grad), **scale)
            param.data = xp2torch(data, requires_grad=True, device=param.device)
            returned = xp2torch(grad, device=param.device)
            if returned.data_ptr() != param.grad.data_ptr():
                param.grad.copy_(returned)


def to_torch(model: Model, wordpieces: WordpieceBatch, is_train: bool):
    """thinc's wrapper's `convert_inputs`: the pieces as the decoder's keyword arguments."""
    device = model.shims[0].hf_objects.transformer.device
    kwargs = {
        "input_ids": xp2torch(wordpieces.input_ids, device=device),
        "attention_mask": xp2torch(wordpieces.attention_mask, device=device),
    }
    return ArgsKwargs(args=(), kwargs=kwargs), lambda d_inputs: []


def from_torch(model: Model, inputs_outputs, is_train: bool):
    """thinc's wrapper's `convert_outputs`: the decoder's output as is; its gradient flows
    back into the last hidden state."""
    _, output = inputs_outputs

    def backprop(d_output) -> ArgsKwargs:
        return ArgsKwargs(args=(output.last_hidden_state,), kwargs={"grad_tensors": d_output.values()})

    return output, backprop


class DecoderTransformerModel(Model):
    """The model of spaCy's `transformer` component: a decoder LLM with unmasked layers.

    It offers what the stock component and its listeners use of spacy-transformers'
    `TransformerModel`: the `tokenizer` and `transformer` properties, the init configs,
    and the `set_transformer` / `replace_listener` / `replace_listener_cfg` attributes.
    """

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
        shim = DecoderShim(hf_objects, DecoderFactory(settings), dict(grad_scaler_config))
        # The layer names are part of a saved pipeline's structure: thinc checks them on load.
        wrapper = Model(
            "hf-pytorch",
            pytorch_forward,
            attrs={"convert_inputs": to_torch, "convert_outputs": from_torch},
            shims=[shim],
            dims={"nI": None, "nO": None},
        )
        super().__init__(
            "decoder-transformer",
            forward,
            init=init,
            layers=[wrapper],
            dims={"nO": None},
            attrs={
                "get_spans": get_spans,
                "name": name,
                "settings": settings,
                "set_transformer": set_transformer,
                "has_transformer": False,
                "replace_listener": replace_listener,
                "replace_listener_cfg": replace_listener_cfg,
                "truncation_warned": False,
            },
        )
        self._construction = (tokenizer_config, transformer_config, grad_scaler_config)

    @property
    def shim(self) -> DecoderShim:
        return self.layers[0].shims[0]

    @property
    def tokenizer(self):
        return self.shim.hf_objects.tokenizer

    @property
    def transformer(self):
        return self.shim.hf_objects.transformer

    # The stock `transformer` component reads these when it converts a pipeline folder of
    # spacy-transformers 1.0.
    @property
    def _init_tokenizer_config(self) -> dict:
        return self.shim.hf_objects._init_tokenizer_config

    @property
    def _init_transformer_config(self) -> dict:
        return self.shim.hf_objects._init_transformer_config

    def copy(self):
        copied = DecoderTransformerModel(
            self.attrs["name"], self.attrs["get_spans"], self.attrs["settings"], *self._construction
        )
        copied.dims = copy.deepcopy(self._dims)
        copied.layers[0] = copy.deepcopy(self.layers[0])
        copied.attrs["has_transformer"] = self.attrs["has_transformer"]
        return copied


def set_transformer(model: DecoderTransformerModel, hf_objects: HFObjects) -> None:
    """Put a loaded decoder (`load_decoder`) into the model."""
    if model.attrs["has_transformer"]:
        raise ValueError("Cannot set a second transformer.")
    model.shim.set_model(hf_objects)
    model.attrs["has_transformer"] = True
    model.set_dim("nO", hf_objects.transformer.config.hidden_size)


def replace_listener(model: DecoderTransformerModel) -> Model:
    """A listener's own copy of the decoder (`nlp.replace_listeners`): the model, then the
    split of its batch into one output a doc, as spacy-transformers nests it."""
    return chain(model, split_trf_batch())


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
    check_model(settings, config)
    tokenizer = load_tokenizer(source, tok_cfg)
    device = get_torch_default_device()
    quantization = load_kwargs(settings.quantization, device, config) if settings.quantization is not None else None
    weights = load_weights(source, config, settings.attn_implementation, settings.torch_dtype, quantization)
    module = DecoderFactory(settings).wrap(weights)
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
    batch_encoding = seam.tokenize(model.tokenizer, [span.text for span in flat_spans])
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
    wordpieces, align = seam.truncate(wordpieces, align, limit)
    model_output, bp_tensors = model.layers[0](wordpieces, is_train)
    output = FullTransformerBatch(spans=nested_spans, wordpieces=wordpieces, model_output=model_output, align=align)

    def backprop(d_output: FullTransformerBatch) -> List[Doc]:
        bp_tensors(d_output.model_output)
        return docs

    return output, backprop
