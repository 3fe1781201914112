"""Does torch.compile (inductor) pay for annotation? Words/s of `nlp.pipe` on a job, compile time included.

    python scripts/benchmark_compile.py PIPELINE [--n-docs 1000] [--batch-size 64] [--rounds 2]
        [--output reports/benchmark_compile_cpu.json]

The test split's texts repeated to `--n-docs` documents go through `nlp.pipe` twice per round,
each in a fresh process with the pipeline as `spacy.load` gives it: once as it is, once with
the decoder's transformers model compiled in place (`nn.Module.compile`, inductor,
`dynamic=True`, since batches differ in shape). The unmasking's forward pre-hooks stay in
place and are traced with the layers. The compiled run's time includes compiling (the first
batches); its entities are checked against the eager run's.
"""
import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def child(args) -> None:
    import spacy
    from spacy.tokens import DocBin

    texts = [d.text for d in DocBin().from_disk(args.texts).get_docs(spacy.blank("en").vocab)]
    texts = (texts * (args.n_docs // len(texts) + 1))[: args.n_docs]
    start = time.perf_counter()
    nlp = spacy.load(args.pipeline)
    if args.child == "compiled":
        nlp.get_pipe("transformer").model.transformer.transformer.compile(dynamic=True)
    docs = list(nlp.pipe(texts, batch_size=args.batch_size))
    seconds = time.perf_counter() - start
    print(json.dumps({"seconds": seconds, "words": sum(len(d) for d in docs),
                      "ents": [[(e.start, e.end, e.label_) for e in d.ents] for d in docs]}))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pipeline")
    parser.add_argument("--texts", type=Path, default=ROOT / "corpus" / "test.spacy")
    parser.add_argument("--n-docs", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--output", type=Path, default=ROOT / "reports" / "benchmark_compile_cpu.json")
    parser.add_argument("--child", choices=["eager", "compiled"])
    args = parser.parse_args()
    if args.child:
        child(args)
        return 0
    runs = {"eager": [], "compiled": []}
    for _ in range(args.rounds):
        for mode in runs:
            out = subprocess.run([sys.executable, __file__, args.pipeline, "--texts", str(args.texts), "--n-docs",
                                  str(args.n_docs), "--batch-size", str(args.batch_size), "--child", mode],
                                 capture_output=True, text=True)
            if out.returncode != 0:
                runs[mode].append({"error": out.stderr[-2000:]})
                print(f"[compile] {mode} failed:\n{out.stderr[-2000:]}", file=sys.stderr)
                continue
            runs[mode].append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(f"[compile] {mode}: {runs[mode][-1]['seconds']:.1f} s", file=sys.stderr, flush=True)
    record = {"pipeline": args.pipeline, "docs": args.n_docs, "batch_size": args.batch_size, "rounds": args.rounds}
    for mode, rs in runs.items():
        ok = [r for r in rs if "error" not in r]
        record[mode] = {"seconds": [round(r["seconds"], 1) for r in ok], "errors": [r["error"][-500:] for r in rs if "error" in r]}
        if ok:
            record[mode]["words_per_s"] = round(ok[0]["words"] / statistics.median(r["seconds"] for r in ok), 1)
    if record["eager"].get("words_per_s") and record["compiled"].get("words_per_s"):
        record["compiled_over_eager"] = round(record["compiled"]["words_per_s"] / record["eager"]["words_per_s"], 2)
        eager = [r for r in runs["eager"] if "error" not in r][0]["ents"]
        compiled = [r for r in runs["compiled"] if "error" not in r][0]["ents"]
        record["same_entities"] = sum(a == b for a, b in zip(eager, compiled)) / len(eager)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps({k: v for k, v in record.items()}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
