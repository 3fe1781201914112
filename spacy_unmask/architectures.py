"""The registry surface: every function spaCy configs can name."""
from pathlib import Path
from typing import Any, Callable, List, Optional, Union

from spacy.language import Language
from spacy.tokens import Doc
from spacy.util import registry
from spacy_transformers.data_classes import FullTransformerBatch
from spacy_transformers.layers import trfs2arrays
from spacy_transformers.span_getters import configure_strided_spans
from thinc.api import Model, chain
from thinc.types import Floats2d, Ragged

from . import forking
from .batching import PieceLength
from .checks import check_model
from .cpu_ops import use_numpy_blas
from .layer_groups import LayerGroups
from .loading import load_config, resolve_source
from .seam import span_window
from .settings import DecoderSettings, LoraSettings, QuantizationSettings
from .transformer_model import DecoderTransformerModel, replace_listener


@registry.architectures("spacy-unmask.DecoderTransformer.v1")
def create_decoder_transformer(
    name: str,
    unmask: Union[str, int] = "none",
    n_layers: Optional[int] = None,
    lora: Optional[LoraSettings] = None,
    repeat: int = 1,
    attn_implementation: str = "sdpa",
    get_spans: Optional[Callable] = None,
    tokenizer_config: dict = {},
    transformer_config: dict = {},
    mixed_precision: bool = False,
    grad_scaler_config: dict = {},
    dtype: str = "float32",
    gradient_checkpointing: bool = False,
    quantization: Optional[QuantizationSettings] = None,
    inference_dtype: str = "auto",
    learn_rate_scale: float = 1.0,
) -> Model[List[Doc], FullTransformerBatch]:
    """A decoder LLM (any family in `spacy_unmask.families`: Llama, Mistral, Qwen2/3,
    Gemma 1/2/3, Phi-3, OLMo 2, Granite, SmolLM3) as the model of spaCy's `transformer`
    component, with the causal mask removed in a chosen group of layers. Listeners
    (`spacy-transformers.TransformerListener.v1`) connect to it as to any transformer.

    name (str): A local Hugging Face model folder or a local `.gguf` file. Never
        downloaded: anything that is not a local path is an error when the model is
        initialized. Once trained, the weights travel inside the saved pipeline.
    unmask (str): Which decoder layers see both sides: "none" (plain causal decoder),
        "all", "first_half", "second_half"; a group pattern such as "1100" (layers split
        into as many contiguous, equal-as-possible groups as characters; the first
        character is the group nearest the embeddings); or layer indices and ranges
        such as "0-7,12". Counted over the layers kept by `n_layers`. An unmasked
        sliding-window layer (Gemma 2/3's local layers, Mistral or Phi-3 with
        `sliding_window` set) sees its window on both sides, not the whole sequence.
    n_layers (Optional[int]): Keep only the first n decoder layers (None = all): a
        cheaper model, and intermediate layers label nearly as well as the last.
    lora (Optional[LoraSettings]): None trains all weights; a
        `spacy-unmask.LoRA.v1` block trains only LoRA adapters (applied with peft).
    repeat (int): Sequence repetition: feed each window's pieces `repeat` times in
        one sequence and read every vector from the last copy, which has seen the
        whole window even through causal layers (1 = off). Costs about `repeat`
        times the tokens; windows must fit `repeat` times in the model's positions.
    attn_implementation (str): "sdpa" (default) or "eager"; both honour the unmasking.
        A model whose config soft-caps attention logits (Gemma 2) needs "eager": sdpa
        cannot apply the cap, and is refused for it.
    get_spans (Callable): Cuts docs into windows for the model. Default: strided
        windows of 128 tokens with stride 96, so long documents are labeled whole.
    tokenizer_config (dict): Extra arguments for the tokenizer's `from_pretrained`.
    transformer_config (dict): Extra arguments for the model config's
        `from_pretrained` (e.g. {"output_hidden_states": true}).
    mixed_precision (bool): Run the decoder's forward pass under bfloat16 autocast
        (the weights, their gradients and Adam stay float32) where the device
        multiplies bfloat16 natively: a GPU that supports it, or a CPU with AMX-BF16
        or AVX512-BF16 (`lscpu` flags amx_bf16, avx512_bf16). Elsewhere bf16 would be
        emulated, slower than float32, so the decoder runs in float32 and a one-time
        notice says so. Applies while training and to a pipeline built in the process;
        a pipeline loaded from disk follows `inference_dtype`.
    grad_scaler_config (dict): Settings of the gradient scaler, as in
        spacy-transformers. bfloat16 needs no scaling, so it is off unless
        "enabled" is set here.
    dtype (str): The precision the decoder's weights are stored, trained and saved
        in: "float32" (default), "bfloat16" or "float16". "bfloat16" halves the memory
        and the saved pipeline (a 7B model takes 14 GB, not 28) and runs on a GPU's
        tensor cores; on CPUs without bf16 instructions it is slower than float32.
        Listeners still get float32 vectors. Half precision needs an optimizer torch
        applies (`Adam.v1` with `use_averages = false`), not one thinc must apply; it
        keeps Adam's moments and the update in float32, but a half-precision weight
        still rounds away steps smaller than its precision, so for full fine-tuning
        prefer "float32" with `mixed_precision`, and use half precision under `lora`
        (peft keeps the adapters in float32) or for inference.
    gradient_checkpointing (bool): Keep only each decoder layer's input in the
        forward pass and recompute the rest in backward (transformers' own mechanism,
        non-reentrant): much less memory for big models or long windows, at about a
        third more compute. Unmasked layers get the same masks when recomputed.
    quantization (Optional[QuantizationSettings]): None keeps the weights in `dtype`;
        a `spacy-unmask.BitsAndBytes4bit.v1` block stores the linear layers' weights
        in 4 bits (QLoRA: transformers' `BitsAndBytesConfig`, then peft's
        `prepare_model_for_kbit_training`, which keeps embeddings and norms in
        float32). Requires `lora`: the 4-bit weights stay frozen. Needs the
        bitsandbytes package (`pip install spacy-unmask[quantization]`) and a build
        that runs on the device in use; `initialize` says what is missing otherwise.
        The saved pipeline holds the 4-bit weights with their statistics and the
        adapters (about a quarter of bfloat16's size for the linear layers).
    inference_dtype (str): The precision of the decoder in a pipeline loaded from
        disk (`spacy.load`, a packaged pipeline): "auto" (default) runs in bfloat16
        where the device multiplies it natively (as for `mixed_precision`) and in
        float32 elsewhere, decided when the pipeline loads, with a one-time notice
        naming the precision and the reason; "bfloat16" or "float32" force one.
        A saved pipeline stores the decoder's weights in bfloat16 (half the size)
        unless this is "float32", which stores them as trained (`dtype`). Training a
        loaded pipeline further casts the weights back to `dtype` first. No effect
        on 4-bit weights (`quantization`).
    learn_rate_scale (float): The decoder's learning rate as a multiple of the rate
        `[training.optimizer]` gives every component at each step (the step and the
        weight decay, as thinc's `lr_scale`), on the same schedule. 1 (default) trains
        the decoder and the heads that listen to it at one rate; below 1 lets the heads
        (`ner`, `spancat`, ...), which start from random weights, learn faster than the
        pretrained decoder: `initial_rate = 0.001` with `learn_rate_scale = 0.2` trains
        the heads at 1e-3 and the decoder at 2e-4.
    """
    if get_spans is None:
        get_spans = configure_strided_spans(window=128, stride=96)
    settings = DecoderSettings(
        unmask=LayerGroups.parse(unmask),
        n_layers=n_layers,
        lora=lora,
        attn_implementation=attn_implementation,
        mixed_precision=mixed_precision,
        repeat=repeat,
        dtype=dtype,
        gradient_checkpointing=gradient_checkpointing,
        quantization=quantization,
        inference_dtype=inference_dtype,
        learn_rate_scale=learn_rate_scale,
        window=span_window(get_spans),
    )
    _check_against_local_model(name, settings)
    # A process that builds a decoder forks workers that run torch single-threaded (see
    # `forking`): registered here, where a pipeline with a decoder comes into being
    # (`spacy train`, `spacy.load`), so a process that never builds one forks as before.
    forking.install()
    scaler = {"enabled": False, **grad_scaler_config}
    return DecoderTransformerModel(
        name=name,
        get_spans=get_spans,
        settings=settings,
        tokenizer_config=tokenizer_config,
        transformer_config=transformer_config,
        grad_scaler_config=scaler,
    )


@registry.architectures("spacy-unmask.Tok2VecDecoder.v1")
def create_tok2vec_decoder(
    name: str,
    pooling: Model[Ragged, Floats2d],
    grad_factor: float = 1.0,
    unmask: Union[str, int] = "none",
    n_layers: Optional[int] = None,
    lora: Optional[LoraSettings] = None,
    repeat: int = 1,
    attn_implementation: str = "sdpa",
    get_spans: Optional[Callable] = None,
    tokenizer_config: dict = {},
    transformer_config: dict = {},
    mixed_precision: bool = False,
    grad_scaler_config: dict = {},
    dtype: str = "float32",
    gradient_checkpointing: bool = False,
    quantization: Optional[QuantizationSettings] = None,
    inference_dtype: str = "auto",
    learn_rate_scale: float = 1.0,
) -> Model[List[Doc], List[Floats2d]]:
    """A decoder used directly as one component's "tok2vec" layer, with no shared
    `transformer` component. `nlp.replace_listeners` writes this architecture when a
    listener gets its own copy of a `spacy-unmask.DecoderTransformer.v1`.

    pooling (Model[Ragged, Floats2d]): Reduces a token's pieces to one vector
        (e.g. `reduce_mean.v1`).
    grad_factor (float): Reweights the gradients passed to the decoder (0 freezes it).
    All other arguments: as in `spacy-unmask.DecoderTransformer.v1`.
    """
    decoder = create_decoder_transformer(
        name=name, unmask=unmask, n_layers=n_layers, lora=lora, repeat=repeat,
        attn_implementation=attn_implementation, get_spans=get_spans,
        tokenizer_config=tokenizer_config, transformer_config=transformer_config,
        mixed_precision=mixed_precision, grad_scaler_config=grad_scaler_config, dtype=dtype,
        gradient_checkpointing=gradient_checkpointing, quantization=quantization,
        inference_dtype=inference_dtype, learn_rate_scale=learn_rate_scale,
    )
    # The same nesting that `replace_listeners` builds (spacy-transformers'
    # `replace_listener`), so weights saved from either load into the other.
    return chain(replace_listener(decoder), trfs2arrays(pooling, grad_factor))


def _check_against_local_model(name: str, settings: DecoderSettings) -> None:
    # A config that names a model present here is checked now (the layer count
    # decides whether `unmask` and `n_layers` fit). A saved pipeline may name a
    # folder that is gone: its weights travel with it, so nothing to check then.
    if not Path(str(name)).expanduser().exists():
        return
    check_model(settings, load_config(resolve_source(name), settings.n_layers))


@registry.misc("spacy-unmask.PieceLength.v1")
def create_piece_length(name: str, tokenizer_config: dict = {}) -> Callable[[Any], int]:
    """The `get_length` of spaCy's batchers (e.g. `spacy.batch_by_padded.v1`) that
    counts a document's subword pieces with the decoder's tokenizer, so batches are
    sorted and sized by what the decoder pads (their `size` is then in pieces).

    name (str): The same local model folder or `.gguf` file as the decoder's `name`
        (usually `${paths.model}`), whose tokenizer is used.
    tokenizer_config (dict): As the decoder's `tokenizer_config`.
    """
    return PieceLength(name, tokenizer_config)


@registry.callbacks("spacy-unmask.numpy_blas_ops.v1")
def create_numpy_blas_ops() -> Callable[[Language], Language]:
    """An `[nlp.after_pipeline_creation]` callback: the pipeline's thinc layers (the
    heads that listen to the decoder) multiply matrices with numpy's multi-threaded
    BLAS instead of thinc's single-threaded blis. CPU only: layers on a GPU, or on
    ops other than thinc's default CPU ops, are left as they are.
    """
    return use_numpy_blas


@registry.misc("spacy-unmask.LoRA.v1")
def create_lora(
    r: int = 8,
    alpha: int = 16,
    dropout: float = 0.1,
    target_modules: Optional[List[str]] = None,
) -> LoraSettings:
    """LoRA adapters for `spacy-unmask.DecoderTransformer.v1` (applied with peft).

    r (int): The adapters' rank (the paper: 64 for 7B models; 8-16 suits small ones).
    alpha (int): The scaling numerator; updates are scaled by alpha / r.
    dropout (float): Dropout on the adapters' input during training.
    target_modules (Optional[List[str]]): Names of the linear layers that get adapters,
        e.g. ["q_proj", "v_proj"] or all of q/k/v/o_proj. null (default) takes the model
        family's own: the query and value projections (the paper's choice), or Phi-3's
        fused `qkv_proj`. Names that match no linear layer are an error listing the
        model's linear layers.
    """
    return LoraSettings(r=r, alpha=alpha, dropout=dropout,
                        target_modules=None if target_modules is None else list(target_modules))


@registry.misc("spacy-unmask.BitsAndBytes4bit.v1")
def create_bitsandbytes_4bit(
    quant_type: str = "nf4",
    double_quant: bool = True,
    compute_dtype: str = "bfloat16",
) -> QuantizationSettings:
    """4-bit base weights for `spacy-unmask.DecoderTransformer.v1` (its `quantization`),
    as in QLoRA; applied with transformers' `BitsAndBytesConfig(load_in_4bit=True)`.

    quant_type (str): "nf4" (4-bit NormalFloat, QLoRA's choice) or "fp4".
    double_quant (bool): Quantize the quantization constants too (saves about 0.4 bits
        a weight).
    compute_dtype (str): The precision each matmul de-quantizes the weights to:
        "bfloat16" (default; GPUs with bf16), "float16" or "float32".
    """
    return QuantizationSettings(quant_type=quant_type, double_quant=double_quant, compute_dtype=compute_dtype)
