"""Words/s of batch annotation: `nlp.pipe` in input order against `spacy unmask apply` on each backend.

    python scripts/benchmark_apply.py MODEL [--texts corpus/test.spacy] [--n-docs 3000]
        [--output reports/benchmark_apply_cpu.json]

The test split's texts, repeated to `--n-docs` documents, go through: `nlp.pipe` unsorted (what
a user writes first), with 1 and 2 processes (`n_process`), then the command with `--backend local` and 1 and 2
workers, and `--backend ray` with 1 and 2 actors. Each row is end-to-end wall time from
nothing loaded: loading the pipeline (in every worker), starting Ray where used, annotating
and (for the command) writing the shards. Every row must give the same entities.
"""
import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import spacy
from spacy.tokens import DocBin

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from spacy_unmask.annotate import apply_pipeline  # noqa: E402
from spacy_unmask.annotate.backends import cores  # noqa: E402

RUNS = [("nlp.pipe, input order", None, 1), ("nlp.pipe, input order, n_process=2", None, 2),
        ("apply, local, 1 worker", "local", 1), ("apply, local, 2 workers", "local", 2),
        ("apply, ray, 1 actor", "ray", 1), ("apply, ray, 2 actors", "ray", 2)]


def entities_of_shards(folder: Path):
    return [[(e["start"], e["end"], e["label"]) for e in json.loads(line)["ents"]]
            for shard in sorted(folder.glob("shard-*.jsonl")) for line in shard.read_text().splitlines()]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("--texts", type=Path, default=ROOT / "corpus" / "test.spacy")
    parser.add_argument("--n-docs", type=int, default=3000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--block-size", type=int, default=250, help="blocks are sorted by length: a few batches each, and a few blocks per worker")
    parser.add_argument("--output", type=Path, default=ROOT / "reports" / "benchmark_apply_cpu.json")
    args = parser.parse_args()
    texts = [d.text for d in DocBin().from_disk(args.texts).get_docs(spacy.blank("en").vocab)]
    texts = (texts * (args.n_docs // len(texts) + 1))[: args.n_docs]
    rows, reference = [], None
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "texts.jsonl"
        source.write_text("".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in enumerate(texts)))
        for name, backend, workers in RUNS:
            start = time.perf_counter()
            load_seconds = None
            if backend is None:
                nlp = spacy.load(args.model)
                load_seconds = round(time.perf_counter() - start, 2)
                docs = list(nlp.pipe(texts, batch_size=args.batch_size, n_process=workers))
                seconds = time.perf_counter() - start
                words = sum(len(d) for d in docs)
                ents = [[(e.start_char, e.end_char, e.label_) for e in d.ents] for d in docs]
                del nlp, docs
            else:
                out = Path(tmp) / f"{backend}{workers}"
                totals = apply_pipeline(args.model, source, out, backend, workers, args.batch_size, args.block_size,
                                        progress=False)
                seconds = time.perf_counter() - start
                words = totals["words"]
                ents = entities_of_shards(out)
            reference = reference or ents
            row = {"run": name, "backend": backend, "workers": workers, "docs": len(texts), "words": words,
                   "seconds": round(seconds, 2), "load_seconds": load_seconds, "words_per_s": round(words / seconds, 1), "same_entities": ents == reference}
            print(json.dumps(row), flush=True)
            rows.append(row)
    record = {"model": args.model, "cores": cores(), "machine": platform.processor() or platform.machine(),
              "load_average_after": round(os.getloadavg()[0], 2), "batch_size": args.batch_size,
              "block_size": args.block_size, "rows": rows}
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(record, indent=2) + "\n")
    if not all(row["same_entities"] for row in rows):
        print("error: the runs disagree on the entities", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
