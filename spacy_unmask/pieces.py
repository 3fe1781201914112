"""How many subword pieces a tokenizer makes of each text: the one count behind the batcher's
lengths (`batching.PieceLength`), the annotator's length sort and the benchmarks' FLOPs and padding.

Kept apart from `batching` so that counting imports nothing: `spacy unmask apply` sorts the
documents of any pipeline, and must not pay for transformers where the pipeline has none.
"""
from typing import Iterable, List


def piece_counts(tokenizer, texts: Iterable[str], truncate: bool = False) -> List[int]:
    """The number of pieces of each text as `tokenizer` (a Hugging Face tokenizer) encodes it for
    the decoder: the special pieces it adds around a text (a BOS piece, say) included, padding never.

    `truncate`: count at most the tokenizer's `model_max_length` pieces of a text (the benchmarks'
    FLOPs and padding count so); by default every piece counts, as the batcher's lengths do.
    """
    encoded = tokenizer(list(texts), add_special_tokens=True, truncation=truncate)
    return [len(ids) for ids in encoded["input_ids"]]
