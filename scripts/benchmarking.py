"""What the two benchmark scripts share: the texts, one measurement per process, the report.

Each measurement runs in a child process of its own, so that its peak memory is its
own (resident set size on CPU, torch's peak allocation on a GPU); the parent
alternates the two measurements so that drift in machine load hits both alike.
"""
import json
import platform
import resource
import subprocess
import sys
from pathlib import Path
from typing import Dict, List

from convert_wnut import read_conll
from fetch_assets import DATA_FILE, default_cache

# inference: spaCy / bare forward in the same precision, and spaCy as loaded / the bare float32
# forward; training: spaCy / the plain PyTorch reference loop under the same precision, and
# spaCy's step as configured / the same step in float32
TARGETS = {"inference": 0.90, "inference_over_fp32": 2.0, "training": 0.90, "training_over_fp32": 1.5}


def read_tweets(limit: int) -> List[str]:
    """WNUT-16 tweets from the asset cache, in file order, words joined by spaces."""
    path = default_cache() / DATA_FILE
    if not path.is_file():
        raise SystemExit(f"{path} is missing: run `python scripts/fetch_assets.py` first")
    return [" ".join(words) for words, _tags in read_conll(path)][:limit]


def use_device(gpu_id: int) -> str:
    """Put thinc (and so spaCy and our module) on the GPU if asked; name the device."""
    import torch
    import spacy

    if gpu_id >= 0:
        spacy.require_gpu(gpu_id)
        return torch.cuda.get_device_name(gpu_id)
    return f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads)"


def synchronize() -> None:
    import torch

    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def peak_memory() -> Dict[str, float]:
    import torch

    if torch.cuda.is_available() and torch.cuda.is_initialized():
        return {"peak_memory_mb": round(torch.cuda.max_memory_allocated() / 2**20, 1), "memory_kind": "GPU, torch peak allocated"}
    # Linux reports ru_maxrss in KiB
    return {"peak_memory_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1), "memory_kind": "CPU, peak RSS"}


def report_child(result: Dict) -> None:
    """A child's last line on stdout: its measurement as JSON."""
    print(json.dumps({**result, **peak_memory()}), flush=True)


def alternate(script: Path, args: List[str], modes, rounds: int) -> Dict[str, List[Dict]]:
    """Run each measurement `rounds` times, alternating, one process each.

    `modes` lists child modes (`script ARGS --child MODE`), or maps a name to the
    extra arguments of its run (`script ARGS EXTRA`), e.g. one config override each.
    """
    extras = modes if isinstance(modes, dict) else {mode: ["--child", mode] for mode in modes}
    runs: Dict[str, List[Dict]] = {name: [] for name in extras}
    for round_ in range(rounds):
        for name, extra in extras.items():
            print(f"[benchmark] round {round_ + 1}/{rounds}: {name}", file=sys.stderr, flush=True)
            result = subprocess.run([sys.executable, str(script), *args, *extra], capture_output=True, text=True)
            if result.returncode != 0:
                raise SystemExit(f"the {name} measurement failed:\n{result.stderr[-3000:]}")
            runs[name].append(json.loads(result.stdout.strip().splitlines()[-1]))
    return runs


def peak_matmul(runs: Dict[str, List[Dict]]) -> Dict[str, float]:
    """The machine's matmul speed in each precision ({"fp32": FLOP/s, "bf16": FLOP/s}): the
    best that any measurement process measured after its loop.

    One short measurement varies by tens of percent on a shared machine; the best of
    several, taken in every process, is the speed the hardware can reach.
    """
    precisions = {p for rs in runs.values() for r in rs for p in r["matmul_flops_per_s"]}
    return {p: max(r["matmul_flops_per_s"][p] for rs in runs.values() for r in rs) for p in sorted(precisions)}


def roofline_fractions(runs: Dict[str, Dict], roofline: Dict[str, float]) -> Dict[str, float]:
    """Each loop's FLOP rate as a fraction of the machine's matmul speed in the precision the
    loop computes in (its `precision`), to 3 significant figures: a tiny test model runs far
    below 0.001 of it, which fixed decimals round to 0."""
    return {name: float(f"{r['flops'] / r['seconds'] / roofline[r['precision']]:.3g}") for name, r in runs.items()}


def compute_precision(module) -> str:
    """"bf16" or "fp32": what the decoder module multiplies in (its weights, or autocast),
    so the precision whose matmul speed is the loop's roofline."""
    import torch

    return "bf16" if module.compute_dtype == torch.bfloat16 else "fp32"


def fastest(runs: List[Dict]) -> Dict:
    """The run with the shortest time, with the highest peak memory of all runs."""
    best = dict(min(runs, key=lambda r: r["seconds"]))
    best["peak_memory_mb"] = max(r["peak_memory_mb"] for r in runs)
    return best


def write_result(result: Dict, output: Path) -> None:
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    write_report(output.parent)


def _cell(value, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _fractions(r: Dict, names: List[str]) -> str:
    fractions = r.get("roofline_fraction") or {}
    return " / ".join(_cell(fractions.get(name)) for name in names)


def _memory(r: Dict, names: List[str]) -> str:
    values = [r.get(f"{name}_peak_memory_mb") for name in names]
    return " / ".join("n/a" if v is None else f"{v:.0f}" for v in values)


def _padding(r: Dict) -> str:
    pads = r.get("padding") or {}
    return " / ".join("n/a" if pads.get(name) is None else f"x{pads[name]:.2f}" for name in ("ours", "reference"))


def _matmul(r: Dict) -> str:
    """fp32 / bf16 GFLOP/s; files from before both were measured hold one float32 figure."""
    speeds = r.get("matmul_gflops")
    if not isinstance(speeds, dict):
        speeds = {"fp32": speeds}
    return f"{_cell(speeds.get('fp32'), 0)} / {_cell(speeds.get('bf16'), 0)}"


def _target(value, target) -> str:
    return f"{_cell(value)} ({target:.2f})"


def write_report(folder: Path) -> None:
    """reports/benchmark.md: a table for inference and one for training, a row per benchmark JSON.

    Roofline fractions are model FLOP/s over the matmul speed measured in the same run
    (`roofline.py`) in the precision each loop computes in; "n/a" marks what a file
    written before that was measured does not hold (those files are float32 only).
    """
    results = [(path.name, json.loads(path.read_text())) for path in sorted(folder.glob("benchmark_*.json"))]
    lines = [
        "Inference: `nlp.pipe` of the pipeline as `spacy.load` gives it (precision: what it ran in) and "
        "loaded in float32, against the bare decoder forward in float32 and bfloat16 on the same batches.",
        "",
        "| file | what | device | precision | spaCy (words/s) | spaCy fp32 | bare fp32 | bare bf16 "
        "| spaCy ÷ bare fp32 (target) | spaCy ÷ bare, same precision (target) | matmul GFLOP/s fp32 / bf16 "
        "| roofline fraction spaCy / bare fp32 | peak MB spaCy / bare fp32 |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in results:
        if r.get("benchmark", "inference") != "inference" or "ratio" not in r:
            continue  # `benchmark_apply_*.json` has a table of its own
        ours = r.get("ours_per_s", r.get("nlp_pipe_words_per_s"))
        bare = r.get("bare_per_s", r.get("bare_forward_words_per_s"))
        what = r.get("what") or f"{r.get('layers')} layers, {r.get('unmask')}" + (f", repeat {r['repeat']}" if r.get("repeat") else "")
        same = r.get("ratio_same_precision", r["ratio"])
        lines.append(
            f"| `{name}` | {what} | {r.get('device', 'cpu')} | {r.get('precision', 'fp32')} | {ours} "
            f"| {r.get('ours_fp32_per_s', 'n/a')} | {bare} | {r.get('bare_bf16_per_s', 'n/a')} "
            f"| {_target(r['ratio'] if 'bare_bf16_per_s' in r else None, TARGETS['inference_over_fp32'])} "
            f"| {_target(same, TARGETS['inference'])} "
            f"| {_matmul(r)} | {_fractions(r, ['ours', 'bare'])} | {_memory(r, ['ours', 'bare'])} |"
        )
    lines += [
        "",
        "Training: spaCy's loop as the config has it (precision) and with `mixed_precision = false` (fp32), a bare "
        "loop on the config's own batches, and a plain PyTorch reference loop (length-sorted batches of 16, linear "
        "head, AdamW) over the same module, so under the same autocast.",
        "",
        "| file | what | device | precision | spaCy (pieces/s) | spaCy fp32 | bare | reference "
        "| spaCy ÷ spaCy fp32 (target) | spaCy ÷ bare | spaCy ÷ reference (target) | padding spaCy / reference "
        "| matmul GFLOP/s fp32 / bf16 | roofline fraction spaCy / spaCy fp32 / bare / reference "
        "| peak MB spaCy / spaCy fp32 / bare / reference |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in results:
        if r.get("benchmark") != "training":
            continue
        lines.append(
            f"| `{name}` | {r['what']} | {r.get('device', 'cpu')} | {r.get('precision', 'fp32')} | {r['ours_per_s']} "
            f"| {r.get('ours_fp32_per_s', 'n/a')} | {r['bare_per_s']} | {r.get('reference_per_s', 'n/a')} "
            f"| {_target(r.get('speedup_over_fp32'), TARGETS['training_over_fp32'])} | {r['ratio']:.2f} "
            f"| {_target(r.get('ratio_reference'), TARGETS['training'])} | {_padding(r)} | {_matmul(r)} "
            f"| {_fractions(r, ['ours', 'ours_fp32', 'bare', 'reference'])} "
            f"| {_memory(r, ['ours', 'ours_fp32', 'bare', 'reference'])} |"
        )
    for name, r in results:
        if r.get("benchmark") != "training_ablation":
            continue
        lines += [
            "",
            f"What each speed-up gives (`{name}`): spaCy's loop alone, {r['steps']} steps, on {r['device']}; "
            "each row turns one speed-up of the shipped config back.",
            "",
            "| variant | pieces/s | s a step | padding | the shipped config's speed-up over it |",
            "|---|---|---|---|---|",
        ]
        for variant, v in r["variants"].items():
            lines.append(f"| {variant} | {v['pieces_per_s']} | {v['seconds_per_step']} | x{v['padding']:.2f} | {v['shipped_speedup']:.2f}x |")
    (folder / "benchmark.md").write_text("\n".join(lines) + "\n")
