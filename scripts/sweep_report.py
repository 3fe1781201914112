"""The sweep's report: `OUT.md` (tables and verdict) and `OUT.png` (every seed's test F1) from `OUT/*.json`.

    python scripts/sweep.py --stage report [--out reports/sweep]

Only runs of the current recipe count (their `recipe` digest equals that of the config
scripts/sweep_recipe.py derives now). A family's rate is chosen from the records with
`sweep_plan.choose_rate`, the rule that drove the runs; while runs are missing it is marked
provisional. Means are over seeds; ± is the sample standard deviation, with n.
"""
import statistics
from pathlib import Path

from runs import log, read_run
from sweep_plan import SEEDS, SPECS, choose_rate, grid_of, seeds_of
from sweep_recipe import FAMILIES, digest, family_config

BASELINES = ("minilm", "tok2vec")


def current_records(out: Path, quick: bool):
    """The finished runs of this mode and of the current recipe, and how many older ones were left out."""
    recipes = {family: digest(family_config(family)) for family in FAMILIES}
    records, stale = [], 0
    for record in map(read_run, sorted(out.glob("*.json"))):
        if record is None or record.get("quick") != quick:
            continue
        if record.get("recipe") != recipes.get(record["family"]):
            stale += 1
            continue
        records.append(record)
    return records, stale


def chosen_rates(records, quick: bool):
    """{family: (rate, final, rates tried)} by the rule that drove the sweep."""
    by_key = {(r["family"], r["spec"], r["learn_rate"], r["seed"]): r for r in records}
    rates = {}
    for family in FAMILIES:
        rate, final = choose_rate(grid_of(family, quick), lambda lr, seed: by_key.get((family, "none", lr, seed)),
                                  seeds_of(quick))
        if rate is not None:
            tried = sorted({r["learn_rate"] for r in records if r["family"] == family and r["spec"] == "none"})
            rates[family] = (rate, final, tried)
    return rates


def spread(values):
    return statistics.stdev(values) if len(values) > 1 else float("nan")


def rows_at_rates(records, rates):
    """One row per system (family and spec) at its family's chosen rate."""
    groups = {}
    for r in records:
        if r["family"] in rates and r["learn_rate"] == rates[r["family"]][0]:
            groups.setdefault((r["family"], r["spec"]), []).append(r)
    rows = []
    for (family, spec), runs in groups.items():
        runs.sort(key=lambda r: r["seed"])
        test = [100 * r["test"]["ents_f"] for r in runs]
        rows.append({
            "system": family if family in BASELINES else spec,
            "family": family,
            "spec": spec,
            "layers": runs[0].get("unmasked_layers") or "n/a",
            "seeds": [r["seed"] for r in runs],
            "n": len(runs),
            "test_f1s": test,
            "f1": statistics.mean(test),
            "sd": spread(test),
            "dev_f1": statistics.mean(100 * r["dev"]["ents_f"] for r in runs),
            "p": statistics.mean(100 * r["test"]["ents_p"] for r in runs),
            "r": statistics.mean(100 * r["test"]["ents_r"] for r in runs),
            **costs(runs),
        })
    return rows


SHARED = 0.03  # other processes took more than this fraction of a run's CPU time: it shared the machine (alone: under 1%)


def alone(run) -> bool:
    """Whether `run` had the machine to itself. Records from before the sweep recorded
    `spacy train`'s CPU time come from the sessions where tests, benchmarks and CI checks ran
    beside the sweep (their words/s ran as low as 21 against about 500), so they count as
    shared. Of the rest, a run that recorded what other processes took (/proc/stat) is alone
    when that is at most SHARED of its own CPU time; one that did not, when the 1-minute load
    as it ended was within the core count."""
    if "train_cpu_seconds" not in run:
        return False
    if run.get("other_cpu_seconds") is not None:
        return run["other_cpu_seconds"] <= SHARED * run["train_cpu_seconds"]
    return run.get("load_average", 0) <= run.get("cpu_count", 2) + 0.5


def costs(runs) -> dict:
    """Medians over the runs that had the machine to themselves (`alone`): the wall seconds and
    words/s of the others say nothing about the system. nan where no run was alone."""
    timed = [r for r in runs if alone(r)]

    def median(key):
        return statistics.median(r[key] for r in timed) if timed else float("nan")

    return {"seconds": median("train_seconds"), "cpu_seconds": median("train_cpu_seconds"),
            "words_per_s": median("test_words_per_s")}


def order(row) -> tuple:
    families = ("decoder", "lora", "minilm", "tok2vec")
    spec = row["spec"]
    position = SPECS.index(spec) if spec in SPECS else len(SPECS)
    return families.index(row["family"]), position


def fmt(value, digits=1):
    return "n/a" if value != value else f"{value:.{digits}f}"


def table(rows) -> list:
    lines = [
        "| system | layers unmasked | n | test F1 per seed | test F1 mean ± sd | dev F1 | test P | test R | train s | train CPU s | words/s |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['system']} | {row['layers']} | {row['n']} | {', '.join(f'{v:.1f}' for v in row['test_f1s'])} "
            f"| {row['f1']:.1f} ± {fmt(row['sd'])} | {row['dev_f1']:.1f} | {row['p']:.1f} | {row['r']:.1f} "
            f"| {fmt(row['seconds'], 0)} | {fmt(row['cpu_seconds'], 0)} | {fmt(row['words_per_s'], 0)} |"
        )
    return lines


def gap(a, b) -> str:
    """`a` minus `b` in test F1, with the gap's standard error (Welch) when both have seeds."""
    difference = a["f1"] - b["f1"]
    if a["n"] > 1 and b["n"] > 1:
        error = (a["sd"] ** 2 / a["n"] + b["sd"] ** 2 / b["n"]) ** 0.5
        ratio = difference / error if error else float("inf")
        widest = max(a["sd"], b["sd"])
        against = "larger" if abs(difference) > widest else "not larger"
        return (f"{difference:+.1f} (standard error {error:.1f}, so {abs(ratio):.1f} standard errors; "
                f"{against} than the wider seed-to-seed sd of the two, {widest:.1f})")
    return f"{difference:+.1f} (one seed: no spread)"


def best_on_dev(rows, family: str):
    """`family`'s row with the best mean dev F1 among its rows with the most seeds, or None."""
    candidates = [row for row in rows if row["family"] == family]
    if not candidates:
        return None
    most = max(row["n"] for row in candidates)
    return max((row for row in candidates if row["n"] == most), key=lambda row: row["dev_f1"])


def winner(label: str, row) -> str:
    """The verdict's line for a family's best row on dev."""
    return (f"- {label} on dev (mean over n={row['n']} seeds): `{row['system']}`, dev F1 {row['dev_f1']:.1f}, "
            f"test F1 {row['f1']:.1f} ± {fmt(row['sd'])}.")


def margin(a, b, a_name: str, b_name: str) -> str:
    """The verdict's line for `a` minus `b` on test, with `b`'s own mean ± sd."""
    return f"- {a_name} − {b_name} on test: {gap(a, b)}; {b_name} {b['f1']:.1f} ± {fmt(b['sd'])}, n={b['n']}."


def verdict(rows) -> list:
    """Best decoder spec on dev and its test margins; the two routes; the baselines; the LoRA table."""
    best = best_on_dev(rows, "decoder")
    if best is None:
        return []
    by = {(row["family"], row["system"]): row for row in rows}
    lines = [winner("Best decoder spec", best)]
    for key in (("decoder", "none"), ("minilm", "minilm"), ("tok2vec", "tok2vec")):
        if key in by and by[key] is not best:
            lines.append(margin(best, by[key], f"`{best['system']}`", f"`{by[key]['system']}`"))
    routes = [row for row in rows if row["family"] == "decoder" and (row["system"].startswith("repeat2") or row is best)]
    if len(routes) > 1:
        lines.append("- Routes: " + "; ".join(
            f"`{row['system']}` test F1 {row['f1']:.1f} ± {fmt(row['sd'])} (n={row['n']}), {fmt(row['seconds'], 0)} s "
            f"({fmt(row['cpu_seconds'], 0)} CPU s) to train, {fmt(row['words_per_s'], 0)} words/s to annotate"
            for row in routes) + ".")
    lora = best_on_dev(rows, "lora")
    if lora is not None:
        lines.append(winner("LoRA: best spec", lora))
        causal = by.get(("lora", "none"))
        if causal is not None and causal is not lora:
            lines.append(margin(lora, causal, f"LoRA `{lora['system']}`", "LoRA `none`"))
        lines.append(f"- LoRA `{lora['system']}` − full fine-tuning `{best['system']}` on test: {gap(lora, best)}.")
    return lines


def write_report(out: Path, quick: bool) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records, stale = current_records(out, quick)
    rates = chosen_rates(records, quick)
    rows = sorted(rows_at_rates(records, rates), key=order)
    main = [row for row in rows if row["family"] != "lora"]
    lora = [row for row in rows if row["family"] == "lora"]
    shared = sum(1 for r in records if not alone(r))
    hours = sum(r["train_seconds"] + r.get("score_seconds", 0) for r in records) / 3600
    timed = [r for r in records if "train_cpu_seconds" in r]
    cpu_hours = sum(r["train_cpu_seconds"] for r in timed) / 3600
    lines = ["## Decoder specs (full fine-tuning) and baselines", "", *table(main), "",
             "## LoRA on q and v (rank 16), the paper's regime", "", *table(lora), "",
             "## Verdict (computed from the tables)", "", *verdict(rows), "",
             "## How the runs were made", ""]
    for family, (rate, final, tried) in sorted(rates.items()):
        edge = " (at an edge of the widened grid)" if final and rate in (tried[0], tried[-1]) and len(tried) > 1 else ""
        status = "chosen" if final else "provisional (runs still missing)"
        lines.append(f"- {family}: learning rate {rate:g}, {status}{edge}; tried {', '.join(f'{v:g}' for v in tried)}.")
    lines += [
        f"- Rates chosen on dev as `scripts/sweep.py` says: seed 0 over a 1-2-5 grid widened while the best sits at an edge, "
        f"then the two best rates over seeds {', '.join(map(str, SEEDS))}, best mean dev F1 wins.",
        "- Recipe: `configs/cpu.cfg` with only its `ner` head (spancat dropped to halve the cost), overlays in "
        "`configs/sweep/` for LoRA, MiniLM-L6 and the CNN; the derived configs are in `reports/sweep/configs/`. "
        "Every family sees the same batches (cut by the decoder's pieces), epochs and schedule.",
        f"- {len(records)} runs, {hours:.1f} h of wall time in `spacy train` and scoring"
        + (f"; `spacy train` took {cpu_hours:.1f} h of CPU time (user + system) in the {len(timed)} runs that recorded it"
           if timed else "")
        + (f"; {shared} of them shared the CPU with other jobs (their seconds are left out of the costs)" if shared else "") + (f"; {stale} runs of an older recipe left out" if stale else "") + ".",
        "- train s: median wall seconds of `spacy train` (dev scored inside), train CPU s: its user + system CPU seconds, "
        "words/s: spaCy's evaluate speed on test; all three are medians over the runs that had the machine to themselves "
        "(`sweep_report.alone`: other processes took under 3% of the run's CPU time by /proc/stat, or, for runs "
        "that did not record that, the 1-minute load at the end was within the core count; the first runs, from before "
        "CPU time was recorded, ran beside tests and benchmarks and count as shared). n/a: no run of the row was alone; "
        "unmasking changes no FLOPs, so `none` costs what the unmask rows cost.",
    ]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    plot(plt, main, lora, out.with_suffix(".png"))


def plot(plt, main, lora, path: Path) -> None:
    """Every seed's test F1 as a point, the mean ± sd beside it; LoRA in its own panel."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), gridspec_kw={"width_ratios": [max(len(main), 1), max(len(lora), 1) + 1]}, sharey=True)
    colours = {"decoder": "C0", "lora": "C2", "minilm": "C1", "tok2vec": "C7"}
    for ax, rows, title in ((axes[0], main, "full fine-tuning, and the baselines"), (axes[1], lora, "LoRA q,v r16")):
        for x, row in enumerate(rows):
            colour = colours[row["family"]]
            offsets = [(i - (row["n"] - 1) / 2) * 0.08 for i in range(row["n"])]
            ax.scatter([x - 0.12 + o for o in offsets], row["test_f1s"], s=18, facecolors="none", edgecolors=colour)
            ax.errorbar([x + 0.12], [row["f1"]], yerr=[0 if row["sd"] != row["sd"] else row["sd"]], fmt="_", markersize=12,
                        capsize=3, color=colour)
        ax.set_xticks(range(len(rows)), [row["system"] for row in rows], rotation=35, ha="right")
        ax.set_title(title, fontsize=9)
        ax.grid(axis="y", alpha=0.3)
    axes[0].set_ylabel("test NER F1 (circles: seeds; bar: mean ± sd)")
    layers = family_config("decoder")["components"]["transformer"]["model"].get("n_layers")
    kept = f"first {layers} layers" if layers else "all layers"
    fig.suptitle(f"SmolLM2-135M ({kept}) unmasking on WNUT-16, the shipped CPU recipe", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent.parent / "reports" / "sweep")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    write_report(args.out, args.quick)
    log(f"report: {args.out.with_suffix('.md')}")
