"""Subword pieces/s of spaCy's training loop against a bare loop, a plain PyTorch reference and the roofline.

    python scripts/benchmark_training.py CONFIG [--steps N] [--warmup W] [--gpu-id G]
        [--paths.train corpus/train.spacy ...] [--output reports/benchmark_training.json]
    python scripts/benchmark_training.py CONFIG --ablate [...]   # what each speed-up gives

CONFIG is a training config (e.g. configs/cpu.cfg); any further `--section.key value`
overrides it as on `spacy train`. Both measurements build the pipeline the way
`spacy train` does (`init_nlp`) and take the same first batches from the config's
own batcher and train corpus:
- spacy: those batches through spaCy's own training loop (`train_while_improving`:
  `nlp.update` of the decoder and every listening head, then each component's
  optimizer step), without evaluation;
- bare:  the same decoder module (same layers, unmasking, LoRA, precision) in a
  plain PyTorch loop: tokenize, forward, a squared-norm loss over the real pieces,
  backward, a fused torch Adam step over the same trainable parameters, gradients zeroed in place.
- reference: a plain PyTorch fine-tuning loop over the same module as one would
  write it without spaCy (`reference_loop.py`): length-sorted batches of 16 texts of
  the train split, a linear head, cross-entropy, clipping, torch's fused AdamW.
`--ablate` instead times spaCy's loop alone with the config as it is and with each of
spacy-unmask's speed-ups turned back (`ABLATIONS`), and writes
reports/benchmark_training_ablation.json.
spaCy's loop also runs with `mixed_precision = false` (spacy_fp32), so the speed-up of bf16
autocast is measured side by side, on the same batches, in the same run.
The ratio bare seconds / spaCy seconds shows what the heads, listeners, alignment
and thinc's optimizer cost on top on the same batches; spaCy / reference shows what a
user pays against a plain loop, batching included. Each loop's model FLOPs per second
are also given as a fraction of this machine's matmul speed, measured in the same run
(`roofline.py`). Each measurement runs in its own process (alternating, `--rounds`
times) so that each has its own peak memory.
"""
import argparse
import time
from itertools import islice
from pathlib import Path

import torch
from spacy.schemas import ConfigSchemaTraining
from spacy.training.initialize import init_nlp
from spacy.training.loop import train_while_improving
from spacy.cli._util import parse_config_overrides
from spacy.util import load_config, registry, resolve_dot_names

from spacy_unmask.pieces import piece_counts

from benchmarking import (
    alternate, compute_precision, fastest, peak_matmul, report_child, roofline_fractions, synchronize,
    use_device, write_result,
)
from reference_loop import make_step, reference_batches
from roofline import DecoderFlops, matmul_speeds

# The measurements of one run: name -> its child's extra arguments. `spacy_fp32` is spaCy's
# loop with bf16 autocast turned off, so the two precisions are timed side by side.
MEASUREMENTS = {
    "spacy": ["--child", "spacy"],
    "spacy_fp32": ["--child", "spacy", "--components.transformer.model.mixed_precision", "false"],
    "bare": ["--child", "bare"],
    "reference": ["--child", "reference"],
}


def build(config_path: Path, overrides: dict):
    """The initialized pipeline, its training settings and its first batches, as spacy train makes them."""
    config = load_config(config_path, overrides=overrides, interpolate=False)
    nlp = init_nlp(config)
    resolved = nlp.config.interpolate()
    training = registry.resolve(resolved["training"], schema=ConfigSchemaTraining)
    (train_corpus,) = resolve_dot_names(resolved, [training["train_corpus"]])
    return nlp, training, train_corpus


# Each speed-up of the shipped CPU configs, turned back by config overrides alone.
ABLATIONS = {
    "shipped config": [],
    "decoder step through thinc's optimizer": ["--training.optimizer.use_averages", "true"],
    "batches by words (size 400, buffer 256)": [
        "--training.batcher.get_length", "null", "--training.batcher.size", "400", "--training.batcher.buffer", "256",
    ],
    "heads on blis": ["--nlp.after_pipeline_creation", "null"],
    "float32 (no bf16 autocast)": ["--components.transformer.model.mixed_precision", "false"],
    "sdpa attention": ["--components.transformer.model.attn_implementation", "sdpa"],
    # not a config value: the child turns spacy_unmask/embedding_grad.py off
    "dense embedding gradient": ["--dense-embedding-grad"],
}


def padding(tokenizer, batches) -> float:
    """Padded pieces over real pieces, when every batch pads to its longest text."""
    real = padded = 0
    for texts in batches:
        counts = piece_counts(tokenizer, texts, truncate=True)
        real += sum(counts)
        padded += max(counts) * len(counts)
    return round(padded / real, 3)


def child(args, overrides: dict) -> None:
    device = use_device(args.gpu_id)
    if args.dense_embedding_grad:  # torch's dense embedding backward, as before embedding_grad.py
        import spacy_unmask.decoder

        spacy_unmask.decoder.accumulate_in_place = lambda model: None
    nlp, training, train_corpus = build(args.config, overrides)
    trf = nlp.get_pipe("transformer").model
    module, repeat = trf.transformer, trf.attrs["settings"].repeat
    needed = args.warmup + args.steps
    if args.child == "reference":
        epoch = reference_batches(train_corpus(nlp), trf.tokenizer)
        text_of = lambda item: item[0]  # noqa: E731  (text, entities)
    else:
        epoch = list(training["batcher"](train_corpus(nlp)))  # its first batches are timed
        text_of = lambda eg: eg.reference.text  # noqa: E731
    batches = epoch[:needed]
    if len(batches) < needed:
        raise SystemExit(f"the train corpus gives only {len(batches)} batches; lower --steps/--warmup")
    if args.child == "reference":
        optimizer = training["optimizer"]
        # A constant rate (the shipped peak): the rate does not change the speed.
        step = make_step(module, trf.tokenizer, batches, 2e-4, optimizer.L2, optimizer.grad_clip or 1.0)
        seconds = time_steps(step, batches, args.warmup)
    elif args.child == "spacy":
        seconds = time_spacy_loop(nlp, training, batches, args.warmup)
    else:
        seconds = time_bare_loop(trf, batches, args.warmup)
    texts = [text_of(item) for batch in batches[args.warmup :] for item in batch]
    lengths = piece_counts(trf.tokenizer, texts, truncate=True)
    report_child({
        "seconds": seconds,
        "pieces": sum(lengths) * repeat,
        "flops": DecoderFlops(module, repeat).total(lengths, training=True),
        "texts": len(texts),
        "padding": padding(trf.tokenizer, [[text_of(item) for item in batch] for batch in epoch]),
        "steps": args.steps,
        "device": device,
        "layers": module.config.num_hidden_layers,
        "unmask": str(trf.attrs["settings"].unmask),
        "lora": trf.attrs["settings"].lora is not None,
        "precision": compute_precision(module),
        "trainable_parameters": sum(p.numel() for p in module.parameters() if p.requires_grad),
        "matmul_flops_per_s": matmul_speeds(module.device),
        "pipeline": nlp.pipe_names,
    })


def time_spacy_loop(nlp, training, batches, warmup: int) -> float:
    # spaCy's own step: update every component, then each one's optimizer step
    steps = train_while_improving(
        nlp,
        training["optimizer"],
        ((0, batch) for batch in batches),
        evaluate=lambda: (0.0, {}),
        dropout=training["dropout"],
        accumulate_gradient=training["accumulate_gradient"],
        eval_frequency=10**9,
        patience=0,
        max_steps=0,
        exclude=training["frozen_components"],
        annotating_components=training["annotating_components"],
        before_update=None,
    )
    for _ in islice(steps, warmup):
        pass
    synchronize()
    start = time.perf_counter()
    for _ in steps:
        pass
    synchronize()
    return time.perf_counter() - start


def time_steps(step, batches, warmup: int) -> float:
    for batch in batches[:warmup]:
        step(batch)
    synchronize()
    start = time.perf_counter()
    for batch in batches[warmup:]:
        step(batch)
    synchronize()
    return time.perf_counter() - start


def time_bare_loop(trf, batches, warmup: int) -> float:
    module, tokenizer = trf.transformer, trf.tokenizer
    module.train()
    params = [p for p in module.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=1e-5, fused=True)  # torch's fastest Adam, on CPU too
    device = module.device

    def step(batch):
        enc = tokenizer([eg.reference.text for eg in batch], padding="longest", truncation=True, return_tensors="pt")
        mask = enc["attention_mask"].to(device)
        states = module(input_ids=enc["input_ids"].to(device), attention_mask=mask).last_hidden_state
        loss = (states.pow(2).sum(-1) * mask).sum() / mask.sum()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=False)  # in place, as thinc does: faster here than freeing

    return time_steps(step, batches, warmup)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", type=Path)
    parser.add_argument("--steps", type=int, default=10, help="timed steps")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    parser.add_argument("--gpu-id", type=int, default=-1)
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds, one process per measurement; the fastest is kept")
    parser.add_argument("--output", type=Path, default=Path("reports/benchmark_training.json"))
    parser.add_argument("--ablate", action="store_true", help="time spaCy's loop with each speed-up turned back")
    parser.add_argument("--child", choices=["spacy", "bare", "reference"], help=argparse.SUPPRESS)
    parser.add_argument("--dense-embedding-grad", action="store_true", help=argparse.SUPPRESS)
    args, extra = parser.parse_known_args()
    overrides = parse_config_overrides(list(extra))  # it empties the list it is given
    if args.child:
        return child(args, overrides)

    forwarded = [str(args.config), "--steps", str(args.steps), "--warmup", str(args.warmup), "--gpu-id", str(args.gpu_id), *extra]
    if args.ablate:
        return ablate(forwarded, args)
    runs = alternate(Path(__file__), forwarded, MEASUREMENTS, args.rounds)
    best = {name: fastest(rs) for name, rs in runs.items()}
    ours, ours_fp32, bare, reference = best["spacy"], best["spacy_fp32"], best["bare"], best["reference"]
    roofline = peak_matmul(runs)
    lora = "LoRA" if ours["lora"] else "full fine-tuning"
    precision = ours["precision"]
    rate = {name: r["pieces"] / r["seconds"] for name, r in best.items()}
    write_result({
        "benchmark": "training",
        "target": str(args.config),
        "overrides": overrides,
        "what": f"spacy train loop ({' + '.join(ours['pipeline'])}) vs bare fwd+bwd+Adam vs plain PyTorch reference, "
                f"{ours['layers']} layers, {ours['unmask']}, {lora}, {precision}, {ours['steps']} steps",
        "layers": ours["layers"],
        "unmask": ours["unmask"],
        "steps": ours["steps"],
        "pieces": ours["pieces"],
        "unit": "pieces",
        "precision": precision,
        "ours_per_s": round(rate["spacy"], 1),
        "ours_fp32_per_s": round(rate["spacy_fp32"], 1),
        "bare_per_s": round(rate["bare"], 1),
        "reference_per_s": round(rate["reference"], 1),
        "ratio": round(rate["spacy"] / rate["bare"], 3),
        "ratio_reference": round(rate["spacy"] / rate["reference"], 3),
        # spaCy's step as configured over the same step in float32, same batches, same run
        "speedup_over_fp32": round(rate["spacy"] / rate["spacy_fp32"], 3),
        "matmul_gflops": {p: round(v / 1e9, 1) for p, v in roofline.items()},
        "roofline_fraction": roofline_fractions(
            {"ours": ours, "ours_fp32": ours_fp32, "bare": bare, "reference": reference}, roofline
        ),
        "flops_per_piece": round(ours["flops"] / ours["pieces"]),
        # one epoch of the train split as each loop batches it: padded / real pieces
        "padding": {"ours": ours["padding"], "reference": reference["padding"]},
        "ours_peak_memory_mb": ours["peak_memory_mb"],
        "ours_fp32_peak_memory_mb": ours_fp32["peak_memory_mb"],
        "bare_peak_memory_mb": bare["peak_memory_mb"],
        "reference_peak_memory_mb": reference["peak_memory_mb"],
        "memory_kind": ours["memory_kind"],
        "trainable_parameters": ours["trainable_parameters"],
        "device": ours["device"],
        "all_seconds": {mode: [round(r["seconds"], 2) for r in rs] for mode, rs in runs.items()},
    }, args.output)


def ablate(forwarded, args) -> None:
    variants = {name: ["--child", "spacy", *override] for name, override in ABLATIONS.items()}
    runs = alternate(Path(__file__), forwarded, variants, args.rounds)
    best = {name: fastest(rs) for name, rs in runs.items()}
    shipped = best["shipped config"]
    shipped_rate = shipped["pieces"] / shipped["seconds"]
    output = args.output if args.output.name != "benchmark_training.json" else args.output.with_name("benchmark_training_ablation.json")
    write_result({
        "benchmark": "training_ablation",
        "target": str(args.config),
        "steps": shipped["steps"],
        "device": shipped["device"],
        "unit": "pieces",
        "variants": {
            name: {
                "pieces_per_s": round(r["pieces"] / r["seconds"], 1),
                "seconds_per_step": round(r["seconds"] / r["steps"], 2),
                "padding": r["padding"],
                "shipped_speedup": round(shipped_rate / (r["pieces"] / r["seconds"]), 2),
            }
            for name, r in best.items()
        },
        "all_seconds": {name: [round(r["seconds"], 2) for r in rs] for name, rs in runs.items()},
    }, output)


if __name__ == "__main__":
    main()
