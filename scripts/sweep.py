"""The layer-group sweep: which layers to unmask, against an encoder and spaCy's CNN.

    python scripts/sweep.py [--quick] [--out reports/sweep] [--stage all|grid|specs|seeds|report]

Stages (each finished run leaves `OUT/<run>.json`; a restarted sweep skips those):
1. grid:  each family's learning rate from three values, on the dev split with seed 0
          (the decoder with unmask "none", the MiniLM encoder, the CNN tok2vec);
2. specs: one NER pipeline per unmask spec (and repeat 2) at the decoder's chosen rate,
          plus both baselines at theirs, all with seed 0, scored on dev and test;
3. seeds: seeds 1 and 2 for the three specs best on *dev*, for "none" and the baselines;
4. report: `OUT.md` (table) and `OUT.png` (plot) from all run files.
The budget (layers kept, epochs, batch) lives in configs/sweep_*.cfg and is the same
for every spec. `--quick` trains each run a few steps on a small slice (for CI).
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import spacy
from spacy.cli.evaluate import evaluate
from spacy.tokens import DocBin

ROOT = Path(__file__).resolve().parent.parent
SPECS = ["none", "all", "first_half", "second_half", "1000", "0100", "0010", "0001", "repeat2"]
GRID = {
    "decoder": [5e-4, 1e-3, 2e-3],  # LoRA adapters and the ner head
    "minilm": [1e-4, 2e-4, 5e-4],
    "tok2vec": [5e-4, 1e-3, 2e-3],
}
# how each family's config takes its learning rate
LR_KEY = {
    "decoder": "training.optimizer.learn_rate.initial_rate",
    "minilm": "training.optimizer.learn_rate.initial_rate",
    "tok2vec": "training.optimizer.learn_rate",
}
SEEDS = (0, 1, 2)
# 3 families x 3 rates, 8 more specs, then 2 seeds x (3 best specs + none + 2 baselines)
PLANNED_RUNS = 9 + len(SPECS) - 1 + 2 * 6


def log(message: str) -> None:
    print(f"[sweep {time.strftime('%H:%M:%S')}] {message}", flush=True)


def run_id(family: str, spec: str, lr: float, seed: int, quick: bool) -> str:
    name = family if family != "decoder" else f"decoder-{spec}"
    # quick runs never stand in for real ones, even in the same folder
    return f"{name}-lr{lr:g}-s{seed}" + ("-quick" if quick else "")


def read_run(path: Path):
    """A finished run's record, or None if the file is unreadable (a crash mid-write)."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def overrides(family: str, spec: str, lr: float, seed: int, quick: bool) -> list:
    args = [f"--{LR_KEY[family]}", str(lr), "--system.seed", str(seed)]
    if family == "decoder":
        unmask, repeat = ("none", 2) if spec == "repeat2" else (spec, 1)
        # quoted: spaCy's command line would read 0010 as the number 10
        args += ["--components.transformer.model.unmask", json.dumps(unmask), "--components.transformer.model.repeat", str(repeat)]
        if quick:
            args += ["--components.transformer.model.n_layers", "4"]
    if quick:
        args += ["--training.max_steps", "3", "--training.eval_frequency", "3", "--training.max_epochs", "0"]
        if family != "tok2vec":
            args += ["--training.optimizer.learn_rate.warmup_steps", "1"]
    return args


def corpus_paths(corpus: Path, quick: bool, out: Path) -> dict:
    missing = [p for p in ("train", "dev", "test") if not (corpus / f"{p}.spacy").is_file()]
    if missing:
        raise SystemExit(f"{corpus / missing[0]}.spacy is missing: run `spacy project run corpus` first")
    if not quick:
        return {p: corpus / f"{p}.spacy" for p in ("train", "dev", "test")}
    small = out / "corpus"
    small.mkdir(parents=True, exist_ok=True)
    vocab = spacy.blank("en").vocab
    for part, n in (("train", 24), ("dev", 12), ("test", 12)):
        docs = list(DocBin().from_disk(corpus / f"{part}.spacy").get_docs(vocab))[:n]
        DocBin(docs=docs).to_disk(small / f"{part}.spacy")
    return {p: small / f"{p}.spacy" for p in ("train", "dev", "test")}


def count_words(path: Path) -> int:
    return sum(len(d) for d in DocBin().from_disk(path).get_docs(spacy.blank("en").vocab))


def train_and_score(family, spec, lr, seed, paths, out: Path, quick: bool) -> dict:
    """One run; its JSON is the resume marker."""
    name = run_id(family, spec, lr, seed, quick)
    target = out / f"{name}.json"
    done = read_run(target) if target.is_file() else None
    if done is not None:
        return done
    model_dir = out / "training" / name
    cmd = [sys.executable, "-m", "spacy", "train", str(ROOT / f"configs/sweep_{family}.cfg"),
           "--output", str(model_dir), "--paths.train", str(paths["train"]), "--paths.dev", str(paths["dev"]),
           *overrides(family, spec, lr, seed, quick)]
    finished = len([p for p in out.glob("*.json") if (read_run(p) or {}).get("quick") == quick])
    log(f"training {name} ({finished} runs finished so far, of about {PLANNED_RUNS} in a full sweep)")
    start = time.perf_counter()
    result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"{name} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    best = model_dir / "model-best"
    scores = {part: evaluate(str(best), paths[part], silent=True) for part in ("dev", "test")}
    record = {
        "run": name, "family": family, "spec": spec, "learn_rate": lr, "seed": seed,
        "unmasked_layers": unmasked_layers(best) if family == "decoder" else None,
        "train_seconds": round(seconds, 1),
        "train_words": count_words(paths["train"]),
        "dev": {k: scores["dev"][k] for k in ("ents_p", "ents_r", "ents_f")},
        "test": {k: scores["test"][k] for k in ("ents_p", "ents_r", "ents_f")},
        "test_words_per_s": round(scores["test"]["speed"], 1),
        "quick": quick,
    }
    partial = target.with_name(target.name + ".part")
    partial.write_text(json.dumps(record, indent=2) + "\n")
    os.replace(partial, target)
    shutil.rmtree(model_dir, ignore_errors=True)  # the record is what we keep; a model is ~0.5 GB
    log(f"{name}: dev F1 {record['dev']['ents_f']:.3f}, test F1 {record['test']['ents_f']:.3f}, {seconds:.0f} s")
    return record


def unmasked_layers(model_path: Path) -> str:
    nlp = spacy.load(model_path, exclude=["ner"])
    model = nlp.get_pipe("transformer").model
    layers = sorted(model.transformer.unmasked_layers)
    return ",".join(map(str, layers)) if layers else "-"


def best_rate(records) -> float:
    return max(records, key=lambda r: r["dev"]["ents_f"])["learn_rate"]


def mean_spread(values):
    mean = statistics.mean(values)
    spread = (max(values) - min(values)) / 2 if len(values) > 1 else 0.0
    return mean, spread


def budget_text() -> str:
    """The budget as the sweep configs state it (the same for every spec and seed)."""
    from thinc.api import Config

    def cfg(family):
        return Config().from_disk(ROOT / f"configs/sweep_{family}.cfg", interpolate=False)

    decoder = cfg("decoder")
    training, model = decoder["training"], decoder["components"]["transformer"]["model"]
    lora = model.get("lora")
    adapters = f"LoRA r={lora['r']} on {', '.join(lora['target_modules'])}" if lora else "full fine-tuning"
    epochs = {f: cfg(f)["training"]["max_epochs"] for f in ("decoder", "minilm", "tok2vec")}
    same = len(set(epochs.values())) == 1
    return (
        f"Budget: NER only, {training['max_epochs']} epochs over the train split for every family"
        f"{'' if same else ' (NOT equal: ' + str(epochs) + ')'}, "
        f"batches of `{training['batcher']['@batchers']}` size {training['batcher']['size']}, "
        f"dev scored every {training['eval_frequency']} steps (model-best kept), seeds as listed. "
        f"Decoder: SmolLM2-135M cut to its first {model['n_layers']} of 30 layers, {adapters}, "
        "with the ner head trained at the same rate. MiniLM-L6: all 6 layers, full fine-tuning "
        "(stock `spacy-transformers.TransformerModel.v3`). tok2vec: spaCy's CNN from scratch."
    )


def summarize(records):
    """One row per system (decoder spec or baseline) at its family's chosen rate."""
    rates = {r["family"]: r["learn_rate"] for r in records if r.get("chosen")}
    groups = {}
    for r in records:
        if r["learn_rate"] == rates.get(r["family"]):
            key = r["spec"] if r["family"] == "decoder" else r["family"]
            groups.setdefault(key, []).append(r)
    rows = []
    for key, runs in groups.items():
        f1, spread = mean_spread([100 * r["test"]["ents_f"] for r in runs])
        rows.append({
            "system": key,
            "family": runs[0]["family"],
            "layers": runs[0].get("unmasked_layers") or "n/a",
            "seeds": sorted(r["seed"] for r in runs),
            "dev_f1": statistics.mean(100 * r["dev"]["ents_f"] for r in runs),
            "p": statistics.mean(100 * r["test"]["ents_p"] for r in runs),
            "r": statistics.mean(100 * r["test"]["ents_r"] for r in runs),
            "f1": f1,
            "spread": spread,
            "seconds": statistics.mean(r["train_seconds"] for r in runs),
            "words_per_s": statistics.mean(r["test_words_per_s"] for r in runs),
        })
    rows.sort(key=lambda row: -row["f1"])
    return rates, rows


def verdict(rows) -> str:
    """The decoder spec best on dev (over all its seeds), and its test margins."""
    by_name = {row["system"]: row for row in rows}
    decoders = [row for row in rows if row["family"] == "decoder"]
    if not decoders:
        return ""
    best = max(decoders, key=lambda row: (len(row["seeds"]), row["dev_f1"]))
    parts = [f"Best decoder spec on dev (among those with the most seeds): `{best['system']}` "
             f"(dev F1 {best['dev_f1']:.1f}, test F1 {best['f1']:.1f} ± {best['spread']:.1f} over seeds {best['seeds']})."]
    for other in ("none", "minilm", "tok2vec"):
        if other in by_name and other != best["system"]:
            row = by_name[other]
            parts.append(f"Test F1 margin over {other}: {best['f1'] - row['f1']:+.1f} "
                         f"({other} {row['f1']:.1f} ± {row['spread']:.1f}, seeds {row['seeds']}).")
    return " ".join(parts)


def write_report(records, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rates, rows = summarize(records)
    lines = [
        "| system | layers unmasked | seeds | dev F1 | test P | test R | test F1 (mean ± half-range) | train s | words/s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['system']} | {row['layers']} | {','.join(map(str, row['seeds']))} | {row['dev_f1']:.1f} "
            f"| {row['p']:.1f} | {row['r']:.1f} | {row['f1']:.1f} ± {row['spread']:.1f} | {row['seconds']:.0f} "
            f"| {row['words_per_s']:.0f} |"
        )
    lines += [
        "",
        "Learning rates chosen on dev (seed 0): " + ", ".join(f"{k} {v:g}" for k, v in sorted(rates.items()))
        + "; grids: " + "; ".join(f"{k} {', '.join(f'{v:g}' for v in GRID[k])}" for k in sorted(GRID)) + ".",
        "",
        verdict(rows),
        "",
        budget_text(),
        "",
        "train s: wall seconds of `spacy train` (dev scored 3 times inside); words/s: spaCy's evaluate speed on test.",
    ]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")

    decoder_rows = sorted((row for row in rows if row["family"] == "decoder"), key=lambda row: SPECS.index(row["system"]))
    fig, ax = plt.subplots(figsize=(8, 4))
    for several, style, label in ((True, "o", "decoder spec, several seeds (mean, half-range)"), (False, "o", "decoder spec, 1 seed")):
        xs = [i for i, r in enumerate(decoder_rows) if (len(r["seeds"]) > 1) == several]
        ax.errorbar(xs, [decoder_rows[i]["f1"] for i in xs], yerr=[decoder_rows[i]["spread"] for i in xs], fmt=style,
                    capsize=4, label=label, color="C0", markerfacecolor="C0" if several else "white")
    ax.set_xticks(range(len(decoder_rows)), [r["system"] for r in decoder_rows], rotation=30)
    for row, style in zip([r for r in rows if r["family"] != "decoder"], ("--", ":")):
        ax.axhline(row["f1"], linestyle=style, color="gray", label=f"{row['system']} {row['f1']:.1f}")
    ax.set_ylabel("test NER F1")
    ax.set_title("SmolLM2 layer-group unmasking on WNUT-16 (our split)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out.with_suffix(".png"), dpi=120)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--corpus", type=Path, default=ROOT / "corpus", help="folder with train/dev/test.spacy")
    parser.add_argument("--out", type=Path, default=ROOT / "reports" / "sweep")
    parser.add_argument("--stage", choices=["all", "grid", "specs", "seeds", "report"], default="all")
    args = parser.parse_args()
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    families = ("decoder", "minilm", "tok2vec")
    if args.stage == "report":
        return report_from_files(out, args.quick)
    paths = corpus_paths(args.corpus, args.quick, out)
    # --quick checks the machinery, not the science: one rate per family, one extra seed
    rates = {f: GRID[f][1:2] if args.quick else GRID[f] for f in families}
    seeds = SEEDS[:2] if args.quick else SEEDS
    grid = {f: [train_and_score(f, "none", lr, 0, paths, out, args.quick) for lr in rates[f]] for f in families}
    chosen = {f: best_rate(grid[f]) for f in families}
    log(f"chosen learning rates: {chosen}")
    if args.stage == "grid":
        return 0
    records = [r for f in families for r in grid[f]]
    if args.stage in ("all", "specs", "seeds"):
        for spec in SPECS:
            records.append(train_and_score("decoder", spec, chosen["decoder"], 0, paths, out, args.quick))
    if args.stage in ("all", "seeds"):
        firsts = [r for r in records if r["family"] == "decoder" and r["learn_rate"] == chosen["decoder"] and r["seed"] == 0]
        ranked = sorted({r["spec"]: r for r in firsts}.values(), key=lambda r: -r["dev"]["ents_f"])
        again = {r["spec"] for r in ranked[:3]} | {"none"}
        for seed in seeds[1:]:
            for spec in sorted(again):
                records.append(train_and_score("decoder", spec, chosen["decoder"], seed, paths, out, args.quick))
            for family in ("minilm", "tok2vec"):
                records.append(train_and_score(family, "none", chosen[family], seed, paths, out, args.quick))
    return report_from_files(out, args.quick)


def report_from_files(out: Path, quick: bool) -> int:
    """The table and plot from every finished run file in `out` (of the same mode)."""
    records = [r for r in map(read_run, sorted(out.glob("*.json"))) if r is not None and r.get("quick") == quick]
    grid = [r for r in records if r["seed"] == 0 and r["spec"] == "none"]
    if not grid:
        raise SystemExit(f"no finished grid runs in {out}: run the sweep first")
    chosen = {}
    for family in {r["family"] for r in grid}:
        chosen[family] = best_rate([r for r in grid if r["family"] == family])
    for r in records:
        r["chosen"] = r["learn_rate"] == chosen.get(r["family"])
    write_report(records, out)
    log(f"report: {out.with_suffix('.md')}, {out.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
