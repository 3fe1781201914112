"""Turning a local folder (Hugging Face layout) or a .gguf file into config, tokenizer and weights.

Nothing here reaches a network: every call passes `local_files_only=True`, and a
name that is not an existing local path is refused before transformers sees it.
"""
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional, Union

from tokenizers import Tokenizer, pre_tokenizers, processors
import torch
from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, AutoTokenizer
from transformers import PretrainedConfig, PreTrainedModel, PreTrainedTokenizerFast

from .errors import ConfigError
from .families import family_of
from .precision import cast_weights
from .settings import n_layers_error

ACCEPTED_NAME = (
    "a local Hugging Face model folder (config.json, tokenizer.json and weights) or a "
    "local .gguf file; spacy-unmask never downloads models"
)
# Chat-tuned GGUF files (SmolLM2-Instruct among them) come out of transformers'
# GGUF conversion with the chat *start* marker as EOS; the end marker is the real one.
_CHAT_END = "<|im_end|>"


@dataclass(frozen=True)
class ModelSource:
    """Where the weights live: a folder, plus the GGUF file's name inside it if any."""

    folder: Path
    gguf_file: Optional[str] = None

    @property
    def name(self) -> str:
        """The path a user named: the .gguf file, or the folder."""
        return str(self.folder / self.gguf_file) if self.gguf_file else str(self.folder)

    @property
    def from_pretrained_kwargs(self) -> Dict:
        kwargs: Dict = {"local_files_only": True}
        if self.gguf_file is not None:
            kwargs["gguf_file"] = self.gguf_file
        return kwargs


def resolve_source(name: Union[str, Path], key: str = "name") -> ModelSource:
    """Check that `name` is a usable local model and say where its parts are."""
    path = Path(str(name)).expanduser()
    if path.is_file():
        if path.suffix.lower() != ".gguf":
            raise ConfigError(key, str(name), f"{ACCEPTED_NAME} (this file is not a .gguf)")
        return ModelSource(path.resolve().parent, path.name)
    if path.is_dir():
        if not (path / "config.json").is_file():
            ggufs = sorted(p.name for p in path.glob("*.gguf"))
            hint = f"; it holds {ggufs}: name one of them" if ggufs else ""
            raise ConfigError(key, str(name), f"{ACCEPTED_NAME} (the folder has no config.json{hint})")
        if not (path / "tokenizer.json").is_file():
            raise ConfigError(key, str(name), f"{ACCEPTED_NAME} (the folder has no tokenizer.json)")
        return ModelSource(path.resolve())
    raise ConfigError(key, str(name), f"{ACCEPTED_NAME} (no such file or folder)")


def load_config(
    source: ModelSource, n_layers: Optional[int] = None, overrides: Optional[Dict] = None
) -> PretrainedConfig:
    """The model's config, cut to its first `n_layers` decoder layers if given."""
    try:
        config = AutoConfig.from_pretrained(
            str(source.folder), **source.from_pretrained_kwargs, **(overrides or {})
        )
    except (OSError, ValueError, ImportError) as err:
        raise ConfigError("name", source.name, f"{ACCEPTED_NAME} ({err})") from err
    if getattr(config, "quantization_config", None) is not None:
        # transformers would load it quantized whatever the pipeline's config says
        raise ConfigError(
            "name", source.name,
            f"{ACCEPTED_NAME}, with unquantized weights: this one holds quantized weights (its config.json "
            "has a quantization_config). Point `name` "
            "at the original (float) folder and set [components.transformer.model.quantization] to train on 4 bits",
        )
    total = config.num_hidden_layers
    if n_layers is not None:
        if isinstance(n_layers, bool) or not isinstance(n_layers, int) or not 1 <= n_layers <= total:
            raise n_layers_error(n_layers, total)
        config.num_hidden_layers = n_layers
        if getattr(config, "layer_types", None):
            config.layer_types = list(config.layer_types[:n_layers])
    # The transformer layer never generates: a KV cache is only overhead.
    config.use_cache = False
    return config


def load_tokenizer(source: ModelSource, tokenizer_config: Optional[Dict] = None) -> PreTrainedTokenizerFast:
    """The model's tokenizer, made fit for labeling (see `prepare_tokenizer`)."""
    try:
        tokenizer = AutoTokenizer.from_pretrained(
            str(source.folder), **source.from_pretrained_kwargs, **(tokenizer_config or {})
        )
    except (OSError, ValueError, TypeError, ImportError) as err:
        raise ConfigError("name", source.name, f"{ACCEPTED_NAME} (no usable tokenizer: {err})") from err
    return prepare_tokenizer(tokenizer, from_gguf=source.gguf_file is not None)


def prepare_tokenizer(tokenizer, from_gguf: bool = False) -> PreTrainedTokenizerFast:
    """A plain fast tokenizer with a pad token, right padding and (for GGUF) no BOS.

    Decoder tokenizers often lack a pad token; padding is always on the right so
    positions start at 0 for every sequence. The result is a plain
    `PreTrainedTokenizerFast`, which spacy-transformers' shim can serialize.
    """
    if not getattr(tokenizer, "is_fast", False):
        raise ConfigError(
            "name", getattr(tokenizer, "name_or_path", "?"),
            "a model whose tokenizer has a fast version (tokenizer.json): character "
            "offsets are needed to align pieces to spaCy tokens",
        )
    backend = Tokenizer.from_str(tokenizer.backend_tokenizer.to_str())
    backend.no_padding()
    backend.no_truncation()
    bos, eos, unk, pad = tokenizer.bos_token, tokenizer.eos_token, tokenizer.unk_token, tokenizer.pad_token
    if from_gguf:
        if _CHAT_END in backend.get_vocab():
            eos = _CHAT_END
        # transformers' GGUF conversion adds a BOS template; the labeler wants the
        # text's pieces only, with offsets that skip the leading space.
        if isinstance(backend.pre_tokenizer, pre_tokenizers.ByteLevel):
            backend.post_processor = processors.ByteLevel(trim_offsets=True)
        else:
            backend.post_processor = None
        bos = None
    if pad is None:
        pad = eos if eos is not None else unk
    if pad is None:
        raise ConfigError("name", tokenizer.name_or_path, "a tokenizer with a pad, eos or unk token to pad with")
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=bos,
        eos_token=eos,
        unk_token=unk,
        pad_token=pad,
        padding_side="right",
        model_max_length=tokenizer.model_max_length,
        clean_up_tokenization_spaces=False,
        # Decoders take no segment ids; spacy-transformers would pass them on.
        model_input_names=["input_ids", "attention_mask"],
    )


def load_weights(
    source: ModelSource,
    config: PretrainedConfig,
    attn_implementation: str,
    dtype: torch.dtype = torch.float32,
    quantization: Optional[Dict] = None,
) -> PreTrainedModel:
    """The bare decoder (no LM head) with pretrained weights, stored in `dtype`.

    quantization: extra `from_pretrained` arguments that quantize while loading
    (`quantization.load_kwargs`); the linear layers then hold 4-bit weights.
    """
    # Weights of layers beyond `n_layers` are skipped on purpose, and the tensor-parallel
    # plan check complains about every checkpoint when nothing is sharded: keep both quiet.
    loggers = [logging.getLogger(n) for n in ("transformers.modeling_utils", "transformers.integrations.tensor_parallel")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        model, info = AutoModel.from_pretrained(
            str(source.folder),
            config=config,
            attn_implementation=attn_implementation,
            torch_dtype=dtype,
            output_loading_info=True,
            **source.from_pretrained_kwargs,
            **checkpoint_key_mapping(config),
            **(quantization or {}),
        )
    except Exception as err:  # OSError, safetensors' header errors, GGUF parse errors...
        raise ConfigError("name", source.name, f"{ACCEPTED_NAME} (no usable weights: {err})") from err
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)
    if info["missing_keys"]:
        # A checkpoint without these weights would train from random values, silently.
        missing = sorted(info["missing_keys"])
        raise ConfigError(
            "name",
            source.name,
            f"{ACCEPTED_NAME} (its weights lack {len(missing)} tensors the config needs, "
            f"e.g. {missing[:3]})",
        )
    return cast_weights(model, dtype)  # GGUF weights come de-quantized to float32


def checkpoint_key_mapping(config: PretrainedConfig) -> Dict:
    """Extra `from_pretrained` arguments that let the bare decoder read a causal-LM checkpoint.

    transformers strips a causal LM's `model.` key prefix when the bare model class names
    it as its `base_model_prefix`; Gemma 3's text model names none, so its keys must be
    mapped, or every weight would load as missing.
    """
    model_class = AutoModel._model_mapping[type(config)]
    return {} if model_class.base_model_prefix else {"key_mapping": {r"^model\.": ""}}


def convert_gguf(gguf_path: Union[str, Path], output_dir: Union[str, Path]) -> Path:
    """De-quantize a .gguf file once into a plain folder that loads fast.

    The folder holds a causal-LM checkpoint (float32) and the fixed tokenizer.
    """
    source = resolve_source(gguf_path)
    if source.gguf_file is None:
        raise ConfigError("gguf_path", str(gguf_path), "a .gguf file")
    output_dir = Path(output_dir)
    model = AutoModelForCausalLM.from_pretrained(str(source.folder), **source.from_pretrained_kwargs)
    family_of(model.config)
    tokenizer = load_tokenizer(source)
    model.config.eos_token_id = tokenizer.eos_token_id
    model.config.pad_token_id = tokenizer.pad_token_id
    model.config.bos_token_id = None
    output_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(output_dir))
    tokenizer.save_pretrained(str(output_dir))
    return output_dir
