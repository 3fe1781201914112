"""How long a document is for the decoder: its subword pieces, for spaCy's batchers.

spaCy's `batch_by_padded.v1` sorts a buffer of examples by `get_length` and cuts
batches whose longest member times their size stays under `size`. By default the
length is the number of *words*, but the decoder pads every batch to its longest
member in *pieces*, and tweets with similar word counts differ a lot in pieces
(hashtags, emoji, URLs): on WNUT-16's train split, word-sorted batches of `size` 400
pad the pieces x1.76, piece-sorted ones (`size` 580, `buffer` 1024) x1.06 (`padding` in
`scripts/benchmark_training.py`). `PieceLength` counts the pieces with
the decoder's own tokenizer, loaded from the same folder and fixed the same way.
"""
from functools import lru_cache
from typing import Any, Dict, Optional

from .loading import load_tokenizer, resolve_source
from .pieces import piece_counts


class PieceLength:
    """Callable: an `Example`, `Doc` or string in, its number of decoder pieces out.

    The tokenizer is loaded on the first call (resolving a config costs nothing), and
    lengths are cached per text, since a training corpus is batched once per epoch.
    """

    def __init__(self, name: str, tokenizer_config: Optional[Dict] = None, cache_size: int = 2**17):
        self.source = resolve_source(name, key="training.batcher.get_length.name")
        self.tokenizer_config = dict(tokenizer_config or {})
        self._tokenizer = None
        self._count = lru_cache(maxsize=cache_size)(self._count_pieces)

    def __call__(self, item: Any) -> int:
        return self._count(_text_of(item))

    def _count_pieces(self, text: str) -> int:
        if self._tokenizer is None:
            self._tokenizer = load_tokenizer(self.source, self.tokenizer_config)
        return piece_counts(self._tokenizer, [text])[0]

    def __getstate__(self):
        # picklable (spaCy may send batchers to worker processes): the cache stays here
        return {"source": self.source, "tokenizer_config": self.tokenizer_config}

    def __setstate__(self, state):
        self.__init__(state["source"].name, state["tokenizer_config"])


def _text_of(item: Any) -> str:
    if isinstance(item, str):
        return item
    doc = getattr(item, "predicted", item)  # an Example, or a Doc
    text = getattr(doc, "text", None)
    if not isinstance(text, str):
        raise TypeError(f"get_length needs an Example, a Doc or a str, not {type(item).__name__}")
    return text
