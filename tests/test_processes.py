"""Annotation in several processes (`nlp.pipe(n_process=2)`, `spacy apply --n-process 2`) and
what annotated docs keep (the shipped configs' doc_cleaner)."""
import json
import subprocess
import sys

import numpy
import pytest
import spacy
from spacy.tokens import DocBin
from thinc.api import Config

from .pipelines import TRAIN
from .util import ROOT

TEXTS = [text for text, _ in TRAIN] * 5 + ["", "   ", "Obama 😀 visited Paris !"]
SHIPPED = ["cpu", "cpu_lora", "cpu_repeat2", "gpu", "gpu_full"]

# Run in a child with a deadline: a hang fails the test instead of stalling the suite.
PIPE_IN_PROCESSES = r"""
import json, sys
import spacy
nlp = spacy.load(sys.argv[1])
texts = json.loads(sys.argv[2])
out = {}
for n in (1, 2):
    docs = list(nlp.pipe(texts, batch_size=4, n_process=n))
    out[n] = {"ents": [[(e.start, e.end, e.label_) for e in d.ents] for d in docs],
              "states": [d._.trf_data.model_output.last_hidden_state.tolist() if d._.trf_data.model_output else None
                         for d in docs]}
print(json.dumps(out))
"""


def test_nlp_pipe_with_two_processes_finishes_with_the_annotations_of_one(trained_tiny_pipeline):
    result = subprocess.run([sys.executable, "-c", PIPE_IN_PROCESSES, str(trained_tiny_pipeline), json.dumps(TEXTS)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    one, two = out["1"], out["2"]
    assert sum(map(len, one["ents"])) > 0, "a pipeline that predicts nothing would compare trivially"
    assert two["ents"] == one["ents"]
    for a, b in zip(one["states"], two["states"]):
        assert (a is None) == (b is None)
        if a is not None:  # one thread per worker sums in another order: equal up to rounding
            numpy.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    assert "forked, after parallelism has already been used" not in result.stderr


def test_spacy_apply_with_two_processes_finishes_with_the_annotations_of_one(trained_tiny_pipeline, tmp_path):
    source = tmp_path / "in.spacy"
    nlp = spacy.blank("en")
    DocBin(docs=[nlp.make_doc(t) for t in TEXTS]).to_disk(source)
    outputs = {}
    for n in (1, 2):
        out = tmp_path / f"out{n}.spacy"
        cmd = [sys.executable, "-m", "spacy", "apply", str(trained_tiny_pipeline), str(source), str(out), "--n-process", str(n),
               "--batch-size", "4"]
        result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr[-2000:]
        docs = list(DocBin().from_disk(out).get_docs(nlp.vocab))
        outputs[n] = [(d.text, [(e.start, e.end, e.label_) for e in d.ents]) for d in docs]
    assert outputs[2] == outputs[1] and len(outputs[1]) == len(TEXTS)


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_config_ends_with_spacys_doc_cleaner_dropping_the_hidden_states(name):
    config = Config().from_disk(ROOT / "configs" / f"{name}.cfg", interpolate=False)
    assert config["nlp"]["pipeline"][-1] == "doc_cleaner"
    cleaner = config["components"]["doc_cleaner"]
    assert cleaner["factory"] == "doc_cleaner" and cleaner["attrs"]["_.trf_data"] is None


def test_the_shipped_doc_cleaner_keeps_saved_docs_small_and_the_annotations_whole(trained_tiny_pipeline):
    nlp = spacy.load(trained_tiny_pipeline)
    shipped = Config().from_disk(ROOT / "configs" / "cpu.cfg", interpolate=False)["components"]["doc_cleaner"]
    before = list(nlp.pipe(TEXTS))
    nlp.add_pipe("doc_cleaner", config={k: v for k, v in shipped.items() if k != "factory"})
    after = list(nlp.pipe(TEXTS))
    assert [[(e.start, e.end, e.label_) for e in d.ents] for d in after] == \
        [[(e.start, e.end, e.label_) for e in d.ents] for d in before]

    def size(docs):
        return len(DocBin(docs=docs, store_user_data=True).to_bytes())

    assert all(d._.trf_data is None for d in after)
    assert size(after) < size(before) / 5, (size(after), size(before))
