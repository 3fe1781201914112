"""The benchmark scripts on a tiny random decoder: both ratios, peak memory, the report row."""
import json

from .test_project import WNUT, needs_wnut, script


def read(out):
    return json.loads(out.read_text())


def assert_measured(result, unit):
    assert result["unit"] == unit and result["ours_per_s"] > 0 and result["bare_per_s"] > 0
    assert abs(result["ratio"] - result["ours_per_s"] / result["bare_per_s"]) < 0.01
    assert result["ours_peak_memory_mb"] > 0 and result["bare_peak_memory_mb"] > 0
    assert result["memory_kind"] == "CPU, peak RSS"


@needs_wnut
def test_inference_benchmark_compares_nlp_pipe_with_the_bare_forward(tiny_llama, tmp_path):
    out = tmp_path / "reports" / "benchmark_inference_tiny.json"
    script("scripts/benchmark_inference.py", tiny_llama, "--texts", "24", "--batch-size", "8",
           "--unmask", "0110", "--rounds", "1", "--passes", "1", "--output", out)
    result = read(out)
    assert_measured(result, "words")
    assert result["texts"] == 24 and result["layers"] == 4 and result["unmask"] == "0110"
    assert "| inference | `benchmark_inference_tiny.json` |" in (out.parent / "benchmark.md").read_text()


@needs_wnut
def test_training_benchmark_runs_spacys_loop_and_the_bare_step_on_the_same_batches(tiny_llama, tmp_path):
    script("scripts/convert_wnut.py", WNUT, tmp_path / "corpus")
    out = tmp_path / "reports" / "benchmark_training_tiny.json"
    script("scripts/benchmark_training.py", "configs/cpu_lora.cfg", "--steps", "2", "--warmup", "1", "--rounds", "1",
           "--paths.model", tiny_llama, "--paths.train", tmp_path / "corpus" / "train.spacy",
           "--paths.dev", tmp_path / "corpus" / "dev.spacy", "--components.transformer.model.n_layers", "null",
           "--output", out)
    result = read(out)
    assert_measured(result, "pieces")
    # the same batches on both sides, and the override reached the children
    assert result["layers"] == 4 and result["steps"] == 2 and result["pieces"] > 0
    assert "LoRA" in result["what"] and "ner + spancat" in result["what"]
    assert 0 < result["trainable_parameters"]
    table = (out.parent / "benchmark.md").read_text()
    assert "| training | `benchmark_training_tiny.json` |" in table
