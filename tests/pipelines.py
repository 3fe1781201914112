"""Small spaCy pipelines on the tiny decoders, shared by the pipeline tests."""
import random
from pathlib import Path
from typing import Optional

import numpy
import spacy
from spacy.training import Example
from thinc.api import Config

from pipeline_config import decoder_ner_config

TRAIN = [
    ("Apple opened a new store in Berlin .", [(0, 5, "ORG"), (28, 34, "LOC")]),
    ("Barack Obama visited Paris last week .", [(0, 12, "PER"), (21, 26, "LOC")]),
    ("Microsoft and Google compete .", [(0, 9, "ORG"), (14, 20, "ORG")]),
    ("I love New York so much .", [(7, 15, "LOC")]),
]

# the training texts and some awkward ones (emoji, empty, blank, one letter)
TEXTS = [text for text, _ in TRAIN] + ["Obama loves Berlin 😀 !!", "", "   ", "a"]


def vectors(nlp, texts=TEXTS):
    docs = list(nlp.pipe(texts))
    return docs, [getattr(d._.trf_data.model_output, "last_hidden_state", None) for d in docs]


def assert_same_predictions(nlp_a, nlp_b):
    docs_a, vec_a = vectors(nlp_a)
    docs_b, vec_b = vectors(nlp_b)
    for da, db, va, vb in zip(docs_a, docs_b, vec_a, vec_b):
        assert [(e.start, e.end, e.label_) for e in da.ents] == [(e.start, e.end, e.label_) for e in db.ents]
        if va is None:
            assert vb is None
        else:
            numpy.testing.assert_allclose(va, vb, atol=1e-5)


def config_text(
    name: Path, unmask: str = "second_half", lora: Optional[dict] = None, extra: str = "", top: str = "",
    inference_dtype: str = "float32",
) -> str:
    """A transformer + ner config; `extra` goes into the decoder's block, `top` after `[nlp]`.

    `inference_dtype` is "float32" here, so a saved and loaded pipeline computes exactly what
    the live one did; `tests/test_inference_precision.py` pins the shipped default ("auto")."""
    lora_block = ""
    if lora:
        lora_block = "[components.transformer.model.lora]\n@misc = \"spacy-unmask.LoRA.v1\"\n" + "".join(
            f"{k} = {v}\n" for k, v in lora.items()
        )
    decoder_lines = f'inference_dtype = "{inference_dtype}"\n{extra}\n{lora_block}'
    return decoder_ner_config(name, unmask, hidden_width=16, decoder_lines=decoder_lines, top=top)


def build_nlp(name: Path, **kwargs):
    config = Config().from_str(config_text(name, **kwargs))
    return spacy.util.load_model_from_config(config, auto_fill=True, validate=True)


def examples(nlp):
    return [Example.from_dict(nlp.make_doc(text), {"entities": ents}) for text, ents in TRAIN]


def train(nlp, steps: int = 30, seed: int = 0, lr: float = 3e-3):
    """A few updates; returns the NER loss of each step."""
    random.seed(seed)
    spacy.util.fix_random_seed(seed)
    data = examples(nlp)
    optimizer = nlp.initialize(lambda: data)
    optimizer.learn_rate = lr
    losses = []
    for _ in range(steps):
        step = {}
        nlp.update(data, sgd=optimizer, losses=step)
        losses.append(step["ner"])
    return losses


def spacy_train_steps(nlp, optimizer, steps: int = 4):
    """`spacy train`'s update order: every component's update, then every optimizer step.

    (`nlp.update(sgd=...)` steps each component right after its own update, so the
    decoder would step before its listeners backpropagate.) Returns the decoder's
    trainable weights after the steps.
    """
    data = examples(nlp)
    for _ in range(steps):
        nlp.update(data, sgd=False, drop=0.0)
        for _, proc in nlp.pipeline:
            proc.finish_update(optimizer)
        optimizer.step_schedules()
    module = nlp.get_pipe("transformer").model.transformer
    return {name: p.detach().clone() for name, p in module.named_parameters() if p.requires_grad}
