"""Score a trained pipeline on a .spacy split with spaCy's own Scorer; write metrics JSON.

    python scripts/evaluate.py MODEL DATA OUTPUT [--gpu-id -1] [--inference-dtype auto|bfloat16|float32]

The JSON holds overall and per-label precision/recall/F for `ner` (ents_*) and
`spancat` (spans_sc_*), the words/s of the evaluation pass, and the precision the
decoder ran in. `--inference-dtype` loads the pipeline with that `inference_dtype`
(default: as its config says, "auto" for the shipped configs), so one set of stored
weights can be scored in bfloat16 and in float32.
"""
import argparse
import json
import sys
from pathlib import Path

import spacy
from spacy.training import Corpus


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("data", type=Path)
    parser.add_argument("output", type=Path)
    parser.add_argument("--gpu-id", type=int, default=-1)
    parser.add_argument("--inference-dtype", choices=["auto", "bfloat16", "float32"], default=None)
    args = parser.parse_args()
    if not args.data.is_file():
        print(f"error: {args.data} does not exist: run `spacy project run corpus` first", file=sys.stderr)
        return 1
    if args.gpu_id >= 0:
        spacy.require_gpu(args.gpu_id)
    overrides = {}
    if args.inference_dtype is not None:
        overrides["components.transformer.model.inference_dtype"] = args.inference_dtype
    nlp = spacy.load(args.model, config=overrides)
    # spaCy's `evaluate` command does the same: the split's gold docs through nlp.evaluate
    scores = nlp.evaluate(list(Corpus(args.data, gold_preproc=False)(nlp)))
    keep = {k: v for k, v in scores.items() if k.startswith(("ents_", "spans_sc_", "speed"))}
    if "transformer" in nlp.pipe_names and hasattr(nlp.get_pipe("transformer").model, "transformer"):
        module = nlp.get_pipe("transformer").model.transformer
        keep["decoder_precision"] = str(getattr(module, "compute_dtype", "")).replace("torch.", "")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(keep, indent=2) + "\n")
    print(json.dumps({k: v for k, v in keep.items() if not k.endswith("per_type")}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
