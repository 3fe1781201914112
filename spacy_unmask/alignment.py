"""Aligning decoder pieces to spaCy tokens.

Byte-level and sentencepiece tokenizers glue the space before a word onto the
word's piece (`Ġword`, `▁word`) and often report an offset that starts at that
space. spacy-transformers maps the character just after a token (its trailing
space) to that token, so such a piece would silently land on the *previous*
token (spaCy #13730). Before aligning we therefore move the start of each piece
past leading whitespace; a piece made only of whitespace loses just the
character that is a token's trailing space, so it aligns to a spaCy space token
when it covers one and to nothing otherwise.
"""
from typing import List

import numpy
from spacy.tokens import Span
from thinc.types import Ragged

from .seam import align_by_offsets

_WHITESPACE = numpy.array([c for c in range(0x3001) if chr(c).isspace()], dtype=numpy.uint32)


def _is_space(text: str) -> numpy.ndarray:
    codepoints = numpy.frombuffer(text.encode("utf-32-le"), dtype=numpy.uint32)
    return numpy.isin(codepoints, _WHITESPACE)


def _trailing_space_positions(span: Span) -> set:
    return {t.idx + len(t) - span.start_char for t in span if t.whitespace_}


def trim_offsets(spans: List[Span], offsets: numpy.ndarray) -> numpy.ndarray:
    """Offsets (n_spans, n_pieces, 2) relative to each span's text, trimmed as above."""
    trimmed = numpy.array(offsets, copy=True)
    for span, row in zip(spans, trimmed):
        text = span.text
        if not text:
            continue
        space = _is_space(text)
        starts, ends = row[:, 0], row[:, 1]
        candidates = numpy.flatnonzero((ends > starts) & space[numpy.minimum(starts, len(text) - 1)])
        trailing = None
        for j in candidates:
            start, end = int(starts[j]), int(ends[j])
            content = numpy.flatnonzero(~space[start:end])
            if content.size:
                row[j, 0] = start + content[0]
                continue
            if trailing is None:
                trailing = _trailing_space_positions(span)
            if start in trailing:
                row[j, 0] = start + 1
    return trimmed


def align_spans(spans: List[Span], offset_mapping: numpy.ndarray) -> Ragged:
    """spacy-transformers' offset alignment, fed with trimmed offsets."""
    return align_by_offsets(spans, trim_offsets(spans, offset_mapping))
