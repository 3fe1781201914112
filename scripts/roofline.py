"""The hardware's limit: this machine's matrix speed, and the FLOPs a decoder does per piece.

A loop's *roofline fraction* is the FLOPs its model did per second divided by the
FLOP/s of one large matrix multiplication on the same device in the same run, *in the
precision the loop computes in*: float32 for a float32 loop, bfloat16 for one with bf16
weights or under bf16 autocast. Both are measured in every run, so a float32 loop can also
be read against the bf16 speed, the most the hardware does (on CPUs with AMX-BF16 or
AVX512-BF16 several times float32's). FLOPs are counted from the module's own shapes, for each
sequence as it really is (no padding: padding is waste, and shows up as a lower
fraction), in the convention of PaLM's "model FLOPs":
- every linear layer inside the kept decoder layers: 2 FLOPs per weight per token
  forward; backward 2 more for the input's gradient, and 2 more for the weight's
  gradient when the weight trains (so full fine-tuning is 3x the forward, a frozen
  base under LoRA about 2x);
- attention: 4 x (query width) x (keys seen) per token and layer forward (scores and
  the weighted sum), all keys counted as sdpa computes them; backward twice that;
- sequence repetition (`repeat = k`) feeds k x n tokens, so k x the linear work and
  k^2 x the attention.
Embedding look-ups, norms, activations and the optimizer are not counted: they are
cheap in FLOPs, though not always in time, which is why the fraction is below 1.
"""
import time
from typing import Dict, Iterable

import torch
from torch import nn


PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16}


def matmul_speeds(device: torch.device, repeats: int = 10) -> Dict[str, float]:
    """FLOP/s of a large square matmul in each precision of `PRECISIONS`, e.g. {"fp32": ..., "bf16": ...}."""
    return {name: matmul_flops_per_s(device, dtype=dtype, repeats=repeats) for name, dtype in PRECISIONS.items()}


def matmul_flops_per_s(device: torch.device, size: int = 0, repeats: int = 10, dtype: torch.dtype = None) -> float:
    """FLOP/s of one large square matmul, best of `repeats`; by default float32 on CPU, bfloat16 on a GPU."""
    cuda = device.type == "cuda"
    size = size or (8192 if cuda else 2048)
    dtype = dtype or (torch.bfloat16 if cuda else torch.float32)
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    best = float("inf")
    for i in range(repeats + 1):
        if cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        torch.mm(a, b)
        if cuda:
            torch.cuda.synchronize()
        if i:  # the first is a warm-up
            best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best


class DecoderFlops:
    """FLOPs of a decoder module per sequence, from its own linear layers and attention width."""

    def __init__(self, module: nn.Module, repeat: int = 1):
        config = module.config
        layers = [m for name, m in module.named_modules() if name.endswith(".layers") and isinstance(m, nn.ModuleList)]
        if len(layers) != 1:
            raise ValueError("expected one decoder layer list in the module")
        linears = [m for m in layers[0].modules() if isinstance(m, nn.Linear)]
        self.linear_weights = sum(m.weight.numel() for m in linears)
        self.trainable_linear_weights = sum(m.weight.numel() for m in linears if m.weight.requires_grad)
        head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
        self.query_width = config.num_attention_heads * head_dim
        self.n_layers = len(layers[0])
        self.repeat = repeat

    def forward(self, n: int) -> float:
        """Forward FLOPs of one sequence of `n` real pieces."""
        tokens = n * self.repeat
        return 2 * self.linear_weights * tokens + 4 * self.n_layers * self.query_width * tokens * tokens

    def training(self, n: int) -> float:
        """Forward + backward FLOPs of one sequence of `n` real pieces."""
        tokens = n * self.repeat
        linear = (2 + 2) * self.linear_weights * tokens + 2 * self.trainable_linear_weights * tokens
        attention = 3 * 4 * self.n_layers * self.query_width * tokens * tokens
        return linear + attention

    def total(self, lengths: Iterable[int], training: bool) -> float:
        count = self.training if training else self.forward
        return float(sum(count(n) for n in lengths if n > 0))
