"""Every spaCy token aligns to the pieces that cover its own characters."""
import pytest
import spacy

from spacy_unmask.alignment import align_spans, trim_offsets
from spacy_unmask.loading import prepare_tokenizer
from spacy_unmask.seam import align_by_offsets, tokenize

from .util import AWKWARD, build_sentencepiece_tokenizer, build_tokenizer, check

# byte-level BPE (SmolLM2, Llama 3, Qwen ...); SentencePiece-style with a `▁` before the text
# (Llama 2, Phi-3) and without one (Gemma), both with byte fallback for unknown characters
TOKENIZERS = {
    "byte-level": build_tokenizer,
    "sentencepiece-prepend": lambda: build_sentencepiece_tokenizer("first"),
    "sentencepiece-gemma": lambda: build_sentencepiece_tokenizer("never"),
}

def piece_spans(nlp, texts, kind="byte-level"):
    tokenizer = prepare_tokenizer(TOKENIZERS[kind]())
    docs = [nlp.make_doc(t) for t in texts]
    spans = [doc[:] for doc in docs]
    encoding = tokenize(tokenizer, texts)
    return docs, spans, encoding


@pytest.fixture(scope="module")
def nlp():
    return spacy.blank("en")


@pytest.mark.parametrize("kind", TOKENIZERS)
def test_tokens_align_to_the_pieces_covering_their_characters(nlp, kind):
    docs, spans, encoding = piece_spans(nlp, AWKWARD, kind)
    offsets = encoding["offset_mapping"]
    trimmed = trim_offsets(spans, offsets)
    assert check(docs, spans, trimmed, align_spans(spans, offsets)) == []


@pytest.mark.parametrize("kind", [k for k in TOKENIZERS if k != "byte-level"])
def test_unknown_characters_fall_back_to_byte_pieces_that_align_to_their_token(nlp, kind):
    # 🙃 and ü are not in the tiny vocabulary: each becomes one piece per UTF-8 byte, all
    # reporting the character's offsets, and all of them land on the token holding it.
    docs, spans, encoding = piece_spans(nlp, ["so 🙃 in Zürich"], kind)
    tokenizer = prepare_tokenizer(TOKENIZERS[kind]())
    pieces = tokenizer.convert_ids_to_tokens(encoding["input_ids"][0])
    assert sum(p.startswith("<0x") for p in pieces) >= 6
    align = align_spans(spans, encoding["offset_mapping"])
    row = encoding["offset_mapping"][0]
    for token, pieces_of in zip(docs[0], (align[i].dataXd.ravel().tolist() for i in range(len(docs[0])))):
        texts = {docs[0].text[row[p][0]:row[p][1]] for p in pieces_of}
        assert pieces_of and all(t.strip() and t.strip() in token.text for t in texts), (token.text, texts)


@pytest.mark.parametrize("kind", TOKENIZERS)
def test_untrimmed_offsets_would_attach_pieces_to_the_previous_token(nlp, kind):
    # The failure this project guards against, reproduced with the stock alignment:
    # if this stops failing, the tokenizer no longer shows the bug and the test
    # above proves nothing.
    docs, spans, encoding = piece_spans(nlp, AWKWARD, kind)
    offsets = encoding["offset_mapping"]
    stock = align_by_offsets(spans, offsets)
    assert check(docs, spans, offsets, stock) != []


def test_trimming_drops_leading_space_and_trailing_space_characters_only(nlp):
    import numpy

    doc = nlp.make_doc("a   b\n")  # tokens: "a" + " ", "  " (space token), "b", "\n"
    # pieces: "a", "Ġ" (the trailing space of "a"), "ĠĠ" (the space token),
    # "Ġb" (reported with its space), "Ċ", padding
    offsets = numpy.array([[[0, 1], [1, 2], [2, 4], [3, 5], [5, 6], [0, 0]]])
    assert trim_offsets([doc[:]], offsets).tolist() == [[[0, 1], [2, 2], [2, 4], [4, 5], [5, 6], [0, 0]]]
