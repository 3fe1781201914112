"""The layer-group sweep at the recipe we ship: which layers to unmask, against MiniLM and spaCy's CNN.

    python scripts/sweep.py [--quick] [--out reports/sweep] [--stage all|report]

Every run is `spacy train` on a config derived from `configs/cpu.cfg` (scripts/sweep_recipe.py:
same decoder, epochs, batches and schedule, NER only), scored on dev and test. In order:
1. the decoder's learning rate, chosen on dev (`choose_rate`, scripts/sweep_plan.py): seed 0 over a 1-2-5 grid,
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
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

import spacy
from spacy.cli.evaluate import evaluate
from spacy.tokens import DocBin

from runs import corpus_paths, log, read_run, train, write_run
from sweep_plan import LORA_SPECS, SPECS, choose_rate, grid_of, seeds_of, spec_settings
from sweep_recipe import write_family_configs
from sweep_report import write_report

ROOT = Path(__file__).resolve().parent.parent
LR_KEY = "training.optimizer.learn_rate.initial_rate"


def run_id(family: str, spec: str, lr: float, seed: int, quick: bool) -> str:
    name = family if family in ("minilm", "tok2vec") else f"{family}-{spec}"
    # quick runs never stand in for real ones, even in the same folder
    return f"{name}-lr{lr:g}-s{seed}" + ("-quick" if quick else "")


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
        trained = train(name, cmd, ROOT)
        best = model_dir / "model-best"
        scoring = time.perf_counter()
        scores = {part: evaluate(str(best), self.paths[part], silent=True) for part in ("dev", "test")}
        score_seconds = time.perf_counter() - scoring
        record = {
            "run": name, "family": family, "spec": spec, "learn_rate": lr, "seed": seed, "recipe": recipe,
            "unmasked_layers": unmasked_layers(best) if family in ("decoder", "lora") else None,
            "train_seconds": round(trained.seconds, 1),
            # CPU time (user + system, all threads) of `spacy train`: unlike the wall seconds,
            # neither a paused sweep nor a shared CPU inflates it
            "train_cpu_seconds": round(trained.cpu_seconds, 1),
            "score_seconds": round(score_seconds, 1),
            # CPU seconds that other processes took while `spacy train` ran: the run's timing
            # is its own only when this is small against train_cpu_seconds
            "other_cpu_seconds": trained.other_cpu_seconds,
            # the 1-minute load average as the run ended: above the core count, the CPU was shared
            "load_average": round(os.getloadavg()[0], 2),
            "cpu_count": os.cpu_count(),
            "code": trained.code,  # the commit it trained with (-dirty: with changes to spacy_unmask/)
            "train_words": self.train_words,
            "dev": {k: scores["dev"][k] for k in ("ents_p", "ents_r", "ents_f")},
            "test": {k: scores["test"][k] for k in ("ents_p", "ents_r", "ents_f")},
            "test_words_per_s": round(scores["test"]["speed"], 1),
            "quick": self.quick,
        }
        write_run(target, record)
        shutil.rmtree(model_dir, ignore_errors=True)  # the record is what we keep; a model is ~0.5 GB
        log(f"{name}: dev F1 {record['dev']['ents_f']:.3f}, test F1 {record['test']['ents_f']:.3f}, {trained.seconds:.0f} s")
        self.report()
        return record

    def rate(self, family: str, spec: str = "none") -> float:
        chosen, final = choose_rate(grid_of(family, self.quick), lambda lr, seed: self.run(family, spec, lr, seed),
                                    seeds_of(self.quick))
        assert final, "every run was trained, so the choice is final"
        log(f"{family}: learning rate {chosen:g}")
        return chosen

    def report(self) -> None:
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
