"""Score a trained pipeline on a .spacy split with spaCy's own Scorer; write metrics JSON.

    python scripts/evaluate.py MODEL DATA OUTPUT [--gpu-id -1]

The JSON holds overall and per-label precision/recall/F for `ner` (ents_*) and
`spancat` (spans_sc_*), the words/s of the evaluation pass, and the split size.
"""
import argparse
import json
import sys
from pathlib import Path

from spacy.cli.evaluate import evaluate


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("data", type=Path)
    parser.add_argument("output", type=Path)
    parser.add_argument("--gpu-id", type=int, default=-1)
    args = parser.parse_args()
    if not args.data.is_file():
        print(f"error: {args.data} does not exist: run `spacy project run corpus` first", file=sys.stderr)
        return 1
    scores = evaluate(args.model, args.data, use_gpu=args.gpu_id, silent=True)
    keep = {k: v for k, v in scores.items() if k.startswith(("ents_", "spans_sc_", "speed"))}
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(keep, indent=2) + "\n")
    print(json.dumps({k: v for k, v in keep.items() if not k.endswith("per_type")}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
