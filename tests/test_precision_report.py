"""scripts/precision_report.py: the bf16-against-float32 table from the seed files."""
import json

from .util import script


def write(folder, precision, seed, ner, spans, seconds):
    record = {"ents_f": ner, "spans_sc_f": spans, "train_wall_s": seconds, "seed": seed, "training_precision": precision}
    (folder / f"{precision}_seed{seed}.json").write_text(json.dumps(record))


def test_the_report_gives_each_seed_the_means_and_the_difference(tmp_path):
    for seed, (a, b) in enumerate([(0.40, 0.42), (0.44, 0.40), (0.42, 0.41)]):
        write(tmp_path, "bf16", seed, a, 0.30, 300 + seed)
        write(tmp_path, "fp32", seed, b, 0.32, 500)
    out = tmp_path / "precision.md"
    script("scripts/precision_report.py", "--metrics", tmp_path, "--output", out)
    text = out.read_text()
    assert "| bf16 autocast (shipped) | 3 | 40.0, 44.0, 42.0 | 42.0 ± 2.0 | 30.0, 30.0, 30.0 | 30.0 ± 0.0 | 301 |" in text
    assert "| float32 | 3 | 42.0, 40.0, 41.0 | 41.0 ± 1.0 |" in text
    assert "NER: bf16 - float32 = +1.0 F1" in text and "SpanCat: bf16 - float32 = -2.0 F1" in text
