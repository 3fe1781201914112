"""The heads' matrix products on every CPU core: thinc's NumpyOps with numpy's BLAS.

On CPU, thinc multiplies matrices with blis, on one thread. The components that
listen to the decoder (`ner`, `spancat`, ...) are thinc layers, so their products run
single-threaded while the decoder's run on all of torch's threads. numpy's own BLAS
(OpenBLAS in numpy's wheels) uses every core. What that gains on a machine is measured by
`scripts/benchmark_training.py CONFIG --ablate` (its "heads on blis" row).

`use_numpy_blas` switches the thinc layers of one pipeline to `NumpyOps(use_blis=False)`,
which hands `gemm` to numpy. It leaves alone layers on other ops (a GPU's CupyOps, or
ops a user chose) and the process's default ops.
"""
from thinc.api import Model, NumpyOps


def use_numpy_blas(nlp):
    """Give every thinc layer of `nlp` that multiplies with blis numpy's BLAS instead."""
    ops = NumpyOps(use_blis=False)
    for _, component in nlp.components:
        model = getattr(component, "model", None)
        if not isinstance(model, Model):
            continue
        for node in model.walk():
            if type(node.ops) is NumpyOps and node.ops.use_blis:
                node.ops = ops
    return nlp
