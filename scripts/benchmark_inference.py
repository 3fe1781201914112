"""Words/s of `nlp.pipe` against the bare Hugging Face forward pass on the same texts, fp32 and bf16.

    python scripts/benchmark_inference.py PIPELINE_OR_MODEL [--texts N] [--batch-size B]
        [--n-layers N] [--unmask SPEC] [--repeat K] [--gpu-id G] [--set KEY=VALUE ...]
        [--output reports/benchmark_inference.json]

PIPELINE_OR_MODEL is a saved spaCy pipeline (a folder with config.cfg, or an
installed package name) or a model folder; for a model folder a `transformer` +
`ner` pipeline is built around it (untrained heads cost what trained ones do).
Texts are WNUT-16 tweets from the asset cache, in their file order, cut into the
same batches for both measurements. The bare forward tokenizes with the same
tokenizer and runs the same decoder module under `torch.no_grad`. Four measurements:
- pipe:      the pipeline as `spacy.load` gives it (`inference_dtype` as its config says:
             "auto" runs bfloat16 where the device has it natively);
- pipe_fp32: the same, loaded with `inference_dtype = "float32"`;
- bare_fp32 / bare_bf16: the bare forward of the same decoder with float32 / bfloat16 weights.
pipe ÷ bare_fp32 is what a user gains over a plain float32 forward; pipe ÷ the bare forward
in pipe's own precision shows what tokenizing, aligning and the heads cost on top. A model
folder is first built into a pipeline and saved, so every measurement loads from disk. Each
measurement runs in a process of its own (so each has its own peak memory), alternating;
`--gpu-id 0` measures on a GPU. `--set components.transformer.model.attn_implementation=sdpa`
loads every measurement's pipeline with that config value changed (repeatable).
"""
import argparse
import tempfile
import time
from pathlib import Path

import spacy
import torch
from thinc.api import Config

from spacy_unmask.pieces import piece_counts

from benchmarking import (
    alternate, compute_precision, fastest, peak_matmul, read_tweets, report_child, roofline_fractions,
    synchronize, use_device, write_result,
)
from pipeline_config import decoder_ner_config
from roofline import DecoderFlops, matmul_speeds

# measurement -> the `inference_dtype` it loads the pipeline with (None: as its config says)
MODES = {"pipe": None, "pipe_fp32": "float32", "bare_fp32": "float32", "bare_bf16": "bfloat16"}


def is_model_folder(target: str) -> bool:
    path = Path(target)
    return path.is_dir() and (path / "config.json").is_file() and not (path / "config.cfg").is_file()


def build_pipeline(model: str, unmask: str, n_layers, repeat: int, output: Path) -> None:
    """A transformer + (untrained) ner pipeline around a model folder, saved to `output`."""
    layers = "null" if n_layers is None else n_layers
    config = Config().from_str(decoder_ner_config(model, unmask, decoder_lines=f"n_layers = {layers}\nrepeat = {repeat}"))
    nlp = spacy.util.load_model_from_config(config, auto_fill=True)
    nlp.initialize(lambda: [spacy.training.Example.from_dict(nlp.make_doc("Hi Paris"), {})])
    nlp.to_disk(output)


def load_with_overrides(target: str, inference_dtype, settings=()):
    """`spacy.load` with `settings` ("KEY=VALUE" config overrides) and the `inference_dtype` of a
    measurement (None: as the pipeline's config says)."""
    overrides = dict(setting.split("=", 1) for setting in settings)
    if inference_dtype is not None:
        overrides["components.transformer.model.inference_dtype"] = inference_dtype
    return spacy.load(target, config=overrides)


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    synchronize()
    return time.perf_counter() - start


def child(args) -> None:
    """One measurement (`pipe` or `bare`) in this process; prints its JSON line."""
    device = use_device(args.gpu_id)
    torch.manual_seed(0)
    nlp = load_with_overrides(args.target, MODES[args.child], args.set)
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

    run = pipe if args.child.startswith("pipe") else bare
    run(batches[:2])  # warm-up
    seconds = min(timed(lambda: run(batches)) for _ in range(args.passes))
    lengths = piece_counts(tokenizer, texts, truncate=True)
    report_child({
        "seconds": seconds,
        "flops": DecoderFlops(module, model.attrs["settings"].repeat).total(lengths, training=False),
        "words": sum(1 for doc in nlp.tokenizer.pipe(texts) for t in doc if not t.is_space),
        "texts": len(texts),
        "device": device,
        "unmask": str(model.attrs["settings"].unmask),
        "repeat": model.attrs["settings"].repeat,
        "layers": module.config.num_hidden_layers,
        "precision": compute_precision(module),
        "inference_dtype": model.attrs["settings"].inference_dtype,
        "matmul_flops_per_s": matmul_speeds(module.device),
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
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a config value for the loaded pipeline, e.g. components.transformer.model.attn_implementation=sdpa")
    parser.add_argument("--child", choices=list(MODES), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args)
    with tempfile.TemporaryDirectory() as tmp:
        target = args.target
        if is_model_folder(target):
            target = str(Path(tmp) / "pipeline")
            build_pipeline(args.target, args.unmask, args.n_layers, args.repeat, Path(target))
        measure(args, target)


def measure(args, target: str) -> None:
    forwarded = [target, "--texts", str(args.texts), "--batch-size", str(args.batch_size),
                 "--gpu-id", str(args.gpu_id), "--passes", str(args.passes), *[f"--set={s}" for s in args.set]]
    runs = alternate(Path(__file__), forwarded, list(MODES), args.rounds)
    best = {mode: fastest(rs) for mode, rs in runs.items()}
    pipe, bare = best["pipe"], best["bare_fp32"]
    same = best[f"bare_{pipe['precision']}"]  # the bare forward in the precision the pipeline runs in
    roofline = peak_matmul(runs)
    words = pipe["words"]
    rate = {mode: round(words / r["seconds"], 1) for mode, r in best.items()}
    write_result({
        "benchmark": "inference",
        "target": args.target,
        "what": f"nlp.pipe ({pipe['precision']}) vs bare forward, {pipe['layers']} layers, {pipe['unmask']}, "
                f"repeat {pipe['repeat']}, batch {args.batch_size}" + "".join(f", {s}" for s in args.set),
        "unmask": pipe["unmask"],
        "repeat": pipe["repeat"],
        "layers": pipe["layers"],
        "texts": pipe["texts"],
        "words": words,
        "batch_size": args.batch_size,
        "unit": "words",
        "precision": pipe["precision"],
        "inference_dtype": pipe["inference_dtype"],
        # `ours`: nlp.pipe as loaded; `bare`: the bare float32 forward (the yardstick)
        "ours_per_s": rate["pipe"],
        "bare_per_s": rate["bare_fp32"],
        "ours_fp32_per_s": rate["pipe_fp32"],
        "bare_bf16_per_s": rate["bare_bf16"],
        "ratio": round(bare["seconds"] / pipe["seconds"], 3),
        "ratio_same_precision": round(same["seconds"] / pipe["seconds"], 3),
        "ratio_fp32": round(best["bare_fp32"]["seconds"] / best["pipe_fp32"]["seconds"], 3),
        "matmul_gflops": {p: round(v / 1e9, 1) for p, v in roofline.items()},
        "roofline_fraction": roofline_fractions(
            {"ours": pipe, "ours_fp32": best["pipe_fp32"], "bare": bare, "bare_bf16": best["bare_bf16"]}, roofline
        ),
        "ours_peak_memory_mb": pipe["peak_memory_mb"],
        "bare_peak_memory_mb": bare["peak_memory_mb"],
        "memory_kind": pipe["memory_kind"],
        "device": pipe["device"],
        "all_seconds": {mode: [round(r["seconds"], 2) for r in rs] for mode, rs in runs.items()},
    }, args.output)


if __name__ == "__main__":
    main()
