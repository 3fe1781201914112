"""The sweep's machinery in --quick mode: every run, the report, and resuming."""
import json
import subprocess
import sys

import pytest

from .test_project import ROOT, WNUT, needs_model, needs_wnut, script

ENCODER = WNUT.parent.parent / "minilm-l6"


@needs_model
@needs_wnut
@pytest.mark.skipif(not (ENCODER / "config.json").is_file(), reason=f"{ENCODER} not cached: run scripts/fetch_assets.py")
def test_quick_sweep_writes_every_run_a_table_and_a_plot_and_resumes(tmp_path):
    script("scripts/convert_wnut.py", WNUT, tmp_path / "corpus")
    out = tmp_path / "reports" / "sweep"
    args = ["scripts/sweep.py", "--quick", "--corpus", tmp_path / "corpus", "--out", out]
    script(*args)
    runs = {p.stem: json.loads(p.read_text()) for p in out.glob("*.json")}
    specs = {r["spec"] for r in runs.values() if r["family"] == "decoder"}
    assert specs == {"none", "all", "first_half", "second_half", "1000", "0100", "0010", "0001", "repeat2"}
    assert {r["family"] for r in runs.values()} == {"decoder", "minilm", "tok2vec"}
    by_spec = {r["spec"]: r for r in runs.values() if r["family"] == "decoder" and r["seed"] == 0}
    # quick runs keep 4 layers: the patterns must reach the model with their zeros
    assert by_spec["0010"]["unmasked_layers"] == "2" and by_spec["0001"]["unmasked_layers"] == "3"
    assert by_spec["repeat2"]["unmasked_layers"] == "-"
    for record in runs.values():
        assert 0.0 <= record["test"]["ents_f"] <= 1.0 and record["train_seconds"] > 0
    table = out.with_suffix(".md").read_text()
    assert table.startswith("| system | layers unmasked |")
    assert all(f"| {name} |" in table for name in ("none", "0010", "repeat2", "minilm", "tok2vec"))
    assert "Budget: NER only" in table and "Best decoder spec on dev" in table and "margin over minilm" in table
    assert out.with_suffix(".png").read_bytes()[:4] == b"\x89PNG"
    assert not (out / "training").exists() or not any((out / "training").iterdir()), "scored models are dropped"
    again = subprocess.run([sys.executable, *map(str, args)], cwd=ROOT, capture_output=True, text=True)
    assert again.returncode == 0 and "training " not in again.stdout
