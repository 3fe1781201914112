"""Batches sized in the decoder's pieces: `spacy-unmask.PieceLength.v1` as a batcher's `get_length`."""
import pickle

import pytest
import spacy
from spacy.training import Example
from spacy.util import registry

from spacy_unmask.errors import ConfigError
from spacy_unmask.loading import load_tokenizer, resolve_source

from .util import CORPUS


def piece_length(folder):
    return registry.resolve({"x": {"@misc": "spacy-unmask.PieceLength.v1", "name": str(folder)}})["x"]


def test_piece_length_counts_the_pieces_the_decoder_gets(tiny_llama):
    get_length = piece_length(tiny_llama)
    tokenizer = load_tokenizer(resolve_source(tiny_llama))
    nlp = spacy.blank("en")
    for text in CORPUS + ["", "😀😀 🙃 #nyc"]:
        doc = nlp.make_doc(text)
        expected = len(tokenizer(text)["input_ids"])
        assert get_length(text) == get_length(doc) == get_length(Example(doc, doc)) == expected
    # emoji and hashtags make more pieces than words: the reason to count pieces
    assert get_length("😀😀 🙃 #nyc") > len(nlp.make_doc("😀😀 🙃 #nyc"))


def test_batch_by_padded_with_piece_length_keeps_padded_pieces_under_size(tiny_llama):
    get_length = piece_length(tiny_llama)
    nlp = spacy.blank("en")
    docs = [nlp.make_doc(text) for text in CORPUS * 6]
    batcher = registry.resolve({"b": {
        "@batchers": "spacy.batch_by_padded.v1", "size": 60, "buffer": 16, "discard_oversize": False,
        "get_length": {"@misc": "spacy-unmask.PieceLength.v1", "name": str(tiny_llama)},
    }})["b"]
    batches = list(batcher(docs))
    assert sum(len(b) for b in batches) == len(docs)
    for batch in batches:
        longest = max(get_length(d) for d in batch)
        assert longest * len(batch) <= 60 or len(batch) == 1


def test_piece_length_survives_pickling(tiny_llama):
    get_length = piece_length(tiny_llama)
    assert pickle.loads(pickle.dumps(get_length))("Apple opened a store .") == get_length("Apple opened a store .")


def test_piece_length_refuses_a_missing_folder_and_other_inputs(tmp_path, tiny_llama):
    with pytest.raises(ConfigError, match="training.batcher.get_length.name"):
        piece_length(tmp_path / "nowhere")
    with pytest.raises(TypeError, match="get_length needs an Example, a Doc or a str"):
        piece_length(tiny_llama)(42)
