"""Annotating one block with a loaded pipeline: what every backend runs in its workers.

Within a block, documents go through `nlp.pipe` sorted by length (decoder pieces when the
pipeline has a transformer with a tokenizer, characters otherwise), so a batch pads little,
and come back in input order. Each block runs in one of spaCy's memory zones: the strings
that its documents add to the vocabulary are freed once the block is serialized, so a job's
memory does not grow with the number of distinct words it has seen.
"""
from typing import Callable, List, Optional

import spacy
from spacy.language import Language
from spacy.tokens import Doc, DocBin

from ..pieces import piece_counts
from .inputs import Block
from .shards import ShardResult
from .workers import load_error


def load_pipeline(model: str, gpu_id: int = -1, threads: Optional[int] = None) -> Language:
    """The pipeline, on GPU `gpu_id` (-1: CPU), with torch using `threads` CPU threads; any
    error of the loader (a missing package, a damaged folder) comes as `PipelineLoadError`."""
    try:
        if threads is not None:
            import torch

            torch.set_num_threads(max(1, threads))
        if gpu_id >= 0:
            spacy.require_gpu(gpu_id)
        return spacy.load(model)
    except Exception as err:
        raise load_error(model, err) from err


def _piece_counter(nlp: Language):
    for _, component in nlp.pipeline:
        try:
            tokenizer = component.model.tokenizer
        except (AttributeError, ValueError, IndexError, KeyError):
            continue
        if callable(tokenizer):
            # the special pieces add the same number to every text: the sort is that of the text's own pieces
            return lambda texts: piece_counts(tokenizer, texts)
    return None


def lengths(nlp: Language, texts: List[str]) -> List[int]:
    """How long each text is for the pipeline's most expensive part."""
    counter = _piece_counter(nlp)
    return counter(texts) if counter is not None and texts else [len(t) for t in texts]


def spans_of(doc: Doc) -> dict:
    return {
        "ents": [{"start": e.start_char, "end": e.end_char, "label": e.label_} for e in doc.ents],
        "spans": {key: [{"start": s.start_char, "end": s.end_char, "label": s.label_} for s in group]
                  for key, group in doc.spans.items()},
    }


def annotate_block(nlp: Language, block: Block, batch_size: int,
                   stop: Optional[Callable[[], bool]] = None) -> Optional[ShardResult]:
    """The block's shard; None when `stop()` turned true before the block was done."""
    texts = [record.text for record in block.records]
    size = lengths(nlp, texts)
    order = sorted(range(len(texts)), key=size.__getitem__)
    docs: List[Optional[Doc]] = [None] * len(texts)
    with nlp.memory_zone():
        for position, doc in zip(order, nlp.pipe((texts[i] for i in order), batch_size=batch_size)):
            if stop is not None and stop():
                return None
            docs[position] = doc
        rows = []
        for record, doc in zip(block.records, docs):
            doc.user_data["id"] = record.id
            rows.append({"id": record.id, "text": record.text, **spans_of(doc)})
        return ShardResult(
            index=block.index,
            docbin=DocBin(docs=docs, store_user_data=True).to_bytes(),
            rows=rows,
            words=sum(len(doc) for doc in docs),
            rejects=[reject.to_dict() for reject in block.rejects],
        )
