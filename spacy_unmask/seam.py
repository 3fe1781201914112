"""The seam to spacy-transformers: every use of it beyond its documented API is here.

spacy-unmask builds on spacy-transformers' public parts (`data_classes`, `layers`'
exports such as `split_trf_batch` and `trfs2arrays`, `span_getters`, the `transformer`
component and its listeners) and on five things that are not promised to stay:

- `huggingface_tokenize` (`layers.transformer_model`): the batch encoding that
  `WordpieceBatch.from_batch_encoding` reads (pieces, offsets, padding token);
- `truncate_oversize_splits` (`truncate`): cutting windows longer than the model's positions;
- `get_alignment_via_offset_mapping` (`align`): pieces to tokens by character offsets, which
  `alignment.align_spans` calls after fixing the offsets;
- the window of `spacy-transformers.strided_spans.v1`, which `configure_strided_spans`
  returns as a `functools.partial` of `get_strided_spans`;
- the byte format of `HFShim.to_bytes` (a msgpack map of the model config, the torch
  state, the tokenizer's files and the init configs), which `transformer_model.DecoderShim`
  writes and reads itself, so pipelines saved before and after load alike.

`tests/test_seam.py` checks each against the installed spacy-transformers and names this
module when one no longer holds; a new spacy-transformers release is then a change here only.
"""
from io import BytesIO
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import srsly
import torch
from spacy.util import make_tempdir
from spacy_transformers.align import get_alignment_via_offset_mapping
from spacy_transformers.layers.transformer_model import huggingface_tokenize
from spacy_transformers.span_getters import get_strided_spans
from spacy_transformers.truncate import truncate_oversize_splits
from transformers import AutoConfig, BatchEncoding, PretrainedConfig, PreTrainedTokenizerFast

SHIM_KEYS = ("config", "state", "tokenizer", "_init_tokenizer_config", "_init_transformer_config")


def tokenize(tokenizer: PreTrainedTokenizerFast, texts: List[str]) -> BatchEncoding:
    """Pieces of `texts`, padded, with character offsets, as `WordpieceBatch` reads them."""
    return huggingface_tokenize(tokenizer, texts)


def truncate(wordpieces, align, limit: int):
    """`(wordpieces, align)` with every window cut to `limit` pieces."""
    return truncate_oversize_splits(wordpieces, align, limit)


def align_by_offsets(spans, offsets):
    """A `Ragged` from each token of `spans` to the pieces whose character offsets it covers."""
    return get_alignment_via_offset_mapping(spans, offsets)


def span_window(get_spans: Callable) -> Optional[int]:
    """The size in tokens of the windows `get_spans` cuts, where it says: our own
    getters carry a `window`; spacy-transformers' strided getter is a partial that holds
    it. None for any other span getter (sentences, a user's own)."""
    window = getattr(get_spans, "window", None)
    if window is None and getattr(get_spans, "func", None) is get_strided_spans:
        window = get_spans.keywords.get("window")
    return window


def shim_to_bytes(
    config: Optional[PretrainedConfig],
    state: Optional[Dict[str, torch.Tensor]],
    tokenizer: Optional[PreTrainedTokenizerFast],
    init_configs: Dict[str, Dict],
) -> bytes:
    """A shim's bytes in `HFShim`'s format: the model (config, state, tokenizer files) once
    it is built, else only the configs that build it."""
    msg: Dict[str, Any] = {key: {} for key in SHIM_KEYS}
    if config is None:
        msg.update(init_configs)
        return srsly.msgpack_dumps(msg)
    files: Dict[str, Any] = {"kwargs": {"use_fast": True}}
    with make_tempdir() as temp_dir:
        tokenizer.save_pretrained(str(temp_dir.absolute()))
        files.update({path.name: path.read_bytes() for path in temp_dir.glob("**/*") if path.is_file()})
    weights = BytesIO()
    torch.save(state, weights)
    msg.update({"config": config.to_dict(), "state": weights.getvalue(), "tokenizer": files})
    return srsly.msgpack_dumps(msg)


def shim_from_bytes(data: bytes, device: torch.device) -> Dict[str, Any]:
    """What `shim_to_bytes` (or spacy-transformers' `HFShim.to_bytes`) wrote: a dict with
    `config`, `tokenizer` and `state` (None for a shim saved before its model was built)
    and `init_configs`."""
    msg = srsly.msgpack_loads(data)
    missing = [key for key in SHIM_KEYS if key not in msg]
    if missing:
        raise ValueError(f"The saved transformer model lacks {missing}: it was not written by a spacy-transformers shim")
    init_configs = {key: msg[key] for key in SHIM_KEYS[3:]}
    if not msg["config"]:
        return {"config": None, "tokenizer": None, "state": None, "init_configs": init_configs}
    files = dict(msg["tokenizer"])
    kwargs = files.pop("kwargs", {})
    kwargs.pop("use_fast", None)  # our tokenizer class is the fast one
    with make_tempdir() as temp_dir:
        srsly.write_json(temp_dir / "config.json", msg["config"])
        config = AutoConfig.from_pretrained(str(temp_dir / "config.json"))
        for name, content in files.items():
            Path(temp_dir / name).write_bytes(content)
        tokenizer = PreTrainedTokenizerFast.from_pretrained(str(temp_dir.absolute()), **kwargs)
    state = torch.load(BytesIO(msg["state"]), map_location=device, weights_only=True)
    return {"config": config, "tokenizer": tokenizer, "state": state, "init_configs": init_configs}
