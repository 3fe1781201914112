"""reports/precision.md: test F1 of the CPU recipe trained under bf16 autocast against float32, per seed.

    python scripts/precision_report.py [--metrics metrics/precision] [--output reports/precision.md]

Reads the files `scripts/precision_seeds.sh` writes (`{bf16,fp32}_seed{S}.json`: spaCy's
scores on the test split, the training wall time and the precision trained in) and writes one
row per precision: each seed's test NER and SpanCat F1, the mean ± sample sd with n, and the
median training wall time, then the difference of the means with its standard error. Only runs
of the current recipe count: a record's `recipe` must be `configs/cpu.cfg`'s digest now
(`--recipe` prints it; `--recipe-of FILE` a record's), so runs of an older config are left out,
with their count, until the script has trained them again.
"""
import argparse
import json
import math
import statistics
from pathlib import Path

from thinc.api import Config

from study_plan import digest

ROOT = Path(__file__).resolve().parent.parent
NAMES = {"bf16": "bf16 autocast (shipped)", "fp32": "float32"}
CONFIG = ROOT / "configs" / "cpu.cfg"  # what `spacy project run train` trains


def recipe(config: Path = CONFIG) -> str:
    """The digest of the config the runs train (its settings: comments and layout do not count),
    as the study digests its arms: a record keeps it, so a changed config is rerun."""
    return digest(Config().from_disk(config, interpolate=False))


def mean_sd(values):
    sd = statistics.stdev(values) if len(values) > 1 else float("nan")
    return statistics.mean(values), sd


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--metrics", type=Path, default=ROOT / "metrics" / "precision")
    parser.add_argument("--output", type=Path, default=ROOT / "reports" / "precision.md")
    parser.add_argument("--config", type=Path, default=CONFIG, help="the config the runs train")
    parser.add_argument("--recipe", action="store_true", help="print the config's digest and exit")
    parser.add_argument("--recipe-of", type=Path, help="print a record's recipe digest (empty if none) and exit")
    args = parser.parse_args()
    if args.recipe_of:
        print(json.loads(args.recipe_of.read_text()).get("recipe", ""))
        return
    current = recipe(args.config)
    if args.recipe:
        print(current)
        return
    runs, stale = {}, 0
    for path in sorted(args.metrics.glob("*_seed*.json")):
        record = json.loads(path.read_text())
        if record.get("recipe") != current:
            stale += 1
            continue
        runs.setdefault(record["training_precision"], []).append(record)
    lines = ["| training precision | n | test NER F1 per seed | NER mean ± sd | test SpanCat F1 per seed | SpanCat mean ± sd "
             "| train wall s, median |", "|---|---|---|---|---|---|---|"]
    means = {}
    for precision in ("bf16", "fp32"):
        records = sorted(runs.get(precision, []), key=lambda r: r["seed"])
        if not records:
            continue
        ner = [100 * r["ents_f"] for r in records]
        spans = [100 * r["spans_sc_f"] for r in records]
        means[precision] = {"ner": ner, "spans": spans}
        (nm, ns), (sm, ss) = mean_sd(ner), mean_sd(spans)
        lines.append(
            f"| {NAMES[precision]} | {len(records)} | {', '.join(f'{v:.1f}' for v in ner)} | {nm:.1f} ± {ns:.1f} "
            f"| {', '.join(f'{v:.1f}' for v in spans)} | {sm:.1f} ± {ss:.1f} "
            f"| {statistics.median(r['train_wall_s'] for r in records):.0f} |"
        )
    if len(means) == 2:
        for key, label in (("ner", "NER"), ("spans", "SpanCat")):
            a, b = means["bf16"][key], means["fp32"][key]
            diff = statistics.mean(a) - statistics.mean(b)
            se = math.sqrt(statistics.variance(a) / len(a) + statistics.variance(b) / len(b)) if min(len(a), len(b)) > 1 else float("nan")
            wider = max(statistics.stdev(a), statistics.stdev(b)) if min(len(a), len(b)) > 1 else float("nan")
            lines.append("")
            lines.append(f"{label}: bf16 - float32 = {diff:+.1f} F1 (standard error {se:.1f}; wider seed sd {wider:.1f}).")
    lines += [""] + [f"Recipe: `{args.config.name}` at digest {current}."
                     + (f" {stale} run(s) of another recipe left out." if stale else "")]
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
