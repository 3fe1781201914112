"""`spacy train` with the project's vars as overrides, leaving out those set to "config".

    python scripts/train.py CONFIG OUTPUT [--gpu-id -1] [--seed 0] [--paths.X PATH ...]
        [--unmask V] [--n-layers V] [--repeat V] [--max-epochs V] [--max-steps V] [--total-steps V]
        [--mixed-precision V]

Each of the last seven defaults to "config": the value in CONFIG stands. Values go to
spaCy as Python values, not through its command-line parser, so a pattern such as
"0010" keeps its leading zeros (quote it in `--vars`: --vars.unmask '"0010"').
"""
import argparse
import sys
from pathlib import Path

from spacy.cli.train import train

KEEP = "config"
OVERRIDES = {
    "unmask": ("components.transformer.model.unmask", str),
    "n_layers": ("components.transformer.model.n_layers", lambda v: None if v.lower() in ("null", "none") else int(v)),
    "repeat": ("components.transformer.model.repeat", int),
    "max_epochs": ("training.max_epochs", int),
    "max_steps": ("training.max_steps", int),
    "total_steps": ("training.optimizer.learn_rate.total_steps", int),
    "mixed_precision": ("components.transformer.model.mixed_precision", lambda v: {"true": True, "false": False}[v.lower()]),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", type=Path)
    parser.add_argument("output", type=Path)
    parser.add_argument("--gpu-id", type=int, default=-1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--paths.train", dest="train", required=True)
    parser.add_argument("--paths.dev", dest="dev", required=True)
    parser.add_argument("--paths.model", dest="model", required=True)
    for name in OVERRIDES:
        parser.add_argument("--" + name.replace("_", "-"), dest=name, default=KEEP)
    args = parser.parse_args()
    overrides = {"paths.train": args.train, "paths.dev": args.dev, "paths.model": args.model, "system.seed": args.seed}
    for name, (key, convert) in OVERRIDES.items():
        value = getattr(args, name)
        if str(value) != KEEP:
            try:
                overrides[key] = convert(str(value))
            except ValueError:
                print(f"error: --{name.replace('_', '-')} {value!r} is not a valid value", file=sys.stderr)
                return 1
    train(args.config, args.output, use_gpu=args.gpu_id, overrides=overrides)
    return 0


if __name__ == "__main__":
    sys.exit(main())
