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
    """Give a trainable input embedding sparse backward, and its gradient one dense buffer.

    The first backward pass leaves a sparse `.grad` (autograd keeps the tensor it is given);
    a post-accumulate hook (torch's own `register_post_accumulate_grad_hook`) makes it dense
    at once, so every optimizer, torch's or ours, sees a dense gradient, and from then on
    autograd adds each batch's rows into that buffer in place. Until a backward pass the
    gradient stays None, as it does without this. Calling it again does nothing more.
    """
    embedding = model.get_input_embeddings()
    if not isinstance(embedding, nn.Embedding) or not embedding.weight.requires_grad:
        return  # frozen (LoRA, 4-bit) or not a plain embedding: nothing to do
    weight = embedding.weight
    if not getattr(weight, _HOOKED, False):
        weight.register_post_accumulate_grad_hook(_make_dense)
        setattr(weight, _HOOKED, True)
    embedding.sparse = True


_HOOKED = "_spacy_unmask_dense_grad"


def _make_dense(param: torch.Tensor) -> None:
    if param.grad is not None and param.grad.is_sparse:
        param.grad = param.grad.to_dense()
