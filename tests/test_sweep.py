"""The sweep: configs derived from the shipped recipe, the learning-rate rule, the report, and
the whole machinery in --quick mode (every run, resuming, a recipe change)."""
import json
import math
import subprocess
import sys
import time
from pathlib import Path

import pytest
from thinc.api import Config

import runs
import sweep_plan
import sweep_recipe
import sweep_report

from .util import ROOT, WNUT, needs_encoder, needs_model, needs_wnut, script


def shipped():
    return Config().from_disk(ROOT / "configs" / "cpu.cfg", interpolate=False)


def test_the_decoder_family_is_the_shipped_recipe_with_ner_alone():
    derived, recipe = sweep_recipe.family_config("decoder"), shipped()
    assert derived["nlp"]["pipeline"] == ["transformer", "ner"]
    assert derived["components"]["ner"] == recipe["components"]["ner"]
    model, shipped_model = derived["components"]["transformer"].pop("model"), recipe["components"]["transformer"].pop("model")
    assert derived["components"]["transformer"] == recipe["components"]["transformer"]
    shipped_model.pop("learn_rate_scale", None)
    assert "learn_rate_scale" not in model, "one rate for every weight, as for every family"
    assert model == {**shipped_model, "unmask": "none"}, "the decoder as shipped, at the causal base"
    training = {k: v for k, v in recipe["training"].items() if k != "score_weights"}
    assert {k: v for k, v in derived["training"].items() if k != "score_weights"} == training
    assert derived["training"]["score_weights"] == {"ents_f": 1.0, "ents_p": 0.0, "ents_r": 0.0, "ents_per_type": None}
    assert derived["nlp"]["after_pipeline_creation"] == recipe["nlp"]["after_pipeline_creation"]


@pytest.mark.parametrize("family", ["lora", "minilm", "tok2vec"])
def test_every_family_keeps_the_shipped_budget_and_a_recipe_change_reaches_it(family, tmp_path):
    derived = sweep_recipe.family_config(family)
    assert derived["training"]["batcher"] == shipped()["training"]["batcher"]
    assert derived["training"]["optimizer"] == shipped()["training"]["optimizer"]
    assert set(derived["components"]) == set(derived["nlp"]["pipeline"])
    if family == "lora":
        model = derived["components"]["transformer"]["model"]
        assert model["lora"]["target_modules"] == ["q_proj", "v_proj"] and model["n_layers"] == 15
    if family == "minilm":
        model = derived["components"]["transformer"]["model"]
        assert model["@architectures"] == "spacy-transformers.TransformerModel.v3" and "unmask" not in model
    if family == "tok2vec":
        assert derived["components"]["ner"]["model"]["tok2vec"]["@architectures"] == "spacy.Tok2VecListener.v1"
    changed = shipped()
    changed["training"]["max_epochs"] = 5
    changed.to_disk(tmp_path / "cpu.cfg")
    longer = sweep_recipe.family_config(family, tmp_path / "cpu.cfg")
    assert longer["training"]["max_epochs"] == 5
    assert sweep_recipe.digest(longer) != sweep_recipe.digest(derived)


@pytest.mark.parametrize("family", ["decoder", "lora"])
def test_the_shipped_default_spec_following_the_verdict_leaves_the_sweeps_runs_current(family, tmp_path):
    """Each run sets unmask and repeat itself: the shipped values of those are not the recipe."""
    changed = shipped()
    changed["components"]["transformer"]["model"].update({"unmask": "second_half", "repeat": 2})
    changed.to_disk(tmp_path / "cpu.cfg")
    derived = sweep_recipe.family_config(family, tmp_path / "cpu.cfg")
    assert sweep_recipe.digest(derived) == sweep_recipe.digest(sweep_recipe.family_config(family))
    assert derived["components"]["transformer"]["model"]["unmask"] == "none"
    assert "repeat" not in derived["components"]["transformer"]["model"]
    changed["components"]["transformer"]["model"]["n_layers"] = 10
    changed.to_disk(tmp_path / "cpu.cfg")
    assert sweep_recipe.digest(sweep_recipe.family_config(family, tmp_path / "cpu.cfg")) != sweep_recipe.digest(derived)


def test_the_shipped_lora_config_is_the_recipe_the_lora_table_measured():
    """cpu_lora.cfg = cpu.cfg + the sweep's adapters; only the rate, the spec, the ner head (the
    table's: spaCy's transition-based `ner`) and spancat's threshold (the table's: spaCy's 0.5)
    differ, and the adapters learn at that one rate as in the table (no `learn_rate_scale`)."""
    lora = Config().from_disk(ROOT / "configs" / "cpu_lora.cfg", interpolate=False)
    assert lora["components"]["transformer"]["model"]["lora"] == sweep_recipe.family_config("lora")["components"]["transformer"]["model"]["lora"]
    base = shipped()
    assert "learn_rate_scale" not in lora["components"]["transformer"]["model"]
    assert lora["components"]["ner"]["factory"] == "ner"
    assert lora["components"]["spancat"]["threshold"] == 0.5
    for config in (lora, base):
        config["components"]["ner"]["model"] = {"tok2vec": config["components"]["ner"]["model"]["tok2vec"]}
        config["components"]["ner"].pop("factory")
        config["components"]["ner"].pop("decoding", None)  # bio_ner's, which spaCy's ner has not
        config["components"]["transformer"]["model"].pop("learn_rate_scale", None)
        config["components"]["transformer"]["model"].pop("lora", None)
        config["components"]["transformer"]["model"].pop("unmask")
        config["training"]["optimizer"]["learn_rate"].pop("initial_rate")
        config["components"]["spancat"].pop("threshold")
    assert lora["components"] == base["components"] and lora["training"] == base["training"] and lora["nlp"] == base["nlp"]


def test_rates_step_along_the_1_2_5_series():
    assert [sweep_plan.neighbour_rate(r, up=True) for r in (1e-4, 2e-4, 5e-4)] == [2e-4, 5e-4, 1e-3]
    assert [sweep_plan.neighbour_rate(r, up=False) for r in (1e-3, 2e-3, 5e-3)] == [5e-4, 1e-3, 2e-3]


def fake_runs(dev_f1):
    """get(lr, seed) over a table {lr: [dev F1 per seed]} that records which runs were asked for."""
    asked = []

    def get(lr, seed):
        asked.append((lr, seed))
        return {"dev": {"ents_f": dev_f1(lr, seed)}}

    return get, asked


def test_a_rate_best_at_the_top_of_the_grid_widens_it_until_it_is_not():
    get, asked = fake_runs(lambda lr, seed: -abs(lr - 2e-3))  # peaks at 2e-3, above the grid
    rate, final = sweep_plan.choose_rate([1e-4, 2e-4, 5e-4], get)
    assert (rate, final) == (2e-3, True)
    assert {lr for lr, _ in asked} == {1e-4, 2e-4, 5e-4, 1e-3, 2e-3, 5e-3}


def test_a_rate_that_collapses_on_one_seed_loses_to_a_steady_one():
    table = {1e-4: [0.30, 0.30, 0.30], 2e-4: [0.40, 0.38, 0.39], 5e-4: [0.42, 0.43, 0.10], 1e-3: [0.2, 0.2, 0.2]}
    get, asked = fake_runs(lambda lr, seed: table[lr][seed])
    assert sweep_plan.choose_rate([1e-4, 2e-4, 5e-4], get) == (2e-4, True)
    assert (1e-4, 1) not in asked, "only the two best rates on seed 0 get more seeds"


def test_missing_runs_make_the_choice_provisional():
    table = {1e-4: 0.3, 2e-4: 0.4}
    assert sweep_plan.choose_rate([1e-4, 2e-4, 5e-4], lambda lr, seed: {"dev": {"ents_f": table[lr]}} if lr in table and seed == 0 else None) == (2e-4, False)
    assert sweep_plan.choose_rate([1e-4], lambda lr, seed: None) == (None, False)


def record(family, spec, seed, test_f1, lr=2e-4):
    return {"family": family, "spec": spec, "learn_rate": lr, "seed": seed, "unmasked_layers": "-",
            "dev": {"ents_f": test_f1, "ents_p": 0.5, "ents_r": 0.5}, "test": {"ents_f": test_f1, "ents_p": 0.5, "ents_r": 0.5},
            "train_seconds": 100.0, "train_cpu_seconds": 190.0 + seed, "test_words_per_s": 500.0}


def test_rows_give_each_seed_the_mean_and_the_sample_sd_and_the_verdict_the_gap():
    records = [record("decoder", "none", s, f) for s, f in enumerate((0.30, 0.32, 0.34))]
    records += [record("decoder", "second_half", s, f) for s, f in enumerate((0.40, 0.42, 0.44))]
    records += [record("decoder", "none", 0, 0.9, lr=1e-4)]  # another rate: not in the rows
    rows = sweep_report.rows_at_rates(records, {"decoder": (2e-4, True, [1e-4, 2e-4])})
    by = {row["system"]: row for row in rows}
    assert by["none"]["test_f1s"] == pytest.approx([30.0, 32.0, 34.0]) and by["none"]["n"] == 3
    assert by["none"]["sd"] == pytest.approx(2.0) and by["second_half"]["f1"] == pytest.approx(42.0)
    lines = "\n".join(sweep_report.verdict(rows))
    assert "`second_half`" in lines and "+10.0 (standard error 1.6, so 6.1 standard errors; larger than the wider seed-to-seed sd of the two, 2.0)" in lines
    table = "\n".join(sweep_report.table(rows))
    assert "| second_half | - | 3 | 40.0, 42.0, 44.0 | 42.0 ± 2.0 |" in table
    assert "| 50.0 | 100 | 191 | 500 |" in table


def test_the_verdict_gives_the_lora_tables_winner_on_dev_and_its_margins():
    records = [record("decoder", spec, s, f + 0.02 * s) for spec, f in (("none", 0.30), ("second_half", 0.40)) for s in range(3)]
    records += [record("lora", "none", s, 0.20 + 0.02 * s, lr=1e-3) for s in range(3)]
    records += [record("lora", "all", s, 0.26 + 0.02 * s, lr=1e-3) for s in range(3)]
    records += [record("lora", "second_half", 0, 0.9, lr=1e-3)]  # one seed: not the winner, however high
    rates = {"decoder": (2e-4, True, [1e-4, 2e-4, 5e-4]), "lora": (1e-3, True, [5e-4, 1e-3, 2e-3])}
    rows = sweep_report.rows_at_rates(records, rates)
    assert sweep_report.best_on_dev(rows, "lora")["system"] == "all"
    lines = sweep_report.verdict(rows)
    assert "- LoRA: best spec on dev (mean over n=3 seeds): `all`, dev F1 28.0, test F1 28.0 ± 2.0." in lines
    assert any(line.startswith("- LoRA `all` − LoRA `none` on test: +6.0 (standard error 1.6") for line in lines)
    assert any(line.startswith("- LoRA `all` − full fine-tuning `second_half` on test: -14.0") for line in lines)


def test_busy_seconds_sum_the_busy_fields_of_proc_stat_and_leave_idle_out():
    # user nice system idle iowait irq softirq steal guest guest_nice, in ticks of 1/100 s
    assert runs.busy_seconds("cpu  100 20 30 1000 50 4 6 8 9 9", 100) == pytest.approx(1.68)
    assert runs.other_cpu_seconds(10.0, 30.0, 15.0) == 5.0
    assert runs.other_cpu_seconds(10.0, 12.0, 15.0) is None, "a /proc/stat that misses our own work is not trusted"
    assert runs.other_cpu_seconds(None, 30.0, 15.0) is None


def test_a_runs_code_version_is_its_checkouts_commit_and_says_when_the_package_has_changes(tmp_path):
    git = lambda *args: subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True, text=True)
    assert runs.code_version(tmp_path) is None, "not a checkout"
    git("init", "-q")
    (tmp_path / "spacy_unmask").mkdir()
    (tmp_path / "spacy_unmask" / "layer.py").write_text("A = 1\n")
    (tmp_path / "notes.md").write_text("x\n")
    git("add", "."), git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "one")
    head = git("rev-parse", "--short=12", "HEAD").stdout.strip()
    assert runs.code_version(tmp_path) == head
    (tmp_path / "notes.md").write_text("y\n")  # outside the package: the same code
    assert runs.code_version(tmp_path) == head
    (tmp_path / "spacy_unmask" / "layer.py").write_text("A = 2\n")
    assert runs.code_version(tmp_path) == head + "-dirty"


@pytest.mark.skipif(not Path("/proc/stat").is_file(), reason="no /proc/stat")
def test_the_machines_busy_seconds_count_this_process_working():
    before, start = runs.machine_busy_seconds(), time.process_time()
    while time.process_time() - start < 0.5:
        pass
    assert runs.machine_busy_seconds() - before >= 0.4


def test_costs_come_from_the_timed_runs_only():
    """Runs from before the sweep recorded CPU time shared the machine: their seconds are not costs."""
    shared = [{**record("decoder", "none", s, 0.3), "train_seconds": 3000.0, "test_words_per_s": 20.0} for s in range(3)]
    for r in shared:
        del r["train_cpu_seconds"]
    assert all(math.isnan(v) for v in sweep_report.costs(shared).values())
    mixed = shared[:2] + [record("decoder", "none", 2, 0.3)]
    assert sweep_report.costs(mixed) == {"seconds": 100.0, "cpu_seconds": 192.0, "words_per_s": 500.0}
    busy = [{**record("decoder", "none", s, 0.3), "other_cpu_seconds": o} for s, o in enumerate((5.0, 10.0, 0.0))]
    assert [sweep_report.alone(r) for r in busy] == [True, False, True]
    row = sweep_report.rows_at_rates(shared, {"decoder": (2e-4, True, [2e-4])})[0]
    assert sweep_report.table([row])[-1].endswith("| n/a | n/a | n/a |")


@pytest.mark.slow
@needs_model
@needs_wnut
@needs_encoder
def test_quick_sweep_trains_every_row_writes_the_report_resumes_and_retrains_an_old_recipe(tmp_path):
    script("scripts/convert_wnut.py", WNUT, tmp_path / "corpus")
    out = tmp_path / "reports" / "sweep"
    args = ["scripts/sweep.py", "--quick", "--corpus", tmp_path / "corpus", "--out", out]
    script(*args)
    runs = {p.stem: json.loads(p.read_text()) for p in out.glob("*.json")}
    specs = {r["spec"] for r in runs.values() if r["family"] == "decoder"}
    combined = [s for s in specs if s.startswith("repeat2+")]
    assert specs - set(combined) == set(sweep_plan.SPECS) and len(combined) == 1
    assert {r["spec"] for r in runs.values() if r["family"] == "lora"} == set(sweep_plan.LORA_SPECS)
    assert {r["family"] for r in runs.values()} == {"decoder", "lora", "minilm", "tok2vec"}
    by_spec = {r["spec"]: r for r in runs.values() if r["family"] == "decoder"}
    # quick runs keep 4 layers: the patterns must reach the model with their zeros
    assert by_spec["0010"]["unmasked_layers"] == "2" and by_spec["0001"]["unmasked_layers"] == "3"
    assert by_spec["repeat2"]["unmasked_layers"] == "-"
    for run in runs.values():
        assert 0.0 <= run["test"]["ents_f"] <= 1.0 and run["train_seconds"] > 0 and run["train_cpu_seconds"] > 0 and len(run["recipe"]) == 12
        assert run["other_cpu_seconds"] is not None or not Path("/proc/stat").is_file()
    report = out.with_suffix(".md").read_text()
    assert "| system | layers unmasked | n | test F1 per seed |" in report
    assert all(f"| {name} |" in report for name in ("none", "0010", "repeat2", combined[0], "minilm", "tok2vec"))
    assert "## LoRA on q and v" in report and "Best decoder spec on dev" in report
    assert out.with_suffix(".png").read_bytes()[:4] == b"\x89PNG"
    assert (out / "configs" / "decoder.cfg").read_text().startswith("# Generated by scripts/sweep_recipe.py")
    assert not (out / "training").exists() or not any((out / "training").iterdir()), "scored models are dropped"
    again = subprocess.run([sys.executable, *map(str, args)], cwd=ROOT, capture_output=True, text=True)
    assert again.returncode == 0 and "] training " not in again.stdout
    # a record of another recipe (the shipped config changed since) is trained again
    tok2vec = next(p for p in out.glob("tok2vec-*.json"))
    tok2vec.write_text(json.dumps({**json.loads(tok2vec.read_text()), "recipe": "0ld"}))
    third = subprocess.run([sys.executable, *map(str, args)], cwd=ROOT, capture_output=True, text=True)
    assert third.returncode == 0 and "of another recipe" in third.stdout
    assert third.stdout.count("] training ") == 1 and "] training tok2vec-" in third.stdout
