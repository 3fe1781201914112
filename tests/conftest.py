"""The session's fixtures: the tiny random decoders of every supported family (tests/util.py builds
them) and a small pipeline trained on the tiny Llama."""
from pathlib import Path

import pytest

from .pipelines import build_nlp, train
from .util import FAMILIES, build_model_dir


@pytest.fixture(scope="session")
def tiny_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    return {family: build_model_dir(root / family, family) for family in FAMILIES}


@pytest.fixture(scope="session")
def tiny_llama(tiny_dirs) -> Path:
    return tiny_dirs["llama"]


@pytest.fixture(scope="session")
def trained_tiny_pipeline(tiny_llama, tmp_path_factory) -> Path:
    """A transformer + ner pipeline on the tiny Llama, trained to predict some entities, on disk."""
    nlp = build_nlp(tiny_llama)
    train(nlp, steps=30)
    path = tmp_path_factory.mktemp("trained") / "nlp"
    nlp.to_disk(path)
    return path
