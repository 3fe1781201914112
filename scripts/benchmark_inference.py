"""Words/s of `nlp.pipe` against the bare Hugging Face forward pass on the same texts.

    python scripts/benchmark_inference.py PIPELINE_OR_MODEL [--texts N] [--batch-size B]
        [--n-layers N] [--unmask SPEC] [--repeat K] [--gpu-id G] [--output reports/benchmark_inference.json]

PIPELINE_OR_MODEL is a saved spaCy pipeline (a folder with config.cfg, or an
installed package name) or a model folder; for a model folder a `transformer` +
`ner` pipeline is built around it (untrained heads cost what trained ones do).
Texts are WNUT-16 tweets from the asset cache, in their file order, cut into the
same batches for both measurements. The bare forward tokenizes with the same
tokenizer and runs the same decoder module under `torch.no_grad`; the ratio of
the two shows what tokenizing, aligning and the heads cost on top. Each measurement
runs in a process of its own (so each has its own peak memory), alternating;
`--gpu-id 0` measures on a GPU, with the precision the pipeline's config sets.
"""
import argparse
import sys
import time
from pathlib import Path

import spacy
import torch
from thinc.api import Config

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchmarking import (  # noqa: E402
    alternate, fastest, peak_matmul, piece_counts, read_tweets, report_child, roofline_fractions, synchronize,
    use_device, write_result,
)
from roofline import DecoderFlops, matmul_flops_per_s  # noqa: E402

PIPELINE_CONFIG = """
[nlp]
lang = "en"
pipeline = ["transformer", "ner"]
[components]
[components.transformer]
factory = "transformer"
[components.transformer.model]
@architectures = "spacy-unmask.DecoderTransformer.v1"
name = "{name}"
unmask = "{unmask}"
n_layers = {n_layers}
repeat = {repeat}
[components.ner]
factory = "ner"
[components.ner.model]
@architectures = "spacy.TransitionBasedParser.v2"
state_type = "ner"
extra_state_tokens = false
hidden_width = 64
maxout_pieces = 2
use_upper = false
[components.ner.model.tok2vec]
@architectures = "spacy-transformers.TransformerListener.v1"
grad_factor = 1.0
[components.ner.model.tok2vec.pooling]
@layers = "reduce_mean.v1"
"""


def load_pipeline(target: str, unmask: str, n_layers, repeat: int):
    path = Path(target)
    if path.is_dir() and (path / "config.json").is_file() and not (path / "config.cfg").is_file():
        config = Config().from_str(
            PIPELINE_CONFIG.format(
                name=path, unmask=unmask, n_layers="null" if n_layers is None else n_layers, repeat=repeat
            )
        )
        nlp = spacy.util.load_model_from_config(config, auto_fill=True)
        nlp.initialize(lambda: [spacy.training.Example.from_dict(nlp.make_doc("Hi Paris"), {})])
        return nlp
    return spacy.load(target)


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    synchronize()
    return time.perf_counter() - start


def child(args) -> None:
    """One measurement (`pipe` or `bare`) in this process; prints its JSON line."""
    device = use_device(args.gpu_id)
    torch.manual_seed(0)
    nlp = load_pipeline(args.target, args.unmask, args.n_layers, args.repeat)
    model = nlp.get_pipe("transformer").model
    texts = read_tweets(args.texts)
    batches = [texts[i : i + args.batch_size] for i in range(0, len(texts), args.batch_size)]
    tokenizer, module = model.tokenizer, model.transformer
    module.eval()

    def bare(batches):
        with torch.no_grad():
            for batch in batches:
                enc = tokenizer(batch, padding="longest", return_tensors="pt")
                module(input_ids=enc["input_ids"].to(module.device), attention_mask=enc["attention_mask"].to(module.device))

    def pipe(batches):
        for _ in nlp.pipe((text for batch in batches for text in batch), batch_size=args.batch_size):
            pass

    run = pipe if args.child == "pipe" else bare
    run(batches[:2])  # warm-up
    seconds = min(timed(lambda: run(batches)) for _ in range(args.passes))
    lengths = piece_counts(tokenizer, texts)
    report_child({
        "seconds": seconds,
        "flops": DecoderFlops(module, model.attrs["settings"].repeat).total(lengths, training=False),
        "words": sum(1 for doc in nlp.tokenizer.pipe(texts) for t in doc if not t.is_space),
        "texts": len(texts),
        "device": device,
        "unmask": str(model.attrs["settings"].unmask),
        "repeat": model.attrs["settings"].repeat,
        "layers": module.config.num_hidden_layers,
        "mixed_precision": model.attrs["settings"].mixed_precision,
        "matmul_flops_per_s": matmul_flops_per_s(module.device),
    })


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("target")
    parser.add_argument("--texts", type=int, default=400)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--n-layers", type=int, default=None)
    parser.add_argument("--unmask", default="second_half")
    parser.add_argument("--repeat", type=int, default=1, help="sequence repetition (model folders only)")
    parser.add_argument("--gpu-id", type=int, default=-1)
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds, one process per measurement; the fastest is kept")
    parser.add_argument("--passes", type=int, default=2, help="timed passes over the texts inside each process")
    parser.add_argument("--output", type=Path, default=Path("reports/benchmark_inference.json"))
    parser.add_argument("--child", choices=["pipe", "bare"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args)

    forwarded = [args.target, "--texts", str(args.texts), "--batch-size", str(args.batch_size), "--unmask", args.unmask,
                 "--repeat", str(args.repeat), "--gpu-id", str(args.gpu_id), "--passes", str(args.passes)]
    if args.n_layers is not None:
        forwarded += ["--n-layers", str(args.n_layers)]
    runs = alternate(Path(__file__), forwarded, ["pipe", "bare"], args.rounds)
    pipe, bare = fastest(runs["pipe"]), fastest(runs["bare"])
    roofline = peak_matmul(runs)
    words = pipe["words"]
    write_result({
        "benchmark": "inference",
        "target": args.target,
        "what": f"nlp.pipe vs bare forward, {pipe['layers']} layers, {pipe['unmask']}, repeat {pipe['repeat']}, batch {args.batch_size}",
        "unmask": pipe["unmask"],
        "repeat": pipe["repeat"],
        "layers": pipe["layers"],
        "texts": pipe["texts"],
        "words": words,
        "batch_size": args.batch_size,
        "unit": "words",
        "ours_per_s": round(words / pipe["seconds"], 1),
        "bare_per_s": round(words / bare["seconds"], 1),
        "ratio": round(bare["seconds"] / pipe["seconds"], 3),
        "matmul_gflops": round(roofline / 1e9, 1),
        "roofline_fraction": roofline_fractions({"ours": pipe, "bare": bare}, roofline),
        "ours_peak_memory_mb": pipe["peak_memory_mb"],
        "bare_peak_memory_mb": bare["peak_memory_mb"],
        "memory_kind": pipe["memory_kind"],
        "device": pipe["device"],
        "mixed_precision": pipe["mixed_precision"],
        "all_seconds": {mode: [round(r["seconds"], 2) for r in rs] for mode, rs in runs.items()},
    }, args.output)


if __name__ == "__main__":
    main()
