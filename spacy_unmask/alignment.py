"""Aligning decoder pieces to spaCy tokens.

Byte-level and sentencepiece tokenizers glue the space before a word onto the
word's piece (`Ġword`, `▁word`) and often report an offset that starts at that
space. spacy-transformers maps the character just after a token to that token,
so such a piece would silently land on the *previous* token (spaCy #13730). We
move the start of every piece past leading whitespace before aligning; pieces
made only of whitespace keep their offsets.
"""
from typing import List, Sequence

import numpy
from spacy.tokens import Span
from spacy_transformers.align import get_alignment_via_offset_mapping
from thinc.types import Ragged

_WHITESPACE = numpy.array([ord(c) for c in map(chr, range(0x3001)) if c.isspace()], dtype=numpy.uint32)


def _is_space(text: str) -> numpy.ndarray:
    codepoints = numpy.frombuffer(text.encode("utf-32-le"), dtype=numpy.uint32)
    return numpy.isin(codepoints, _WHITESPACE)


def trim_offsets(texts: Sequence[str], offsets: numpy.ndarray) -> numpy.ndarray:
    """Offsets (n_texts, n_pieces, 2) with leading whitespace cut from each piece."""
    trimmed = numpy.array(offsets, copy=True)
    for i, text in enumerate(texts):
        if not text:
            continue
        row = trimmed[i]
        space = _is_space(text)
        starts, ends = row[:, 0], row[:, 1]
        candidates = numpy.flatnonzero((ends > starts) & space[numpy.minimum(starts, len(text) - 1)])
        for j in candidates:
            start, end = int(starts[j]), int(ends[j])
            rest = numpy.flatnonzero(~space[start:end])
            if rest.size:
                row[j, 0] = start + rest[0]
    return trimmed


def align_spans(spans: List[Span], offset_mapping: numpy.ndarray) -> Ragged:
    """spacy-transformers' offset alignment, fed with trimmed offsets."""
    texts = [span.text for span in spans]
    return get_alignment_via_offset_mapping(spans, trim_offsets(texts, offset_mapping))
