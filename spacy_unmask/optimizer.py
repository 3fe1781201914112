"""thinc's Adam, applied to the decoder's torch tensors by torch's own fused Adam.

spaCy users set the optimizer once, in `[training.optimizer]`, and spaCy hands the
resulting thinc `Optimizer` to every component. thinc applies it one parameter at a
time in single-threaded numpy, which for a decoder of tens of millions of weights is
a large share of a CPU training step. `TorchAdam` reads every setting from the thinc
optimizer it is handed, at every step (learning rate as the schedule has it now,
betas, eps, L2 as weight decay or as a gradient term, per-parameter gradient
clipping), and applies the same update with torch's fused Adam kernel on the
module's own tensors. An optimizer it cannot mirror goes through thinc as before.

thinc's Adam, per parameter with update count t (`thinc.optimizers.Optimizer`):

    g += L2 * w                       (only if not L2_is_weight_decay)
    g *= clip / |g|                   (only if |g| >= clip; the norm of this parameter alone)
    m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2
    w -= lr * sqrt(1-b2^t) / (1-b1^t) * m / (sqrt(v) + eps)
    w -= lr * L2 * w                  (only if L2_is_weight_decay; after the Adam step)

torch's Adam divides by sqrt(v) / sqrt(1-b2^t) + eps instead, which is the same
update when its eps is thinc's eps / sqrt(1-b2^t); the weight decay is applied after
torch's step, in thinc's order.
"""
import math
import warnings
from collections import defaultdict
from typing import Dict, List, Optional, Tuple

import torch
from torch.optim.adam import adam as functional_adam
from thinc.api import Optimizer


def mirror_refusal(optimizer) -> Optional[str]:
    """Why `TorchAdam` cannot stand in for `optimizer` (None when it can)."""
    if type(optimizer) is not Optimizer:
        return f"{type(optimizer).__name__} is not thinc's Optimizer"
    if optimizer.use_radam:
        return "RAdam (`RAdam.v1`) is not mirrored"
    if not (optimizer.b1 > 0.0 and optimizer.b2 > 0.0):
        return "SGD (beta1 or beta2 of 0) is not mirrored"
    if optimizer.averages is not None:
        return (
            "`use_averages = true` keeps parameter averages in thinc "
            "(set `use_averages = false`: thinc 8.3 never loads averages into PyTorch weights)"
        )
    return None


_NOTIFIED = set()


def notify_fallback(reason: str) -> None:
    """Say once per reason that the decoder's step runs through thinc."""
    if reason in _NOTIFIED:
        return
    _NOTIFIED.add(reason)
    warnings.warn(
        f"spacy-unmask: the decoder's optimizer step runs through thinc (slower on CPU): {reason}.",
        stacklevel=3,
    )


def _clip_each(grads: List[torch.Tensor], threshold: float) -> None:
    """Scale each gradient whose own norm is at least `threshold` down to that norm."""
    norms = torch.stack(torch._foreach_norm(grads))
    factors = torch.where(norms >= threshold, threshold / norms, torch.ones_like(norms))
    torch._foreach_mul_(grads, list(factors.unbind()))


class TorchAdam:
    """The update of a thinc Adam `Optimizer`, applied to named parameters by torch's fused Adam.

    The state lives where thinc keeps its own, in the optimizer, under thinc's keys
    (`(shim id, parameter name)`): the update count in `nr_update`, the two moments
    (torch tensors here) in `mom1` and `mom2`. It goes when the optimizer goes, as
    thinc's does. The moments are float32 whatever the weights' dtype.

    It calls torch's functional Adam (`torch.optim.adam.adam`, the kernel behind
    `torch.optim.Adam`) on the parameters' `.data`, as thinc's shim writes them: spaCy's
    `Language.update(sgd=...)` steps the decoder before its listeners have run backward
    through it, and an update that autograd sees would then break that backward.

    `lr_scale` multiplies the optimizer's rate for these parameters, step and weight decay
    alike, as thinc's own `Optimizer(..., lr_scale=)` does.
    """

    def __init__(self, optimizer: Optimizer, named_params: List[Tuple[Tuple, torch.nn.Parameter]],
                 lr_scale: float = 1.0):
        self.optimizer = optimizer
        self.named_params = list(named_params)
        self.lr_scale = lr_scale

    @torch.no_grad()
    def step(self) -> None:
        """One update of every parameter that has a gradient; gradients are zeroed in place."""
        opt = self.optimizer
        lr = opt.learn_rate * self.lr_scale
        named = [(key, p) for key, p in self.named_params if p.grad is not None and p.numel() > 0]
        if not named:
            return
        params = [p for _, p in named]
        grads = [p.grad for p in params]
        if opt.L2 != 0 and not opt.L2_is_weight_decay:
            torch._foreach_add_(grads, [p.data for p in params], alpha=opt.L2)
        if opt.grad_clip:
            _clip_each(grads, opt.grad_clip)
        # eps depends on the update count; parameters usually share it, but one that
        # had no gradient at some step is behind, so each count gets its own call.
        by_count: Dict[int, List[int]] = defaultdict(list)
        for i, (key, p) in enumerate(named):
            opt.nr_update[key] += 1
            if key not in opt.mom1:
                opt.mom1[key] = torch.zeros_like(p.data, dtype=torch.float32)
                opt.mom2[key] = torch.zeros_like(p.data, dtype=torch.float32)
            by_count[opt.nr_update[key]].append(i)
        for count, members in by_count.items():
            keys = [named[i][0] for i in members]
            # float32 master copies of half-precision weights: Adam's small steps and
            # second moments vanish in bfloat16/float16
            weights = [params[i].data.float() for i in members]
            functional_adam(
                weights,
                [grads[i].float() for i in members],
                [opt.mom1[k] for k in keys],
                [opt.mom2[k] for k in keys],
                [],
                [torch.tensor(float(count - 1), device=w.device) for w in weights],  # the kernel adds 1
                foreach=None,
                fused=all(w.device.type in ("cpu", "cuda") for w in weights) or None,
                amsgrad=False,
                beta1=opt.b1,
                beta2=opt.b2,
                lr=lr,
                weight_decay=0.0,
                eps=opt.eps / math.sqrt(1.0 - opt.b2**count),
                maximize=False,
            )
            if opt.L2 != 0 and opt.L2_is_weight_decay:
                torch._foreach_mul_(weights, 1.0 - lr * opt.L2)
            for i, w in zip(members, weights):
                if params[i].dtype != torch.float32:  # a half-precision weight: write the result back
                    params[i].data.copy_(w)
        torch._foreach_zero_(grads)
