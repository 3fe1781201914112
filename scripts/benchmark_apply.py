"""Words/s of batch annotation: `nlp.pipe` in input order against `spacy unmask apply` on each backend.

    python scripts/benchmark_apply.py MODEL [--texts corpus/test.spacy] [--n-docs 3000]
        [--rounds 3] [--output reports/benchmark_apply_cpu.json]  (and the table as .md beside it)

The test split's texts, repeated to `--n-docs` documents, go through: `nlp.pipe` unsorted (what
a user writes first), with 1 and 2 processes (`n_process`) and with torch held to 1 thread, then
the command with `--backend local` and 1 and 2 workers, and `--backend ray` with 1 and 2 actors.
Each row is end-to-end wall time from no pipeline loaded: loading the pipeline (in every worker),
starting Ray where used, annotating and (for the command) writing the shards; the libraries
are imported once before the rounds (a spawned worker or Ray actor imports them again, and
that is timed). The rows alternate for `--rounds` rounds; each reports the median and the
range. Every run must give the same entities and word count.
"""
import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import spacy
import torch
from spacy.tokens import DocBin

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from spacy_unmask.annotate import apply_pipeline  # noqa: E402
from spacy_unmask import forking  # noqa: E402
from spacy_unmask.annotate.backends import cores, threads_per_worker  # noqa: E402

# (name, backend, workers, torch threads of an in-process run): the 1-thread row shows how much
# of the machine one process already uses, i.e. what a second process can add at most
RUNS = [("nlp.pipe, input order", None, 1, None), ("nlp.pipe, input order, 1 torch thread", None, 1, 1),
        ("nlp.pipe, input order, n_process=2", None, 2, None),
        ("apply, local, 1 worker", "local", 1, None), ("apply, local, 2 workers", "local", 2, None),
        ("apply, ray, 1 actor", "ray", 1, None), ("apply, ray, 2 actors", "ray", 2, None)]


def entities_of_shards(folder: Path):
    return [[(e["start"], e["end"], e["label"]) for e in json.loads(line)["ents"]]
            for shard in sorted(folder.glob("shard-*.jsonl")) for line in shard.read_text().splitlines()]


def worker_threads(backend, workers: int, threads) -> int:
    """torch threads each worker of a row runs: forked `nlp.pipe` workers run one
    (spacy_unmask/forking.py), the command's workers share the cores."""
    if backend is None:
        return threads or (cores() if workers == 1 else forking.WORKER_THREADS)
    return threads_per_worker(workers)


def measure(run, args, texts, source: Path, tmp: Path) -> dict:
    """One end-to-end run, loading the pipeline: (words, seconds, entities)."""
    name, backend, workers, threads = run
    start = time.perf_counter()
    if backend is None:
        previous = torch.get_num_threads()
        torch.set_num_threads(threads or previous)
        try:
            nlp = spacy.load(args.model)
            docs = list(nlp.pipe(texts, batch_size=args.batch_size, n_process=workers))
        finally:
            torch.set_num_threads(previous)
        seconds = time.perf_counter() - start
        return {"words": sum(len(d) for d in docs), "seconds": seconds,
                "ents": [[(e.start_char, e.end_char, e.label_) for e in d.ents] for d in docs]}
    out = tmp / f"{backend}{workers}"
    shutil.rmtree(out, ignore_errors=True)
    totals = apply_pipeline(args.model, source, out, backend, workers, args.batch_size, args.block_size, progress=False)
    return {"words": totals["words"], "seconds": time.perf_counter() - start, "ents": entities_of_shards(out)}


def table(record: dict) -> str:
    """The rows as the README shows them (a test checks that it does)."""
    lines = [f"| run | words/s, median of {record['rounds']} | slowest - fastest round | x nlp.pipe |", "|---|---|---|---|"]
    for row in record["rows"]:
        low, high = row["words_per_s_range"]
        lines.append(f"| {row['run']} | **{row['words_per_s']:.0f}** | {low:.0f} - {high:.0f} | {row['vs_nlp_pipe']:.2f} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("--texts", type=Path, default=ROOT / "corpus" / "test.spacy")
    parser.add_argument("--n-docs", type=int, default=3000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--block-size", type=int, default=250, help="blocks are sorted by length: a few batches each, and a few blocks per worker")
    parser.add_argument("--rounds", type=int, default=3, help="every row this many times, the rows alternating (one run varies by 10-20%% here)")
    parser.add_argument("--output", type=Path, default=ROOT / "reports" / "benchmark_apply_cpu.json")
    args = parser.parse_args()
    texts = [d.text for d in DocBin().from_disk(args.texts).get_docs(spacy.blank("en").vocab)]
    texts = (texts * (args.n_docs // len(texts) + 1))[: args.n_docs]
    seconds = {run[0]: [] for run in RUNS}
    same, reference, words = True, None, {}
    # the in-process rows would otherwise pay the one-time imports (transformers, peft) in
    # their first round only: every round times loading and running the pipeline, no more
    spacy.load(args.model)
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "texts.jsonl"
        source.write_text("".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in enumerate(texts)))
        for round_ in range(args.rounds):
            for run in RUNS:
                result = measure(run, args, texts, source, Path(tmp))
                outcome = (result["ents"], result["words"])
                reference = reference or outcome
                same = same and outcome == reference
                words[run[0]] = result["words"]
                seconds[run[0]].append(round(result["seconds"], 2))
                print(f"[round {round_ + 1}/{args.rounds}] {run[0]}: {result['seconds']:.1f} s", file=sys.stderr, flush=True)
    base = statistics.median(seconds[RUNS[0][0]])
    rows = [{"run": name, "backend": backend, "workers": workers, "torch_threads_per_worker": worker_threads(backend, workers, threads),
             "docs": len(texts), "words": words[name], "seconds": seconds[name],
             "words_per_s": round(words[name] / statistics.median(seconds[name]), 1),
             "words_per_s_range": [round(words[name] / max(seconds[name]), 1), round(words[name] / min(seconds[name]), 1)],
             "vs_nlp_pipe": round(base / statistics.median(seconds[name]), 2)}
            for name, backend, workers, threads in RUNS]
    record = {"model": args.model, "cores": cores(), "machine": platform.processor() or platform.machine(),
              "load_average_after": round(os.getloadavg()[0], 2), "batch_size": args.batch_size,
              "block_size": args.block_size, "rounds": args.rounds, "same_entities_and_words": same,
              "statistic": "words/s at the median of the rounds' seconds, and at the slowest and fastest round",
              "rows": rows}
    print(json.dumps(record, indent=2))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(record, indent=2) + "\n")
    args.output.with_suffix(".md").write_text(table(record))
    if not same:
        print("error: the runs disagree on the entities or the word count", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
