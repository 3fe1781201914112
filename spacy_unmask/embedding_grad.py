"""The input embedding's gradient, added in place into one buffer that lives as long as the weight.

A decoder's input embedding is its largest matrix (SmolLM2: 49,152 x 576, 28 M of the 81 M
weights a 15-layer cut trains), yet a batch of tweets touches a few hundred of its rows. torch's
dense embedding backward allocates a zero matrix of the full table at every step, scatters the
batch's rows into it and adds it to `.grad`: on CPU that is a fresh 113 MB allocation (glibc
maps it anew and the kernel faults every page in), a fill and an add, every step. With the
embedding's own `sparse=True`, backward yields only the touched rows, and autograd adds them
into the existing dense `.grad` in place (`AccumulateGrad`: dense += sparse). The gradient is
the same dense matrix as before, so the optimizer step (Adam moments and weight decay on every
row, as thinc's Adam does) is unchanged; on this project's CPU spaCy's training step runs
about 1.1x faster and a bare PyTorch step about 1.3x (`scripts/benchmark_training.py`).
"""
import torch
from torch import nn


def accumulate_in_place(model: nn.Module) -> None:
    """Before a training step: give a trainable input embedding sparse backward and a dense
    `.grad` buffer to add into (allocated once, zeroed in place by the optimizer step)."""
    embedding = model.get_input_embeddings()
    if not isinstance(embedding, nn.Embedding) or not embedding.weight.requires_grad:
        return  # frozen (LoRA, 4-bit) or not a plain embedding: nothing to do
    embedding.sparse = True
    weight = embedding.weight
    if weight.grad is None or weight.grad.is_sparse:
        weight.grad = dense_grad(weight)


def dense_grad(param: torch.Tensor) -> torch.Tensor:
    """`param.grad` as a dense tensor (a sparse one summed into zeros)."""
    grad = param.grad
    if grad is None:
        return torch.zeros_like(param)
    return grad.to_dense() if grad.is_sparse else grad
