"""Score a trained pipeline on a .spacy split with spaCy's own Scorer; write metrics JSON.

    python scripts/evaluate.py MODEL DATA OUTPUT [--gpu-id -1] [--inference-dtype auto|bfloat16|float32]
        [--spancat-thresholds 0.1,0.2,0.3,0.4,0.5]

The JSON holds overall and per-label precision/recall/F for `ner` (ents_*) and
`spancat` (spans_sc_*), the words/s of the evaluation pass, and the precision the
decoder ran in. `--inference-dtype` loads the pipeline with that `inference_dtype`
(default: as its config says, "auto" for the shipped configs), so one set of stored
weights can be scored in bfloat16 and in float32. `--spancat-thresholds` adds spancat's
P/R/F at each threshold (`spans_sc_by_threshold`): the same predictions, filtered.
"""
import argparse
import json
import sys
from pathlib import Path

from typing import Dict, List, Sequence

import spacy
from spacy.tokens import Doc, SpanGroup
from spacy.training import Corpus, Example


def spancat_by_threshold(nlp, references: List[Doc], thresholds: Sequence[float]) -> Dict[str, Dict[str, float]]:
    """{threshold: spancat's P/R/F} on gold docs `references`: predicted once at the lowest
    threshold, then each span group cut to the spans that score at least the next one, which is
    what spancat (`max_positive = null`) keeps at that threshold. A loaded pipeline's threshold
    comes from its saved cfg (a load-time config does not change it), so it is set here."""
    spancat = nlp.get_pipe("spancat")
    saved = spancat.cfg["threshold"]
    spancat.cfg["threshold"] = min(thresholds)
    try:
        examples = [Example(predicted, reference)
                    for predicted, reference in zip(nlp.pipe(r.text for r in references), references)]
    finally:
        spancat.cfg["threshold"] = saved
    found = {}
    for threshold in sorted(thresholds):
        for eg in examples:
            group = eg.predicted.spans[spancat.key]
            kept = [i for i, score in enumerate(group.attrs["scores"]) if score >= threshold]
            eg.predicted.spans[spancat.key] = SpanGroup(
                eg.predicted, name=spancat.key, spans=[group[i] for i in kept],
                attrs={"scores": [group.attrs["scores"][i] for i in kept]})
        scores = spancat.score(examples)
        found[f"{threshold:g}"] = {k: scores[f"spans_{spancat.key}_{k}"] for k in ("p", "r", "f")}
    return found


def thresholds_of(text: str) -> List[float]:
    values = [float(v) for v in text.split(",") if v.strip()]
    if not values or not all(0.0 <= v <= 1.0 for v in values):
        raise argparse.ArgumentTypeError(f"{text!r}: give thresholds between 0 and 1, separated by commas")
    return values


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("data", type=Path)
    parser.add_argument("output", type=Path)
    parser.add_argument("--gpu-id", type=int, default=-1)
    parser.add_argument("--inference-dtype", choices=["auto", "bfloat16", "float32"], default=None)
    parser.add_argument("--spancat-thresholds", type=thresholds_of, default=None)
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
    if args.spancat_thresholds and "spancat" in nlp.pipe_names:
        references = [eg.reference for eg in Corpus(args.data, gold_preproc=False)(nlp)]
        keep["spans_sc_by_threshold"] = spancat_by_threshold(nlp, references, args.spancat_thresholds)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(keep, indent=2) + "\n")
    print(json.dumps({k: v for k, v in keep.items() if not k.endswith("per_type")}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
