"""Score a trained pipeline on a .spacy split with spaCy's own Scorer; write metrics JSON.

    python scripts/evaluate.py MODEL DATA OUTPUT [--gpu-id -1] [--inference-dtype auto|bfloat16|float32]
        [--spancat-thresholds 0.1,0.2,0.3,0.4,0.5] [--ner-decoding argmax|viterbi]

The JSON holds overall and per-label precision/recall/F for `ner` (ents_*) and
`spancat` (spans_sc_*), the words/s of the evaluation pass, and the precision the
decoder ran in. `--inference-dtype` loads the pipeline with that `inference_dtype`
(default: as its config says, "auto" for the shipped configs), so one set of stored
weights can be scored in bfloat16 and in float32. `--spancat-thresholds` adds spancat's
P/R/F at each threshold (`spans_sc_by_threshold`): the same predictions, filtered.
`--ner-decoding` loads a pipeline whose `ner` is `bio_ner` with that `decoding`, so one
trained tagger can be scored read each way (`ner_decoding` in the JSON says which).
"""
import argparse
import json
import sys
from pathlib import Path

from typing import List, Sequence

import spacy
from spacy.scorer import Scorer
from spacy.tokens import SpanGroup
from spacy.training import Corpus, Example
from thinc.api import ConfigValidationError

from spacy_unmask.bio_decoding import DECODINGS


class _KeepExamples(Scorer):
    """spaCy's Scorer, keeping the examples it scored: `nlp.evaluate` scores copies it predicts into."""

    def score(self, examples, **kwargs):
        self.examples = list(examples)
        return super().score(self.examples, **kwargs)


def _cut_spans(examples: List[Example], key: str, threshold: float) -> None:
    """Each predicted span group cut to the spans scoring at least `threshold`: what spancat
    (`max_positive = null`) keeps at that threshold."""
    for eg in examples:
        group = eg.predicted.spans[key]
        kept = [i for i, score in enumerate(group.attrs["scores"]) if score >= threshold]
        eg.predicted.spans[key] = SpanGroup(eg.predicted, name=key, spans=[group[i] for i in kept],
                                            attrs={"scores": [group.attrs["scores"][i] for i in kept]})


def evaluate_examples(nlp, examples: List[Example], thresholds: Sequence[float] = ()) -> dict:
    """`nlp.evaluate(examples)`'s scores and, given `thresholds` and a `spancat`, spancat's P/R/F
    at each (`spans_sc_by_threshold`), from one prediction pass: spancat predicts at the lowest
    threshold and the higher ones, its own included, cut its spans. A loaded pipeline's threshold
    comes from its saved cfg (a load-time config does not change it), so it is set here."""
    if not thresholds or "spancat" not in nlp.pipe_names:
        return nlp.evaluate(examples)
    spancat = nlp.get_pipe("spancat")
    own = spancat.cfg["threshold"]
    scorer = _KeepExamples(nlp=nlp)
    spancat.cfg["threshold"] = min(*thresholds, own)
    try:
        scores = nlp.evaluate(examples, scorer=scorer)
    finally:
        spancat.cfg["threshold"] = own
    table = {}
    for threshold in sorted({*thresholds, own}):
        _cut_spans(scorer.examples, spancat.key, threshold)
        found = spancat.score(scorer.examples)
        if threshold == own:  # the pipeline's own spancat scores, as if predicted at its threshold
            scores.update(found)
        if threshold in thresholds:
            table[f"{threshold:g}"] = {k: found[f"spans_{spancat.key}_{k}"] for k in ("p", "r", "f")}
    scores["spans_sc_by_threshold"] = table
    return scores


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
    parser.add_argument("--ner-decoding", choices=sorted(DECODINGS), default=None)
    args = parser.parse_args()
    if not args.data.is_file():
        print(f"error: {args.data} does not exist: run `spacy project run corpus` first", file=sys.stderr)
        return 1
    if args.gpu_id >= 0:
        spacy.require_gpu(args.gpu_id)
    overrides = {}
    if args.inference_dtype is not None:
        overrides["components.transformer.model.inference_dtype"] = args.inference_dtype
    if args.ner_decoding is not None:
        overrides["components.ner.decoding"] = args.ner_decoding
    try:
        nlp = spacy.load(args.model, config=overrides)
    except ConfigValidationError as err:
        # the one error meant here: `ner`'s factory takes no `decoding` argument
        if args.ner_decoding is None or not any(list(e.get("loc", ()))[-1:] == ["decoding"] for e in err.errors):
            raise
        print(f"error: --ner-decoding needs a pipeline whose `ner` is bio_ner; {args.model}'s `ner` "
              "takes no decoding (spaCy's ner has one reading of its predictions)", file=sys.stderr)
        return 1
    # spaCy's `evaluate` command does the same: the split's gold docs through nlp.evaluate
    examples = list(Corpus(args.data, gold_preproc=False)(nlp))
    scores = evaluate_examples(nlp, examples, args.spancat_thresholds or ())
    keep = {k: v for k, v in scores.items() if k.startswith(("ents_", "spans_sc_", "speed"))}
    if "ner" in nlp.pipe_names and hasattr(nlp.get_pipe("ner"), "decoding"):
        keep["ner_decoding"] = nlp.get_pipe("ner").decoding
    if "transformer" in nlp.pipe_names and hasattr(nlp.get_pipe("transformer").model, "transformer"):
        module = nlp.get_pipe("transformer").model.transformer
        keep["decoder_precision"] = str(getattr(module, "compute_dtype", "")).replace("torch.", "")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(keep, indent=2) + "\n")
    print(json.dumps({k: v for k, v in keep.items() if not k.endswith("per_type")}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
