"""How much of the shared decoder's gradient each listening head sends, step by step.

    python scripts/gradient_balance.py CONFIG [--steps 60] [--output reports/gradient_balance.json]
        [--paths.train corpus/train.spacy ...] [--section.key value ...]

The pipeline is built as `spacy train` builds it (`init_nlp`), and its first batches run
through spaCy's own training loop (`train_while_improving`). Every `TransformerListener`'s
backward pass is watched: at each step the norm of the gradient that each head hands back
to the decoder's last hidden state (after the listener's `grad_factor`) is recorded, with
each head's loss. The decoder's update follows the *sum* of those gradients, so a head whose
norm is many times another's sets the direction the shared layers move in, whatever the
optimizer's scale (Adam divides the sum's scale out, not one head's share of it).
"""
import argparse
import json
import statistics
import sys
from itertools import islice
from pathlib import Path

import numpy
from spacy.cli._util import parse_config_overrides
from spacy.training.loop import train_while_improving
from spacy_transformers.layers import TransformerListener

from benchmark_training import build


def watch_listeners(nlp) -> dict:
    """{listener id: component name} for every listener of the pipeline's transformer, and a
    log that each listener's backward pass appends (component, gradient norm) to."""
    names = {id(listener): name
             for name, listeners in nlp.get_pipe("transformer").listener_map.items() for listener in listeners}
    seen = []
    original = TransformerListener.backprop_and_clear

    def backprop_and_clear(self, d_outputs, *args, **kwargs):
        squares = sum(float(numpy.square(nlp.get_pipe("transformer").model.ops.to_numpy(
            d.model_output["last_hidden_state"])).sum()) for d in d_outputs)
        seen.append((names.get(id(self), "?"), squares ** 0.5))
        return original(self, d_outputs, *args, **kwargs)

    TransformerListener.backprop_and_clear = backprop_and_clear
    return seen


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", type=Path)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--output", type=Path, default=Path("reports/gradient_balance.json"))
    args, rest = parser.parse_known_args()
    nlp, training, train_corpus = build(args.config, parse_config_overrides(rest))
    seen = watch_listeners(nlp)
    batches = list(islice(training["batcher"](train_corpus(nlp)), args.steps))
    loop = train_while_improving(
        nlp, training["optimizer"], ((0, batch) for batch in batches), evaluate=lambda: (0.0, {}),
        dropout=training["dropout"], accumulate_gradient=1, eval_frequency=10**9, patience=0, max_steps=0,
        exclude=training["frozen_components"], annotating_components=[], before_update=None,
    )
    steps = []
    for step, (_batch, info, _best) in enumerate(loop, start=1):
        norms = {}
        for name, norm in seen:
            norms[name] = round(norms.get(name, 0.0) + norm, 4)
        seen.clear()
        steps.append({"step": step, "grad_norm": norms, "losses": {k: round(float(v), 2) for k, v in info["losses"].items()}})
        print(f"step {step:3d}  " + "  ".join(f"{k} |g| {v:9.3f}" for k, v in norms.items()), flush=True)
    heads = sorted({k for s in steps for k in s["grad_norm"]})
    windows = [(1, 10), (11, 30), (31, args.steps)]
    summary = {}
    for lo, hi in windows:
        part = [s for s in steps if lo <= s["step"] <= hi]
        if part:
            summary[f"steps {lo}-{hi}"] = {h: round(statistics.median(s["grad_norm"].get(h, 0.0) for s in part), 4)
                                         for h in heads}
    args.output.parent.mkdir(parents=True, exist_ok=True)
    result = {"config": str(args.config), "overrides": rest, "steps": steps, "median_grad_norm": summary}
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
