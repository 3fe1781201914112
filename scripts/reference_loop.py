"""The reference: a plain PyTorch fine-tuning loop, as one would write it without spaCy.

Batches of 16 texts of the train split, sorted by piece count (so they hardly pad)
and then taken in a seeded random order; forward through the decoder module, a
linear head over every piece, cross-entropy against the gold BIO label of the
piece's first character, backward, global gradient clipping and torch's fused AdamW over
every trainable parameter. It is the yardstick for spaCy's loop: what the same
module costs when nothing but PyTorch stands around it.
"""
import random
from typing import Callable, List, Sequence, Tuple

import torch
from torch import nn

from spacy_unmask.pieces import piece_counts

BATCH_SIZE = 16


def piece_labels(text: str, entities: Sequence[Tuple[int, int, str]], offsets, labels: dict) -> List[int]:
    """BIO label ids of the pieces, by the entity (if any) that holds each piece's first character."""
    at = [0] * (len(text) + 1)
    for start, end, label in entities:
        at[start] = labels[f"B-{label}"]
        for i in range(start + 1, end):
            at[i] = labels[f"I-{label}"]
    return [at[start] if end > start else 0 for start, end in offsets]


def reference_batches(examples, tokenizer, seed: int = 0):
    """One epoch of length-sorted batches of `BATCH_SIZE` (texts, entities), in a seeded order."""
    items = [(eg.reference.text, [(e.start_char, e.end_char, e.label_) for e in eg.reference.ents]) for eg in examples]
    lengths = piece_counts(tokenizer, [text for text, _ in items], truncate=True)
    order = sorted(range(len(items)), key=lambda i: lengths[i])
    batches = [[items[i] for i in order[k : k + BATCH_SIZE]] for k in range(0, len(order), BATCH_SIZE)]
    random.Random(seed).shuffle(batches)
    return batches


def make_step(module: nn.Module, tokenizer, batches, learn_rate: float, weight_decay: float, grad_clip: float) -> Callable:
    """One training step of the reference loop, as a closure over its head and optimizer."""
    names = sorted({label for batch in batches for _, ents in batch for _, _, label in ents})
    labels = {"O": 0, **{f"{p}-{name}": 1 + 2 * i + j for i, name in enumerate(names) for j, p in enumerate("BI")}}
    device = module.device
    head = nn.Linear(module.config.hidden_size, len(labels)).to(device)
    params = [p for p in module.parameters() if p.requires_grad] + list(head.parameters())
    optimizer = torch.optim.AdamW(params, lr=learn_rate, weight_decay=weight_decay, fused=True)
    module.train()

    def step(batch):
        texts = [text for text, _ in batch]
        enc = tokenizer(texts, padding="longest", truncation=True, return_tensors="pt", return_offsets_mapping=True)
        mask = enc["attention_mask"].bool()
        gold = torch.tensor([
            piece_labels(text, ents, offsets.tolist(), labels) for (text, ents), offsets in zip(batch, enc["offset_mapping"])
        ])
        states = module(input_ids=enc["input_ids"].to(device), attention_mask=enc["attention_mask"].to(device)).last_hidden_state
        logits = head(states)
        loss = nn.functional.cross_entropy(logits[mask.to(device)], gold[mask].to(device))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, grad_clip)
        optimizer.step()
        optimizer.zero_grad()

    return step
