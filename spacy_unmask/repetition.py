"""Sequence repetition: read each piece's vector from the last of `k` copies of the text.

Kukić, Čuljak, Dukić, Tutek & Šnajder (EACL Findings 2026): the pieces of a text
are repeated `k` times in one sequence, with no separator and positions running
on, and each piece takes its vector from the last copy, which has attended to
the whole text in every layer while the causal mask stays untouched. Padding
stays on the right: row b of a batch holds `k * n_b` real pieces, then padding.
"""
from typing import Tuple

import torch


def repeat_pieces(
    input_ids: torch.Tensor, attention_mask: torch.Tensor, repeat: int
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The repeated batch, its padding mask, and where each original piece's last copy is.

    Returns (ids of shape (B, k*L), mask (B, k*L), index (B, L)) where
    `index[b, t]` is the position of piece t's last copy in row b (pads point at
    their own row's position t, whose vector is never read).
    """
    batch, length = input_ids.shape
    lengths = attention_mask.long().sum(dim=1, keepdim=True)  # (B, 1)
    steps = torch.arange(length, device=input_ids.device).unsqueeze(0)  # (1, L)
    real = steps < lengths
    pad_id = input_ids[~real][0] if (~real).any() else input_ids[0, 0]
    repeated = torch.full((batch, repeat * length), int(pad_id), dtype=input_ids.dtype, device=input_ids.device)
    rows = torch.arange(batch, device=input_ids.device).unsqueeze(1).expand(batch, length)
    for copy in range(repeat):
        columns = copy * lengths + steps
        repeated[rows[real], columns[real]] = input_ids[real]
    positions = torch.arange(repeat * length, device=input_ids.device).unsqueeze(0)
    mask = (positions < repeat * lengths).to(attention_mask.dtype)
    index = torch.where(real, (repeat - 1) * lengths + steps, steps)
    return repeated, mask, index


def last_copy(states: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Gather (B, k*L, H) states back to (B, L, H) from the last copy."""
    return torch.gather(states, 1, index.unsqueeze(-1).expand(-1, -1, states.shape[-1]))
