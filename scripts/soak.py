"""`spacy project run soak`: does a long `spacy unmask apply` job hold its memory?

Annotates `--docs` short documents (the WNUT-16 tweets of the corpus, repeated) with a trained
pipeline, once per backend (`local` with 1 worker, `ray` with 2 actors), as the command a user
runs. Every `--every` seconds it records the proportional set size (PSS: shared pages split
among the processes that map them, so Ray's object store is not counted once per process) of
the job's whole process tree, with how many documents the manifest lists by then. Memory swings
with each batch's lengths, so each figure is the median of the samples in a stretch of the job,
by documents listed: start (up to 10%), middle (40-60%) and end (80-95%: before the pool winds
down, as Ray Data releases actors that have no block left); the peak is the largest sample of
the second half. The verdict is the growth from middle to end, which must stay under `--limit`.
Writes `reports/soak.json` (every sample) and `reports/soak.md`; `--report-only` rewrites the
report from the JSON.
"""
import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import spacy
from spacy.tokens import DocBin

ROOT = Path(__file__).resolve().parent.parent
RUNS = (("local", 1), ("ray", 2))


def tweets(corpus: Path) -> list:
    nlp = spacy.blank("en")
    return [doc.text for split in ("train", "dev", "test")
            for doc in DocBin().from_disk(corpus / f"{split}.spacy").get_docs(nlp.vocab)]


def tree_pss_mb(root: psutil.Process) -> float:
    total = 0
    for process in [root] + root.children(recursive=True):
        try:
            info = process.memory_full_info()
            total += getattr(info, "pss", info.rss)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return total / 2**20


def listed_docs(out: Path) -> int:
    try:
        return sum(s["docs"] for s in json.loads((out / "manifest.json").read_text())["shards"].values())
    except (OSError, ValueError, KeyError):
        return 0


def soak(model: str, source: Path, out: Path, backend: str, workers: int, block_size: int, every: float) -> dict:
    cmd = [sys.executable, "-m", "spacy", "unmask", "apply", model, str(source), str(out), "--backend", backend,
           "--workers", str(workers), "--block-size", str(block_size), "--no-progress", "--force"]
    started = time.monotonic()
    job = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    root = psutil.Process(job.pid)
    samples = []
    while job.poll() is None:
        try:
            samples.append({"s": round(time.monotonic() - started, 1), "docs": listed_docs(out),
                            "pss_mb": round(tree_pss_mb(root), 1)})
        except psutil.NoSuchProcess:
            break
        time.sleep(every)
    output = job.communicate()[0]
    if job.returncode != 0:
        raise SystemExit(f"{backend} run failed ({job.returncode}):\n{output[-3000:]}")
    seconds = time.monotonic() - started
    words = sum(s["words"] for s in json.loads((out / "manifest.json").read_text())["shards"].values())
    return {"backend": backend, "workers": workers, "docs": listed_docs(out), "words": words,
            "seconds": round(seconds, 1), "words_per_s": round(words / seconds, 1), "samples": samples,
            "summary": output.strip().splitlines()[-1]}


STRETCHES = {"start": (0.0, 0.1), "middle": (0.4, 0.6), "end": (0.8, 0.95)}


def summarize(run: dict) -> dict:
    """Median PSS of each stretch of the job, the second half's peak, and the growth middle -> end."""
    total = run["docs"]
    figures = {}
    for name, (low, high) in STRETCHES.items():
        values = [s["pss_mb"] for s in run["samples"] if low * total < s["docs"] <= high * total]
        if not values:
            raise SystemExit(f"{run['backend']}: no sample between {low:.0%} and {high:.0%} of the documents: "
                             "sample more often (--every) or annotate more documents")
        figures[name] = round(statistics.median(values), 1)
    figures["peak_second_half"] = max(s["pss_mb"] for s in run["samples"] if 0.5 * total < s["docs"] <= 0.95 * total)
    figures["growth_second_half"] = round((figures["end"] - figures["middle"]) / figures["middle"], 4)
    return figures


def report(record: dict) -> str:
    lines = [
        "# Soak: does a long `spacy unmask apply` job hold its memory?", "",
        f"`spacy project run soak`, i.e. `python scripts/soak.py {record['model']} --docs {record['n_docs']}`: "
        f"{record['n_docs']:,} WNUT-16 tweets (the corpus repeated), blocks of {record['block_size']}, on "
        f"{record['machine']} ({record['cores']} cores). Memory is the PSS of the job's whole process tree "
        "(driver, workers, and for Ray its raylet, GCS and actors), sampled every "
        f"{record['every']} s; each figure is the median of the samples taken while the manifest listed up to 10% "
        "of the documents (start), 40-60% (middle) and 80-95% (end: before the pool winds down); the peak is the "
        f"largest sample between 50% and 95%. Verdict: growth from middle to end under {record['limit']:.0%}.", "",
        "| backend | workers | docs | words | wall s | words/s | PSS start MB | middle MB | end MB | peak, 2nd half | growth middle → end | verdict |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for run in record["runs"]:
        f = summarize(run)
        verdict = "holds" if f["growth_second_half"] < record["limit"] else "GROWS"
        lines.append(f"| {run['backend']} | {run['workers']} | {run['docs']:,} | {run['words']:,} | {run['seconds']:.0f} | "
                     f"{run['words_per_s']:.0f} | {f['start']:.0f} | {f['middle']:.0f} | {f['end']:.0f} | "
                     f"{f['peak_second_half']:.0f} | {f['growth_second_half']:+.1%} | {verdict} |")
    if record.get("note"):
        lines += ["", record["note"]]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="a trained pipeline folder or an installed package")
    parser.add_argument("--corpus", type=Path, default=ROOT / "corpus")
    parser.add_argument("--docs", type=int, default=50_000)
    parser.add_argument("--block-size", type=int, default=1000)
    parser.add_argument("--every", type=float, default=5.0, help="seconds between memory samples")
    parser.add_argument("--limit", type=float, default=0.05, help="largest growth from middle to end that passes")
    parser.add_argument("--note", default="", help="a line for the report (e.g. what else ran on the machine)")
    parser.add_argument("--output", type=Path, default=ROOT / "reports" / "soak")
    parser.add_argument("--report-only", action="store_true", help="rewrite the report from OUTPUT.json")
    args = parser.parse_args()
    if args.report_only:
        record = json.loads(args.output.with_suffix(".json").read_text())
        record["note"] = args.note or record.get("note", "")
        args.output.with_suffix(".md").write_text(report(record))
        return
    texts = tweets(args.corpus)
    record = {"model": args.model, "n_docs": args.docs, "block_size": args.block_size, "every": args.every,
              "limit": args.limit, "cores": psutil.cpu_count(), "machine": platform.processor() or platform.machine(),
              "note": args.note, "runs": []}
    with tempfile.TemporaryDirectory() as work:
        source = Path(work) / "soak.jsonl"
        with source.open("w") as handle:
            for i in range(args.docs):
                handle.write(json.dumps({"id": f"t{i}", "text": texts[i % len(texts)]}, ensure_ascii=False) + "\n")
        for backend, workers in RUNS:
            run = soak(args.model, source, Path(work) / f"out-{backend}", backend, workers, args.block_size, args.every)
            f = summarize(run)
            print(f"{backend} x{workers}: {run['docs']} docs in {run['seconds']:.0f} s, PSS {f['start']:.0f} "
                  f"-> {f['middle']:.0f} -> {f['end']:.0f} MB ({f['growth_second_half']:+.1%})", flush=True)
            record["runs"].append(run)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.with_suffix(".json").write_text(json.dumps(record, indent=1) + "\n")
    args.output.with_suffix(".md").write_text(report(record))


if __name__ == "__main__":
    main()
