"""The input embedding's gradient, added in place into one buffer that lives as long as the weight.

A decoder's input embedding is its largest matrix (SmolLM2: 49,152 x 576, 28 M of the 81 M
weights a 15-layer cut trains), yet a batch of tweets touches a few hundred of its rows. torch's
dense embedding backward allocates a zero matrix of the full table at every step, scatters the
batch's rows into it and adds it to `.grad`: on CPU that is a fresh 113 MB allocation (glibc
maps it anew and the kernel faults every page in), a fill and an add, every step. With the
embedding's own `sparse=True`, backward yields only the touched rows, and autograd adds them
into the existing dense `.grad` in place (`AccumulateGrad`: dense += sparse). The gradient is
the same dense matrix as before, so the optimizer step (Adam moments and weight decay on every
row, as thinc's Adam does) is unchanged. What it gives spaCy's training step is the
"dense embedding gradient" row of `scripts/benchmark_training.py CONFIG --ablate`.
"""
import torch
from torch import nn


def accumulate_in_place(model: nn.Module) -> None:
    """Give a trainable input embedding sparse backward. Its first gradient arrives sparse
    (autograd keeps the tensor it is given); the optimizer step makes it dense once
    (`dense_grad`) and zeroes it in place, and from then on autograd adds each batch's rows
    into that buffer. No buffer is made ahead: a parameter whose `.grad` is still None is
    skipped by the step, as it is without this."""
    embedding = model.get_input_embeddings()
    if isinstance(embedding, nn.Embedding) and embedding.weight.requires_grad:
        embedding.sparse = True


def dense_grad(param: torch.Tensor) -> torch.Tensor:
    """`param.grad` as a dense tensor (a sparse one summed into zeros); None stays None."""
    grad = param.grad
    if grad is None or not grad.is_sparse:
        return grad
    return grad.to_dense()
