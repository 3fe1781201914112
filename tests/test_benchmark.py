"""The benchmark scripts on a tiny random decoder: the ratios, the roofline, peak memory, the report row."""
import json

import pytest
import torch

from spacy_unmask.precision import native_bf16

from .util import WNUT, needs_wnut, script


def read(out):
    return json.loads(out.read_text())


def assert_measured(result, unit):
    assert result["unit"] == unit and result["ours_per_s"] > 0 and result["bare_per_s"] > 0
    assert abs(result["ratio"] - result["ours_per_s"] / result["bare_per_s"]) < 0.01
    assert result["ours_peak_memory_mb"] > 0 and result["bare_peak_memory_mb"] > 0
    assert result["memory_kind"] == "CPU, peak RSS"
    assert result["matmul_gflops"]["fp32"] > 0 and result["matmul_gflops"]["bf16"] > 0
    assert all(0 < f < 1 for f in result["roofline_fraction"].values()), result["roofline_fraction"]


@pytest.mark.slow
@needs_wnut
def test_inference_benchmark_compares_nlp_pipe_with_the_bare_forward(tiny_llama, tmp_path):
    out = tmp_path / "reports" / "benchmark_inference_tiny.json"
    script("scripts/benchmark_inference.py", tiny_llama, "--texts", "24", "--batch-size", "8",
           "--unmask", "0110", "--rounds", "1", "--passes", "1", "--output", out)
    result = read(out)
    assert_measured(result, "words")
    assert result["texts"] == 24 and result["layers"] == 4 and result["unmask"] == "0110"
    assert set(result["roofline_fraction"]) == {"ours", "ours_fp32", "bare", "bare_bf16"}
    assert result["ours_fp32_per_s"] > 0 and result["bare_bf16_per_s"] > 0
    # the pipeline as loaded runs as `inference_dtype = "auto"` decides on this machine
    native = native_bf16(torch.device("cpu"))[0]
    assert result["inference_dtype"] == "auto" and result["precision"] == ("bf16" if native else "fp32")
    expected = result["bare_bf16_per_s"] if native else result["bare_per_s"]
    assert abs(result["ratio_same_precision"] - result["ours_per_s"] / expected) < 0.01
    assert f"| `benchmark_inference_tiny.json` | nlp.pipe ({result['precision']}) vs bare forward" in (
        out.parent / "benchmark.md").read_text()


@pytest.mark.slow
@needs_wnut
def test_training_benchmark_runs_spacys_loop_the_bare_step_and_the_reference_loop(tiny_llama, tmp_path):
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
    assert result["reference_per_s"] > 0 and result["reference_peak_memory_mb"] > 0
    assert abs(result["ratio_reference"] - result["ours_per_s"] / result["reference_per_s"]) < 0.01
    assert set(result["roofline_fraction"]) == {"ours", "ours_fp32", "bare", "reference"}
    # spaCy's loop ran twice, as configured and in float32, side by side
    assert result["ours_fp32_per_s"] > 0
    assert abs(result["speedup_over_fp32"] - result["ours_per_s"] / result["ours_fp32_per_s"]) < 0.01
    native = native_bf16(torch.device("cpu"))[0]
    assert result["precision"] == ("bf16" if native else "fp32")  # the shipped CPU configs autocast
    assert result["flops_per_piece"] > 0
    # length-sorted batches pad less than the config's batcher can, and nothing pads below x1
    assert 1.0 <= result["padding"]["reference"] <= result["padding"]["ours"]
    table = (out.parent / "benchmark.md").read_text()
    assert "| `benchmark_training_tiny.json` | spacy train loop" in table


@pytest.mark.slow
@needs_wnut
def test_training_ablation_turns_back_each_speed_up_by_config_alone(tiny_llama, tmp_path):
    script("scripts/convert_wnut.py", WNUT, tmp_path / "corpus")
    out = tmp_path / "reports" / "benchmark_training_ablation.json"
    script("scripts/benchmark_training.py", "configs/cpu.cfg", "--ablate", "--steps", "1", "--warmup", "1", "--rounds", "1",
           "--paths.model", tiny_llama, "--paths.train", tmp_path / "corpus" / "train.spacy",
           "--paths.dev", tmp_path / "corpus" / "dev.spacy", "--components.transformer.model.n_layers", "null",
           "--output", out)
    variants = read(out)["variants"]
    assert list(variants) == ["shipped config", "decoder step through thinc's optimizer",
                              "batches by words (size 400, buffer 256)", "heads on blis",
                              "float32 (no bf16 autocast)", "sdpa attention", "dense embedding gradient"]
    assert all(v["pieces_per_s"] > 0 for v in variants.values())
    # word batches pad more than piece batches: the override reached the child
    assert variants["batches by words (size 400, buffer 256)"]["padding"] > variants["shipped config"]["padding"]
    assert "| heads on blis |" in (out.parent / "benchmark.md").read_text()


def test_pipelines_are_measured_side_by_side_with_spacys_benchmark(trained_tiny_pipeline, tmp_path):
    import spacy
    from spacy.tokens import DocBin

    nlp = spacy.blank("en")
    data = tmp_path / "texts.spacy"
    DocBin(docs=[nlp(t) for t in ("Apple opened a store in Berlin .", "I love New York 😀", "ok")]).to_disk(data)
    out = tmp_path / "versus.json"
    script("scripts/benchmark_versus.py", f"first={trained_tiny_pipeline}", f"second={trained_tiny_pipeline}",
           "--data", data, "--rounds", "2", "--n-batches", "2", "--batch-size", "2", "--warmup", "0", "--output", out)
    result = json.loads(out.read_text())
    assert list(result["pipelines"]) == ["first", "second"]
    for figures in result["pipelines"].values():
        assert len(figures["rounds"]) == 2 and all(wps > 0 for wps in figures["rounds"])
        assert figures["pipes"] == ["transformer", "ner"]
    table = out.with_suffix(".md").read_text().splitlines()
    assert [row.split(" | ")[0] for row in table if row.startswith("| first") or row.startswith("| second")] == ["| first", "| second"]


def test_a_pipeline_not_named_name_equals_path_is_refused():
    result = script("scripts/benchmark_versus.py", "training/cpu/model-best", check=False)
    assert result.returncode != 0 and "NAME=PATH" in result.stderr
