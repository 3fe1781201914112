"""Words/s of batch annotation: `nlp.pipe` in input order against `spacy unmask apply` on each backend.

    python scripts/benchmark_apply.py MODEL [--texts corpus/test.spacy] [--n-docs 3000]
        [--rounds 3] [--output reports/benchmark_apply_cpu.json]  (and the table as .md beside it)

The test split's texts, repeated to `--n-docs` documents, go through: `nlp.pipe` unsorted (what
a user writes first), with 1 and 2 processes (`n_process`) and with torch held to 1 thread, then
the command with `--backend local` and 1 and 2 workers, and `--backend ray` with 1 and 2 actors,
all with the pipeline as `spacy.load` gives it (`inference_dtype = "auto"`: bfloat16 where the
CPU has it natively); then `nlp.pipe` and the command with 1 worker again on the same pipeline
loaded in float32, so the two precisions are compared in one run.
Each row is end-to-end wall time from no pipeline loaded: loading the pipeline (in every worker),
starting Ray where used, annotating and (for the command) writing the shards; the libraries
are imported once before the rounds (a spawned worker or Ray actor imports them again, and
that is timed). The rows alternate for `--rounds` rounds; each reports the median and the
range, and its decoder FLOP/s as a fraction of the machine's matmul speed in the precision the
row ran in (both measured in the run, `roofline.py`). Every run in one precision must give the
same entities and word count.
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

from spacy_unmask import forking
from spacy_unmask.annotate import apply_pipeline
from spacy_unmask.annotate.workers import cores, threads_per_worker
from spacy_unmask.pieces import piece_counts

from benchmarking import compute_precision
from roofline import DecoderFlops, matmul_speeds

ROOT = Path(__file__).resolve().parent.parent

# (name, backend, workers, torch threads of an in-process run, the pipeline loaded as shipped
# ("as loaded") or in float32): the 1-thread row shows how much of the machine one process
# already uses, i.e. what a second process can add at most
RUNS = [("nlp.pipe, input order", None, 1, None, "as loaded"),
        ("nlp.pipe, input order, 1 torch thread", None, 1, 1, "as loaded"),
        ("nlp.pipe, input order, n_process=2", None, 2, None, "as loaded"),
        ("apply, local, 1 worker", "local", 1, None, "as loaded"), ("apply, local, 2 workers", "local", 2, None, "as loaded"),
        ("apply, ray, 1 actor", "ray", 1, None, "as loaded"), ("apply, ray, 2 actors", "ray", 2, None, "as loaded"),
        ("nlp.pipe, input order, fp32", None, 1, None, "fp32"), ("apply, local, 1 worker, fp32", "local", 1, None, "fp32")]


def entities_of_shards(folder: Path):
    return [[(e["start"], e["end"], e["label"]) for e in json.loads(line)["ents"]]
            for shard in sorted(folder.glob("shard-*.jsonl")) for line in shard.read_text().splitlines()]


def worker_threads(backend, workers: int, threads) -> int:
    """torch threads each worker of a row runs: forked `nlp.pipe` workers run one
    (spacy_unmask/forking.py), the command's workers share the cores."""
    if backend is None:
        return threads or (cores() if workers == 1 else forking.WORKER_THREADS)
    return threads_per_worker(workers)


def measure(run, models, texts, source: Path, tmp: Path, args) -> dict:
    """One end-to-end run, loading the pipeline: (words, seconds, entities)."""
    name, backend, workers, threads, precision = run
    model = models[precision]
    start = time.perf_counter()
    if backend is None:
        previous = torch.get_num_threads()
        torch.set_num_threads(threads or previous)
        try:
            nlp = spacy.load(model)
            docs = list(nlp.pipe(texts, batch_size=args.batch_size, n_process=workers))
        finally:
            torch.set_num_threads(previous)
        seconds = time.perf_counter() - start
        return {"words": sum(len(d) for d in docs), "seconds": seconds,
                "ents": [[(e.start_char, e.end_char, e.label_) for e in d.ents] for d in docs]}
    out = tmp / f"{backend}{workers}"
    shutil.rmtree(out, ignore_errors=True)
    totals = apply_pipeline(model, source, out, backend, workers, args.batch_size, args.block_size, progress=False)
    return {"words": totals["words"], "seconds": time.perf_counter() - start, "ents": entities_of_shards(out)}


def table(record: dict) -> str:
    """The rows as the README shows them (a test checks that it does)."""
    lines = [f"| run | precision | words/s, median of {record['rounds']} | slowest - fastest round | x nlp.pipe "
             "| x the same run in fp32 | roofline fraction |", "|---|---|---|---|---|---|---|"]
    for row in record["rows"]:
        low, high = row["words_per_s_range"]
        versus = "n/a" if row["vs_fp32"] is None else f"{row['vs_fp32']:.2f}"
        lines.append(f"| {row['run']} | {row['precision']} | **{row['words_per_s']:.0f}** | {low:.0f} - {high:.0f} "
                     f"| {row['vs_nlp_pipe']:.2f} | {versus} | {row['roofline_fraction']:.2f} |")
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
    same, reference, words = True, {}, {}
    # the in-process rows would otherwise pay the one-time imports (transformers, peft) in
    # their first round only: every round times loading and running the pipeline, no more
    nlp = spacy.load(args.model)
    trf = nlp.get_pipe("transformer").model
    module = trf.transformer
    precisions = {"as loaded": compute_precision(module), "fp32": "fp32"}
    flops = DecoderFlops(module, trf.attrs["settings"].repeat).total(piece_counts(trf.tokenizer, texts, truncate=True), training=False)
    speeds = matmul_speeds(torch.device("cpu"))
    with tempfile.TemporaryDirectory() as tmp:
        # the same stored weights, loaded in float32 (exact: bf16 widens to fp32 losslessly)
        models = {"as loaded": args.model, "fp32": str(Path(tmp) / "fp32")}
        spacy.load(args.model, config={"components.transformer.model.inference_dtype": "float32"}).to_disk(models["fp32"])
        del nlp, trf, module
        source = Path(tmp) / "texts.jsonl"
        source.write_text("".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in enumerate(texts)))
        for round_ in range(args.rounds):
            for run in RUNS:
                result = measure(run, models, texts, source, Path(tmp), args)
                outcome = (result["ents"], result["words"])
                reference.setdefault(run[4], outcome)
                same = same and outcome == reference[run[4]]
                words[run[0]] = result["words"]
                seconds[run[0]].append(round(result["seconds"], 2))
                print(f"[round {round_ + 1}/{args.rounds}] {run[0]}: {result['seconds']:.1f} s", file=sys.stderr, flush=True)
    after = matmul_speeds(torch.device("cpu"))
    speeds = {p: max(v, after[p]) for p, v in speeds.items()}  # best of before and after
    base = statistics.median(seconds[RUNS[0][0]])
    median = {name: statistics.median(s) for name, s in seconds.items()}
    fp32_twin = {name: f"{name}, fp32" for name, *_ in RUNS if f"{name}, fp32" in seconds}
    rows = [{"run": name, "backend": backend, "workers": workers, "torch_threads_per_worker": worker_threads(backend, workers, threads),
             "precision": precisions[loaded],
             "docs": len(texts), "words": words[name], "seconds": seconds[name],
             "words_per_s": round(words[name] / median[name], 1),
             "words_per_s_range": [round(words[name] / max(seconds[name]), 1), round(words[name] / min(seconds[name]), 1)],
             "vs_nlp_pipe": round(base / median[name], 2),
             "vs_fp32": round(median[fp32_twin[name]] / median[name], 2) if name in fp32_twin else None,
             "roofline_fraction": round(flops / median[name] / speeds[precisions[loaded]], 3)}
            for name, backend, workers, threads, loaded in RUNS]
    record = {"model": args.model, "cores": cores(), "machine": platform.processor() or platform.machine(),
              "matmul_gflops": {p: round(v / 1e9, 1) for p, v in speeds.items()},
              "decoder_gflop_per_run": round(flops / 1e9, 1),
              "load_average_after": round(os.getloadavg()[0], 2), "batch_size": args.batch_size,
              "block_size": args.block_size, "rounds": args.rounds, "same_entities_and_words": same,
              "statistic": "words/s at the median of the rounds' seconds, and at the slowest and fastest round",
              "rows": rows}
    print(json.dumps(record, indent=2))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(record, indent=2) + "\n")
    args.output.with_suffix(".md").write_text(table(record))
    if not same:
        print("error: runs in the same precision disagree on the entities or the word count", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
