"""Helpers of the `spacy unmask apply` tests: inputs, reading shards back, pipelines that fail."""
import json
import os
from pathlib import Path

import spacy

from spacy_unmask.annotate import apply_pipeline

from .pipelines import TRAIN
from .util import ROOT

TEXTS = [text for text, _ in TRAIN] * 6 + ["", "   ", "Obama 😀 visited Paris !", "new\u00a0line\ttab"]


def write_jsonl(path, texts, start=0):
    path.write_text("".join(json.dumps({"id": f"doc{start + i}", "text": t}, ensure_ascii=False) + "\n"
                            for i, t in enumerate(texts)))
    return path


def shard_rows(folder):
    return [json.loads(line) for shard in sorted(folder.glob("shard-*.jsonl")) for line in shard.read_text().splitlines()]


def manifest(folder):
    return json.loads((Path(folder) / "manifest.json").read_text())


def apply(model, source, out, **kwargs):
    kwargs.setdefault("block_size", 8)
    kwargs.setdefault("batch_size", 4)
    return apply_pipeline(str(model), source, out, progress=False, **kwargs)


def crash_site(folder: Path) -> str:
    """A PYTHONPATH entry whose `sitecustomize` registers `tests/crashing.py` in every new interpreter."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sitecustomize.py").write_text(f"import sys\nsys.path.insert(0, {str(ROOT)!r})\nimport tests.crashing\n")
    return os.pathsep.join(p for p in (str(folder), os.environ.get("PYTHONPATH", "")) if p)


def crashing_pipeline(trained: Path, folder: Path, marker: str = "") -> Path:
    """The trained pipeline with `test_crash_on` appended (every time, or once with a `marker` path)."""
    from . import crashing  # noqa: F401  registers the factory here too

    nlp = spacy.load(trained)
    nlp.add_pipe("test_crash_on", config={"text": "CRASH", "marker": marker})
    nlp.to_disk(folder)
    return folder
