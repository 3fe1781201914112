"""The seam to spacy-transformers (`spacy_unmask/seam.py`): what we rely on still holds.

Each test names the seam it pins down, so a spacy-transformers release that changes one
fails here, saying where to adapt, instead of deep in a training run."""
import numpy
import pytest
from spacy.util import registry
from spacy_transformers.data_classes import HFObjects, WordpieceBatch
from spacy_transformers.layers.hf_shim import HFShim
from transformers import AutoConfig, PreTrainedTokenizerFast

from spacy_unmask import seam
from spacy_unmask.transformer_model import DecoderShim

from .pipelines import TRAIN, build_nlp, train

SEAM = "spacy_unmask/seam.py"


def shim_of(nlp) -> DecoderShim:
    return nlp.get_pipe("transformer").model.shim


def test_the_strided_span_getter_still_says_its_window():
    get_spans = registry.get("span_getters", "spacy-transformers.strided_spans.v1")(window=128, stride=96)
    assert seam.span_window(get_spans) == 128, (
        f"spacy-transformers' strided span getter no longer carries its window as a functools.partial "
        f"of get_strided_spans: adapt {SEAM}'s span_window"
    )
    sentences = registry.get("span_getters", "spacy-transformers.sent_spans.v1")()
    assert seam.span_window(sentences) is None


def test_tokenize_gives_what_the_wordpiece_batch_reads(tiny_llama):
    nlp = build_nlp(tiny_llama)
    nlp.initialize()
    tokenizer = nlp.get_pipe("transformer").model.tokenizer
    texts = ["Apple opened a store .", "Hi"]
    encoding = seam.tokenize(tokenizer, texts)
    assert "offset_mapping" in encoding, f"huggingface_tokenize no longer returns offsets: adapt {SEAM}'s tokenize"
    wordpieces = WordpieceBatch.from_batch_encoding(encoding)
    assert wordpieces.input_ids.shape[0] == 2 and wordpieces.lengths[1] < wordpieces.lengths[0], (
        f"huggingface_tokenize's batch no longer pads to the longest text: adapt {SEAM}'s tokenize"
    )
    short, _ = seam.truncate(wordpieces, _one_to_one(wordpieces), 2)
    assert short.input_ids.shape[1] == 2, f"truncate_oversize_splits no longer cuts to the limit: adapt {SEAM}'s truncate"


def _one_to_one(wordpieces):
    from thinc.types import Ragged

    n = int(sum(wordpieces.lengths))
    return Ragged(numpy.arange(n, dtype="i"), numpy.ones(n, dtype="i"))


def _vectors(nlp, texts):
    return [doc._.trf_data.tensors[0].copy() for doc in nlp.pipe(texts)]


def test_a_shim_saved_by_spacy_transformers_loads_in_ours_and_back(tiny_llama):
    """The byte format is HFShim's: pipelines saved before (by HFShim.to_bytes) load in
    ours, and what ours writes loads in HFShim."""
    nlp = build_nlp(tiny_llama)
    nlp.initialize()
    train(nlp, steps=3)
    ours = shim_of(nlp)
    texts = [text for text, _ in TRAIN]
    expected = _vectors(nlp, texts)
    factory_kwargs = dict(config_cls=AutoConfig, model_cls=ours.factory, tokenizer_cls=PreTrainedTokenizerFast)
    stock = HFShim(ours.hf_objects, **factory_kwargs)
    with ours._model.stored():
        stock_bytes = stock.to_bytes()

    fresh = build_nlp(tiny_llama)
    shim_of(fresh).from_bytes(stock_bytes)
    fresh.get_pipe("transformer").model.attrs["has_transformer"] = True
    fresh.get_pipe("ner").from_bytes(nlp.get_pipe("ner").to_bytes())
    for got, want in zip(_vectors(fresh, texts), expected):
        assert numpy.allclose(got, want, atol=1e-5), f"a shim saved in HFShim's format loads wrongly: see {SEAM}"

    back = HFShim(HFObjects(None, None, None, {}, {}), **factory_kwargs).from_bytes(ours.to_bytes())
    assert back._model is not None and back._hfmodel.tokenizer("Hi")["input_ids"] == ours.hf_objects.tokenizer("Hi")["input_ids"], (
        f"HFShim no longer reads the format {SEAM}'s shim_to_bytes writes"
    )


def test_an_unbuilt_shim_round_trips_its_init_configs(tiny_llama):
    nlp = build_nlp(tiny_llama)
    shim = shim_of(nlp)
    data = shim.to_bytes()
    stock = HFShim(HFObjects(None, None, None, {}, {})).from_bytes(data)
    assert stock._hfmodel._init_tokenizer_config == shim.hf_objects._init_tokenizer_config
    assert shim_of(build_nlp(tiny_llama)).from_bytes(data)._model is None


def test_bytes_of_something_else_are_refused_naming_the_format():
    import srsly

    with pytest.raises(ValueError, match="not written by a spacy-transformers shim"):
        seam.shim_from_bytes(srsly.msgpack_dumps({"weights": b""}), None)
