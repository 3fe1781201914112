"""The layer-group sweep at the recipe we ship: which layers to unmask, against MiniLM and spaCy's CNN.

    python scripts/sweep.py [--quick] [--out reports/sweep] [--stage all|report]

Every run is `spacy train` on a config derived from `configs/cpu.cfg` (scripts/sweep_recipe.py:
same decoder, epochs, batches and schedule, NER only), scored on dev and test. In order:
1. the decoder's learning rate, chosen on dev (`choose_rate`): seed 0 over a 1-2-5 grid,
   widened while the best rate sits at an edge, then seeds 1 and 2 for the two best rates, and
   the rate with the better mean dev F1 over the 3 seeds wins (so a rate that collapses on one
   seed loses to a steadier one);
2. every unmask spec and `repeat2` at that rate, 3 seeds each (seed 0 of every spec first); then
   `repeat2+<best>`, repetition over the unmask spec best on dev (the two routes combined);
3. MiniLM's and the CNN's rates, chosen the same way (their rows are the chosen rate's 3 seeds);
4. the LoRA table: adapters on q and v over the same decoder, their own rate, for `none`,
   `second_half` and `all`, 3 seeds each.
Each finished run leaves `OUT/<run>.json` (the resume marker, with its config's digest: a run of
an older recipe is retrained) and rebuilds `OUT.md` and `OUT.png` (scripts/sweep_report.py).
`--quick` trains each run a few steps on a small slice with one seed and one rate (for CI).
"""
import argparse
import json
import math
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import spacy
from spacy.cli.evaluate import evaluate
from spacy.tokens import DocBin

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sweep_recipe import write_family_configs  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SPECS = ["none", "all", "first_half", "second_half", "1000", "0100", "0010", "0001", "repeat2"]
LORA_SPECS = ["none", "second_half", "all"]
# starting grids (1-2-5 steps); `choose_rate` widens one that peaks at an edge
GRID = {
    "decoder": [1e-4, 2e-4, 5e-4],  # full fine-tuning; the shipped rate is 2e-4
    "lora": [5e-4, 1e-3, 2e-3],  # adapters and the ner head
    "minilm": [1e-4, 2e-4, 5e-4],
    "tok2vec": [1e-3, 2e-3, 5e-3],
}
LR_KEY = "training.optimizer.learn_rate.initial_rate"
SEEDS = (0, 1, 2)
MAX_RATES = 6  # a grid is widened at most to this many rates


def grid_of(family: str, quick: bool) -> list:
    """The starting rates of `family`; --quick checks the machinery with the middle one."""
    return GRID[family][1:2] if quick else GRID[family]


def seeds_of(quick: bool) -> tuple:
    return SEEDS[:1] if quick else SEEDS


def log(message: str) -> None:
    print(f"[sweep {time.strftime('%H:%M:%S')}] {message}", flush=True)


def run_id(family: str, spec: str, lr: float, seed: int, quick: bool) -> str:
    name = family if family in ("minilm", "tok2vec") else f"{family}-{spec}"
    # quick runs never stand in for real ones, even in the same folder
    return f"{name}-lr{lr:g}-s{seed}" + ("-quick" if quick else "")


def child_cpu_seconds() -> float:
    """User + system CPU seconds of this process's finished child processes so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def busy_seconds(line: str, ticks: int) -> float:
    """The busy CPU seconds in /proc/stat's first (`cpu`) line: user, nice, system, irq, softirq
    and steal (time the hypervisor gave to other guests: our runs could not use it either)."""
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in line.split()[1:9])
    return (user + nice + system + irq + softirq + steal) / ticks


def machine_busy_seconds():
    """CPU seconds the whole machine has spent busy (all cores, every process) since boot, from
    /proc/stat; None where there is none or it has an unexpected form."""
    try:
        return busy_seconds(Path("/proc/stat").read_text().split("\n", 1)[0], os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError):
        return None


def other_cpu_seconds(busy_start, busy_end, own: float):
    """What other processes took while a run used `own` CPU seconds; None where /proc/stat was
    missing or does not see this process (less than half of `own`: a sandbox's fake one)."""
    if busy_start is None or busy_end is None or busy_end - busy_start < 0.5 * own:
        return None
    return round(busy_end - busy_start - own, 1)


def read_run(path: Path):
    """A finished run's record, or None if the file is unreadable (a crash mid-write)."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def spec_settings(spec: str):
    """(unmask, repeat) of a sweep spec: `repeat2` is repetition alone, `repeat2+X` over unmask X."""
    if spec.startswith("repeat2"):
        return (spec.split("+", 1)[1] if "+" in spec else "none"), 2
    return spec, 1


def neighbour_rate(rate: float, up: bool) -> float:
    """The next rate on the 1-2-5 series above or below `rate`."""
    exponent = math.floor(math.log10(rate) + 1e-9)
    series = [1, 2, 5]
    position = min(range(3), key=lambda i: abs(series[i] * 10**exponent - rate)) + (1 if up else -1)
    exponent += position // 3
    return float(f"{series[position % 3]}e{exponent}")


def choose_rate(grid, get, seeds=SEEDS, max_rates=MAX_RATES):
    """The learning rate of one family, and whether the choice is final.

    `get(lr, seed)` returns that run's record (training it if need be) or None when it is
    not available; the choice then stops early and is provisional. Seed 0 runs over the grid,
    which is widened by one 1-2-5 step while its best rate is the highest or lowest tried;
    the two best rates on seed 0 then run every seed, and the one with the higher mean dev F1
    wins (widened again if that one sits at an edge).
    """
    rates = sorted(grid)

    def widened(rate):
        if len(rates) >= max_rates or rate not in (rates[0], rates[-1]) or len(rates) == 1:
            return False
        rates.insert(0, neighbour_rate(rates[0], up=False)) if rate == rates[0] else rates.append(neighbour_rate(rates[-1], up=True))
        return True

    while True:
        first = {lr: get(lr, 0) for lr in rates}
        done = {lr: r for lr, r in first.items() if r is not None}
        if not done:
            return None, False
        ranked = sorted(done, key=lambda lr: -done[lr]["dev"]["ents_f"])
        if len(done) < len(rates):
            return ranked[0], False
        if widened(ranked[0]):
            continue
        means = {}
        for lr in ranked[:2]:
            runs = [get(lr, seed) for seed in seeds]
            if any(r is None for r in runs):
                return ranked[0], False
            means[lr] = statistics.mean(r["dev"]["ents_f"] for r in runs)
        chosen = max(means, key=means.get)
        if widened(chosen):
            continue
        return chosen, True


def overrides(family: str, spec: str, lr: float, seed: int, quick: bool) -> list:
    args = [f"--{LR_KEY}", str(lr), "--system.seed", str(seed)]
    if family in ("decoder", "lora"):
        unmask, repeat = spec_settings(spec)
        # quoted: spaCy's command line would read 0010 as the number 10
        args += ["--components.transformer.model.unmask", json.dumps(unmask), "--components.transformer.model.repeat", str(repeat)]
        if quick:
            args += ["--components.transformer.model.n_layers", "4"]
    if quick:
        args += ["--training.max_steps", "3", "--training.eval_frequency", "3", "--training.max_epochs", "0",
                 "--training.optimizer.learn_rate.warmup_steps", "1"]
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


def unmasked_layers(model_path: Path) -> str:
    nlp = spacy.load(model_path, exclude=["ner"])
    layers = sorted(nlp.get_pipe("transformer").model.transformer.unmasked_layers)
    return ",".join(map(str, layers)) if layers else "-"


class Sweep:
    """Trains and scores runs on demand; a finished run of the current recipe is read, not rerun."""

    def __init__(self, out: Path, corpus: Path, quick: bool):
        self.out, self.quick = out, quick
        self.paths = corpus_paths(corpus, quick, out)
        self.configs = write_family_configs(out / "configs")
        self.train_words = sum(len(d) for d in DocBin().from_disk(self.paths["train"]).get_docs(spacy.blank("en").vocab))

    def run(self, family: str, spec: str, lr: float, seed: int) -> dict:
        name = run_id(family, spec, lr, seed, self.quick)
        target = self.out / f"{name}.json"
        config, recipe = self.configs[family]
        done = read_run(target) if target.is_file() else None
        if done is not None and done.get("recipe") == recipe:
            return done
        if done is not None:
            log(f"{name}: its record is of another recipe ({done.get('recipe')} != {recipe}); training it again")
        model_dir = self.out / "training" / name
        cmd = [sys.executable, "-m", "spacy", "train", str(config), "--output", str(model_dir),
               "--paths.train", str(self.paths["train"]), "--paths.dev", str(self.paths["dev"]),
               *overrides(family, spec, lr, seed, self.quick)]
        log(f"training {name}")
        start, cpu_start, busy_start = time.perf_counter(), child_cpu_seconds(), machine_busy_seconds()
        result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        seconds, cpu_seconds = time.perf_counter() - start, child_cpu_seconds() - cpu_start
        busy_end = machine_busy_seconds()
        if result.returncode != 0:
            raise SystemExit(f"{name} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
        best = model_dir / "model-best"
        scoring = time.perf_counter()
        scores = {part: evaluate(str(best), self.paths[part], silent=True) for part in ("dev", "test")}
        score_seconds = time.perf_counter() - scoring
        record = {
            "run": name, "family": family, "spec": spec, "learn_rate": lr, "seed": seed, "recipe": recipe,
            "unmasked_layers": unmasked_layers(best) if family in ("decoder", "lora") else None,
            "train_seconds": round(seconds, 1),
            # CPU time (user + system, all threads) of `spacy train`: unlike the wall seconds,
            # neither a paused sweep nor a shared CPU inflates it
            "train_cpu_seconds": round(cpu_seconds, 1),
            "score_seconds": round(score_seconds, 1),
            # CPU seconds that other processes took while `spacy train` ran: the run's timing
            # is its own only when this is small against train_cpu_seconds
            "other_cpu_seconds": other_cpu_seconds(busy_start, busy_end, cpu_seconds),
            # the 1-minute load average as the run ended: above the core count, the CPU was shared
            "load_average": round(os.getloadavg()[0], 2),
            "cpu_count": os.cpu_count(),
            "train_words": self.train_words,
            "dev": {k: scores["dev"][k] for k in ("ents_p", "ents_r", "ents_f")},
            "test": {k: scores["test"][k] for k in ("ents_p", "ents_r", "ents_f")},
            "test_words_per_s": round(scores["test"]["speed"], 1),
            "quick": self.quick,
        }
        partial = target.with_name(target.name + ".part")
        partial.write_text(json.dumps(record, indent=2) + "\n")
        os.replace(partial, target)
        shutil.rmtree(model_dir, ignore_errors=True)  # the record is what we keep; a model is ~0.5 GB
        log(f"{name}: dev F1 {record['dev']['ents_f']:.3f}, test F1 {record['test']['ents_f']:.3f}, {seconds:.0f} s")
        self.report()
        return record

    def rate(self, family: str, spec: str = "none") -> float:
        chosen, final = choose_rate(grid_of(family, self.quick), lambda lr, seed: self.run(family, spec, lr, seed),
                                    seeds_of(self.quick))
        assert final, "every run was trained, so the choice is final"
        log(f"{family}: learning rate {chosen:g}")
        return chosen

    def report(self) -> None:
        from sweep_report import write_report

        write_report(self.out, self.quick)


def best_unmask_spec(sweep: Sweep, lr: float, seeds) -> str:
    """The unmask spec (not `none`, not repetition) with the best mean dev F1 over its seeds."""
    means = {spec: statistics.mean(sweep.run("decoder", spec, lr, s)["dev"]["ents_f"] for s in seeds)
             for spec in SPECS if spec not in ("none", "repeat2")}
    return max(means, key=means.get)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--corpus", type=Path, default=ROOT / "corpus", help="folder with train/dev/test.spacy")
    parser.add_argument("--out", type=Path, default=ROOT / "reports" / "sweep")
    parser.add_argument("--stage", choices=["all", "report"], default="all")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.stage == "report":
        from sweep_report import write_report

        write_report(args.out, args.quick)
        return 0
    sweep = Sweep(args.out, args.corpus, args.quick)
    seeds = seeds_of(args.quick)
    started = time.perf_counter()
    # the project's question first (which spec, at the decoder's rate), the baselines after it
    decoder_rate = sweep.rate("decoder")
    for seed in seeds:
        for spec in SPECS:
            sweep.run("decoder", spec, decoder_rate, seed)
    combined = "repeat2+" + best_unmask_spec(sweep, decoder_rate, seeds)
    for seed in seeds:
        sweep.run("decoder", combined, decoder_rate, seed)
    for family in ("minilm", "tok2vec"):
        sweep.rate(family)
    lora_rate = sweep.rate("lora")
    for seed in seeds:
        for spec in LORA_SPECS:
            sweep.run("lora", spec, lora_rate, seed)
    sweep.report()
    log(f"sweep complete ({time.perf_counter() - started:.0f} s in this invocation)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
