"""The recipe study's report: `OUT.md` (every arm's scores, the stages' answers) and `OUT.png`.

    python scripts/study.py --stage report [--out reports/study]

Only runs of the current recipe count (an arm's `recipe` digest equals that of the config its
settings derive now). The stages' answers come from `study_plan.Plan` over the records, the rule
that drove the runs; while runs are missing an answer is marked provisional. Means are over
seeds; ± is the sample standard deviation, with n. The arm whose config is `configs/cpu.cfg`
as it stands is the shipped recipe: once its every seed has run, their figures go to
`metrics/cpu_seeds.json` (`study.py --metrics`); the report sets it beside MiniLM's row (the
`minilm threshold` stage, provisionally the latest MiniLM stage reached), whose figures go to
`metrics/minilm_seeds.json` once that is final. It also sets the shipped recipe beside the same
recipe without spancat (the `ner only` stage: the joint NER within 1 point of it is the issue's bar)
and beside the `long` stage's recipe (more epochs, more layers) when the plan asked for one.
"""
import json
import statistics
from pathlib import Path
from typing import Callable, NamedTuple, Optional

from thinc.api import Config

from sweep_plan import seeds_of
from study_plan import MINILM, MINILM_STAGES, SHIPPED, Arm, Plan, dev_score, digest, run_config
from runs import read_run, write_run

COLUMNS = [("dev", "ents_f"), ("dev", "spans_sc_f"), ("test", "ents_f"), ("test", "spans_sc_f")]


def current_records(out: Path, quick: bool):
    """{(arm name, seed): record} of this mode's runs of the current recipes, and how many were stale."""
    records, stale, recipes = {}, 0, {}
    for record in map(read_run, sorted(out.glob("*.json"))):
        if record is None or record.get("quick") != quick or "arm" not in record:
            continue
        arm = Arm(**record["settings"])
        if arm.name not in recipes:
            recipes[arm.name] = digest(run_config(arm, quick))
        if record["recipe"] != recipes[arm.name]:
            stale += 1
            continue
        records[(arm.name, record["seed"])] = record
    return records, stale


def answer_config(out: Path, stage: str, quick: bool = False) -> Config:
    """The config a stage's final answer trains (e.g. `minilm threshold`: MiniLM's row), read
    from the finished runs in `out` by the rule that drove them, so a pipeline of that arm can be
    trained outside the study (`study.py --config-of`)."""
    records, _stale = current_records(out, quick)
    plan = Plan(lambda arm, seed: records.get((arm.name, seed)), seeds=seeds_of(quick), quick=quick)
    plan.run()
    found = plan.answer(stage)
    if found is None or found.arm is None or not found.final:
        answered = ", ".join(repr(a.stage) for a in plan.answers if a.final) or "none"
        raise SystemExit(f"stage {stage!r} has no final answer in {out} (stages answered: {answered})")
    return run_config(found.arm, quick)


def runs_of(records, name: str) -> list:
    """An arm's records, by seed."""
    return [r for (arm, _seed), r in sorted(records.items()) if arm == name]


def mean_sd(values) -> str:
    if not values:
        return "–"
    sd = f" ± {statistics.stdev(values):.1f}" if len(values) > 1 else ""
    return f"{statistics.mean(values):.1f}{sd}"


def rows(records) -> list:
    by_arm = {}
    for (name, _seed), record in sorted(records.items(), key=lambda kv: (kv[0][0], kv[0][1])):
        by_arm.setdefault(name, []).append(record)
    table = []
    for name, runs in by_arm.items():
        cells = []
        for part, key in COLUMNS:
            values = [100 * r[part][key] for r in runs if key in r[part]]
            cells.append(mean_sd(values))
        alone = [r["train_seconds"] for r in runs if (r.get("other_cpu_seconds") or 0) < 0.03 * r["train_cpu_seconds"]]
        seconds = f"{statistics.median(alone):.0f}" if alone else f"({statistics.median(r['train_seconds'] for r in runs):.0f})"
        steps = ",".join(kept_step(r) for r in runs)
        table.append((name, len(runs), cells, seconds, steps, statistics.mean(100 * dev_score(r) for r in runs)))
    return table


def kept_step(record: dict) -> str:
    """The step of a run's `model-best`; "~" marks a record from before each evaluation's exact
    score was kept (`evaluations`), whose step was read from the console's rounded scores,
    the first of ties, where spaCy keeps the last: it may be an earlier evaluation than the kept one."""
    return f"{record.get('best_step')}" if "evaluations" in record else f"~{record.get('best_step')}"


def label_scores(runs, part: str = "ents_per_type") -> dict:
    """{label: {"p"|"r"|"f": [each test score of the runs that have the label]}}: a label's mean is
    over the runs that scored it (gold is the same test split every run, so a gold label is in
    every run's table, at 0 where nothing of it was found)."""
    tables = [r["test"][part] for r in runs if r["test"].get(part)]
    labels = sorted({label for table in tables for label in table})
    return {label: {k: [table[label][k] for table in tables if label in table] for k in "prf"} for label in labels}


def per_label(records, arm_name: str, part: str = "ents_per_type") -> list:
    scores = label_scores(runs_of(records, arm_name), part)
    lines = ["| label | P | R | F | n |", "|---|---|---|---|---|"]
    for label, prf in scores.items():
        cells = [mean_sd([100 * v for v in prf[k]]) for k in "prf"]
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {len(prf['f'])} |")
    return lines


def thresholds_table(records) -> list:
    """SpanCat F1 of each arm's trained pipelines at every threshold they were scored at
    (`study.thresholds_of`: the same predictions, filtered), mean ± sd over seeds."""
    by_arm = {}
    for (name, _seed), record in sorted(records.items()):
        if record.get("spancat_thresholds"):
            by_arm.setdefault(name, []).append(record["spancat_thresholds"])
    if not by_arm:
        return []
    thresholds = sorted({t for runs in by_arm.values() for run in runs for t in run}, key=float)
    lines = ["", "## SpanCat F1 by threshold (the same trained pipelines, their spans filtered)", "",
             "| arm | n | " + " | ".join(f"dev @{t}" for t in thresholds) + " | "
             + " | ".join(f"test @{t}" for t in thresholds) + " |",
             "|---|---|" + "---|" * (2 * len(thresholds))]
    for name, runs in by_arm.items():
        cells = [mean_sd([100 * run[t][part]["f"] for run in runs if t in run])
                 for part in ("dev", "test") for t in thresholds]
        lines.append(f"| `{name}` | {len(runs)} | " + " | ".join(cells) + " |")
    return lines


def settings_of(config: Config) -> str:
    """A config's settings as one canonical text: its keys sorted at every level."""
    return json.dumps(config, sort_keys=True)


def shipped_arm(records) -> Optional[Arm]:
    """The studied arm whose config is configs/cpu.cfg as it stands: its runs are the shipped
    recipe itself at each seed, so their figures are the installed pipeline's. Compared by
    settings, whatever order the config file writes them in (a hand-edited cpu.cfg need not put
    a key where `Arm.config` does); on the arm's own config also in `--quick`, whose runs shrink it."""
    shipped = settings_of(Config().from_disk(SHIPPED, interpolate=False))
    arms = {name: Arm(**record["settings"]) for (name, _seed), record in records.items()}
    found = [arm for arm in arms.values() if settings_of(arm.config()) == shipped]
    if len(found) > 1:
        raise ValueError(f"arms {', '.join(a.name for a in found)} have the same config: their names do not tell recipes apart")
    return found[0] if found else None


def seed_figures(records, arm: Arm, config: str = f"configs/{SHIPPED.name}") -> dict:
    """An arm's per-seed dev and test P/R/F of NER and SpanCat, with mean and sample sd, and its
    test NER per label (mean over seeds), as `metrics/` keeps the shipped recipe's and the
    encoder row's; `config` says what the runs trained."""
    runs = runs_of(records, arm.name)
    figures = {"arm": arm.name, "config": config,
               "seeds": [r["seed"] for r in runs],
               "source": f"python scripts/study.py --stage report (reports/study/{arm.name}-s*.json)"}
    for part in ("dev", "test"):
        figures[part] = {}
        for key in ("ents_p", "ents_r", "ents_f", "spans_sc_p", "spans_sc_r", "spans_sc_f"):
            values = [r[part][key] for r in runs if key in r[part]]
            if len(values) == len(runs):
                figures[part][key] = {"per_seed": values, "mean": statistics.mean(values),
                                      "sd": statistics.stdev(values) if len(values) > 1 else None}
    figures["test_ents_per_type"] = {label: {**{k: statistics.mean(prf[k]) for k in "prf"}, "n": len(prf["f"])}
                                     for label, prf in label_scores(runs).items()}
    return figures


VERSUS = [("dev", "ents_f", "dev NER"), ("test", "ents_f", "test NER"),
          ("dev", "spans_sc_f", "dev SpanCat"), ("test", "spans_sc_f", "test SpanCat")]


class Bar(NamedTuple):
    """What a comparison asks of the difference of two means (F1 ×100) and their wider seed sd."""

    heading: str
    met: Callable[[float, float], bool]


# the bars: ahead of the encoder row by more than the wider seed sd; the joint pipeline's
# NER within 1 point of the NER-only pipeline's at the same recipe (or above it)
AHEAD = Bar("ahead by more than the wider sd", lambda diff, wider: diff > wider)
WITHIN_1 = Bar("within 1 point or ahead", lambda diff, wider: diff >= -1.0)


def versus(records, ours: Arm, theirs: Arm, scores=VERSUS, bar: Bar = AHEAD) -> list:
    """Two arms score by score: mean ± sd (n) of each, the difference of the means, the wider
    of the two seed sds, and whether the difference meets `bar` (by default the issue's bar for
    "ahead" of the encoder row)."""
    runs = {arm: runs_of(records, arm.name) for arm in (ours, theirs)}
    lines = [f"| score | `{ours.name}` | `{theirs.name}` | difference | wider sd | {bar.heading} |",
             "|---|---|---|---|---|---|"]
    for part, key, label in scores:
        a, b = ([100 * r[part][key] for r in runs[arm] if key in r[part]] for arm in (ours, theirs))
        cells = [f"{mean_sd(a)} ({len(a)})", f"{mean_sd(b)} ({len(b)})"]
        if min(len(a), len(b)) > 1:
            diff, wider = statistics.mean(a) - statistics.mean(b), max(statistics.stdev(a), statistics.stdev(b))
            cells += [f"{diff:+.1f}", f"{wider:.1f}", "yes" if bar.met(diff, wider) else "no"]
        else:
            cells += ["–", "–", "–"]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines


def beside_shipped(plan: Plan, records, shipped: Optional[Arm]) -> list:
    """The shipped recipe beside the `ner only` stage's arm (what sharing the decoder costs NER,
    the issue's bar: within 1 point) and beside the `long` stage's (the candidate for a longer
    second config), each once its stage has an arm."""
    lines = []
    if shipped is None:
        return lines
    ner, long = plan.answer("ner only"), plan.answer("long")
    if ner is not None and ner.arm is not None:
        lines += ["", "## What sharing the decoder costs NER", "",
                  f"The shipped recipe beside the same recipe without spancat (`ner only`"
                  f"{'' if ner.final else ', provisional: runs missing'}). F1 ×100, mean ± sample sd (n).", ""]
        lines += versus(records, shipped, ner.arm, scores=[s for s in VERSUS if s[1] == "ents_f"], bar=WITHIN_1)
    if long is not None and long.arm is not None:
        lines += ["", "## The longer recipe against the shipped one", "",
                  f"The shipped recipe at the `epochs` winner's length and the `depth` winner's layers (`long`"
                  f"{'' if long.final else ', provisional: runs missing'}); its training time is under *Every arm*. "
                  "F1 ×100, mean ± sample sd (n).", ""]
        lines += versus(records, long.arm, shipped)
    return lines


def write_report(out: Path, quick: bool, metrics: Optional[Path] = None) -> None:
    """`OUT.md` and `OUT.png`; with `metrics`, the shipped recipe's figures there once its every
    seed has run (`seed_figures`)."""
    records, stale = current_records(out, quick)
    seeds = seeds_of(quick)
    plan = Plan(lambda arm, seed: records.get((arm.name, seed)), seeds=seeds, quick=quick)
    plan.run()
    lines = [
        "# The recipe study: the shipped NER + SpanCat pipeline on dev",
        "",
        "Generated by `python scripts/study.py --stage report` from `reports/study/*.json` (each a run of "
        "`spacy train` on `configs/cpu.cfg` with the arm's settings written in; `scripts/study_plan.py` says "
        "which runs answer which question). F1 ×100, mean ± sample sd over seeds (n). `dev score` is what spaCy "
        "picks checkpoints by: 0.5 NER + 0.5 SpanCat F1 on dev (NER F1 alone for `ner` arms). Train s is the "
        "median over runs that had the CPU to themselves (in brackets when none did). Best steps: the step of "
        "each seed's kept checkpoint (~: read from spaCy's console table, whose score is rounded to 2 places, "
        "as the first of ties; spaCy keeps the last of exact ties, so the kept one may be a later step).",
        "",
        "## The stages' answers",
        "",
    ]
    for found in plan.answers:
        note = f" ({found.note})" if found.note else ""
        lines.append(f"- {found.stage}{note}: `{found.arm.name if found.arm else 'none yet'}`"
                     + ("" if found.final else " (provisional: runs missing)"))
    if not plan.answers:
        lines.append("- none yet")
    lines += [
        "",
        "## Every arm",
        "",
        "| arm | n | dev NER | dev SpanCat | test NER | test SpanCat | dev score | train s | best steps |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, n, cells, seconds, steps, score in rows(records):
        lines.append(f"| `{name}` | {n} | " + " | ".join(cells) + f" | {score:.1f} | {seconds} | {steps} |")
    if stale:
        lines += ["", f"{stale} run(s) of an older recipe left out."]
    lines += thresholds_table(records)
    shipped = shipped_arm(records)
    if shipped is not None:
        n = sum(name == shipped.name for name, _ in records)
        lines += ["", "## The shipped recipe", "",
                  f"`configs/cpu.cfg` as it stands is arm `{shipped.name}` ({n} of {len(seeds)} seeds run): its runs are "
                  "the installed pipeline's recipe at each seed.", "",
                  f"### Test NER per label, `{shipped.name}`", ""] + per_label(records, shipped.name)
        if metrics is not None and n == len(seeds):
            metrics.parent.mkdir(parents=True, exist_ok=True)
            write_run(metrics, seed_figures(records, shipped))
    # MiniLM's row: its last stage's answer, or while that has not run, the latest it reached
    encoder = next((found for found in map(plan.answer, MINILM_STAGES) if found is not None and found.arm), None)
    if shipped is not None and encoder is not None:
        arm, final = encoder.arm, encoder.stage == MINILM_STAGES[0] and encoder.final
        lines += ["", "## The shipped recipe against MiniLM-L6 in the same pipeline", "",
                  f"MiniLM's row is the `{MINILM_STAGES[0]}` stage's answer"
                  f"{'' if final else f' (provisional: runs missing; so far the `{encoder.stage}` stage)'}: "
                  "its rate, ner head and spancat's threshold chosen on dev (the rate again at its own head when "
                  "that is not the decoder's), at the shipped schedule, spancat gradient and pooling. "
                  "F1 ×100, mean ± sample sd (n).", ""] + versus(records, shipped, arm)
        if metrics is not None and final:
            write_run(metrics.with_name("minilm_seeds.json"), seed_figures(
                records, arm, f"configs/{SHIPPED.name} with configs/sweep/{MINILM.name} merged in (reports/study/configs/{arm.name}.cfg)"))
    lines += beside_shipped(plan, records, shipped)
    marked = {shipped.name: "shipped"} if shipped is not None else {}
    if encoder is not None:
        marked[encoder.arm.name] = "MiniLM's row"
    target = out.with_suffix(".md")
    target.write_text("\n".join(lines) + "\n")
    plot(records, out.with_suffix(".png"), marked)


def plot(records, path: Path, marked: Optional[dict] = None) -> None:
    """Every seed's dev and test F1 of NER and of SpanCat (`COLUMNS`), one row of points per arm;
    `marked` ({arm name: note}) names rows worth finding (the shipped recipe, MiniLM's row) in bold."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    names = sorted({name for name, _ in records})
    if not names:
        return
    marked = marked or {}
    fig, axes = plt.subplots(1, len(COLUMNS), figsize=(20, 0.4 * len(names) + 1.5), sharey=True)
    for ax, (part, key) in zip(axes, COLUMNS):
        for y, name in enumerate(names):
            values = [100 * r[part][key] for r in runs_of(records, name) if r[part].get(key) is not None]
            if not values:  # an arm without spancat
                continue
            ax.scatter(values, [y] * len(values), s=18)
            ax.plot([statistics.mean(values)] * 2, [y - 0.3, y + 0.3], color="black")
        ax.set_title(f"{part} {'NER' if key == 'ents_f' else 'SpanCat'} F1 (points: seeds; bar: mean)", fontsize=9)
        ax.grid(axis="x", alpha=0.3)
    axes[0].set_yticks(range(len(names)), [f"{name} [{marked[name]}]" if name in marked else name for name in names],
                       fontsize=7)
    for tick, name in zip(axes[0].get_yticklabels(), names):
        if name in marked:
            tick.set_fontweight("bold")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
