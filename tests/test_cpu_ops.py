"""`spacy-unmask.numpy_blas_ops.v1`: the heads multiply with numpy's BLAS, and predict the same."""
import numpy
import spacy
from thinc.api import NumpyOps

from .pipelines import build_nlp, examples, train

CALLBACK = '[nlp.after_pipeline_creation]\n@callbacks = "spacy-unmask.numpy_blas_ops.v1"\n'


def head_ops(nlp):
    return [node.ops for node in nlp.get_pipe("ner").model.walk()]


def build(tiny_llama, with_callback: bool):
    nlp = build_nlp(tiny_llama, unmask="second_half", top=CALLBACK if with_callback else "")
    spacy.util.fix_random_seed(0)
    nlp.initialize(lambda: examples(nlp))
    return nlp


def test_the_callback_gives_the_heads_numpy_blas_and_keeps_their_predictions(tiny_llama, tmp_path):
    plain, fast = build(tiny_llama, False), build(tiny_llama, True)
    assert all(type(ops) is NumpyOps and ops.use_blis for ops in head_ops(plain))
    assert all(type(ops) is NumpyOps and not ops.use_blis for ops in head_ops(fast))
    texts = ["Apple opened a store in Berlin .", "Obama visited Paris ."]
    for a, b in zip(plain.pipe(texts), fast.pipe(texts)):
        assert [(e.start, e.end, e.label_) for e in a.ents] == [(e.start, e.end, e.label_) for e in b.ents]
    # the same products, up to float32 rounding
    x, w = numpy.random.default_rng(0).random((40, 30), dtype="float32"), numpy.ones((30, 8), dtype="float32")
    numpy.testing.assert_allclose(head_ops(plain)[0].gemm(x, w), head_ops(fast)[0].gemm(x, w), rtol=1e-5)
    # it is part of the config, so a saved pipeline comes back with it
    train(fast, steps=2)
    fast.to_disk(tmp_path / "fast")
    assert all(not ops.use_blis for ops in head_ops(spacy.load(tmp_path / "fast")))
