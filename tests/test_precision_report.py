"""scripts/precision_report.py: the bf16-against-float32 table from the seed files."""
import json

from .util import script


def write(folder, precision, seed, ner, spans, seconds, recipe):
    record = {"ents_f": ner, "spans_sc_f": spans, "train_wall_s": seconds, "seed": seed, "training_precision": precision,
              "recipe": recipe}
    (folder / f"{precision}_seed{seed}.json").write_text(json.dumps(record))


def test_the_report_gives_each_seed_the_means_and_the_difference(tmp_path):
    config = tmp_path / "cpu.cfg"
    config.write_text("[training]\nseed = 0\n")
    recipe = script("scripts/precision_report.py", "--config", config, "--recipe").stdout.strip()
    assert len(recipe) == 12
    for seed, (a, b) in enumerate([(0.40, 0.42), (0.44, 0.40), (0.42, 0.41)]):
        write(tmp_path, "bf16", seed, a, 0.30, 300 + seed, recipe)
        write(tmp_path, "fp32", seed, b, 0.32, 500, recipe)
    write(tmp_path, "bf16", 3, 0.99, 0.99, 1, "0ld0c0nf1g00")  # a run of another config
    out = tmp_path / "precision.md"
    script("scripts/precision_report.py", "--metrics", tmp_path, "--output", out, "--config", config)
    assert script("scripts/precision_report.py", "--recipe-of", tmp_path / "bf16_seed3.json").stdout.strip() == "0ld0c0nf1g00"
    text = out.read_text()
    assert f"digest {recipe}. 1 run(s) of another recipe left out." in text
    assert "| bf16 autocast (shipped) | 3 | 40.0, 44.0, 42.0 | 42.0 ± 2.0 | 30.0, 30.0, 30.0 | 30.0 ± 0.0 | 301 |" in text
    assert "| float32 | 3 | 42.0, 40.0, 41.0 | 41.0 ± 1.0 |" in text
    assert "NER: bf16 - float32 = +1.0 F1" in text and "SpanCat: bf16 - float32 = -2.0 F1" in text


def test_the_recipe_is_the_configs_settings_not_its_comments(tmp_path):
    config = tmp_path / "cpu.cfg"
    config.write_text("[training]\nseed = 0\n")
    before = script("scripts/precision_report.py", "--config", config, "--recipe").stdout.strip()
    config.write_text("# a note on the study\n[training]\n# kept\nseed = 0\n")
    assert script("scripts/precision_report.py", "--config", config, "--recipe").stdout.strip() == before
    config.write_text("[training]\nseed = 1\n")
    assert script("scripts/precision_report.py", "--config", config, "--recipe").stdout.strip() != before
