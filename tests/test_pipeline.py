"""The architecture inside a real spaCy pipeline: train, predict, save, load."""
import shutil

import pytest
import spacy

from spacy_unmask.errors import ConfigError

from .pipelines import TEXTS, assert_same_predictions, build_nlp, examples, train
from .util import build_model_dir


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A pipeline trained on a model folder that is then deleted."""
    folder = build_model_dir(tmp_path_factory.mktemp("gone") / "llama", "llama", seed=1)
    nlp = build_nlp(folder, unmask="second_half")
    losses = train(nlp)
    shutil.rmtree(folder)
    return nlp, losses


def test_ner_training_lowers_the_loss(trained):
    _, losses = trained
    assert losses[-1] < 0.5 * losses[0]


def test_to_disk_and_load_give_identical_predictions_without_the_model_folder(trained, tmp_path):
    nlp, _ = trained
    nlp.to_disk(tmp_path / "pipeline")
    assert_same_predictions(nlp, spacy.load(tmp_path / "pipeline"))


def test_to_bytes_and_from_bytes_give_identical_predictions(trained):
    nlp, _ = trained
    data = nlp.to_bytes()
    restored = spacy.util.load_model_from_config(nlp.config, auto_fill=True)
    restored.from_bytes(data)
    assert_same_predictions(nlp, restored)


def test_lora_trains_only_adapters_and_round_trips(tiny_llama, tmp_path):
    nlp = build_nlp(tiny_llama, unmask="all", lora={"r": 4, "alpha": 8, "dropout": 0.0})
    losses = train(nlp)
    assert losses[-1] < 0.5 * losses[0]
    module = nlp.get_pipe("transformer").model.transformer
    trainable = {n for n, p in module.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
    nlp.to_disk(tmp_path / "lora")
    assert_same_predictions(nlp, spacy.load(tmp_path / "lora"))


def test_awkward_docs_get_a_vector_for_every_token(trained):
    nlp, _ = trained
    texts = ["", "   ", "\n\n", "😀😀 🙃", "Hi  there ,\tyou !", "x" * 300]
    for doc in nlp.pipe(texts):
        assert len(doc._.trf_data.align) == len(doc)
        for token in doc:
            if not token.is_space:
                assert doc._.trf_data.align[token.i].lengths[0] > 0, (doc.text, token.text)


def test_a_doc_longer_than_the_window_is_labeled_whole(trained):
    nlp, _ = trained
    words = ("Barack Obama visited Paris last week . " * 60).split()
    doc = nlp(" ".join(words))
    assert len(doc) > 300  # the default window is 128 tokens
    lengths = doc._.trf_data.align.lengths
    assert all(lengths[t.i] > 0 for t in doc)


def test_unmask_beyond_the_layers_fails_when_the_config_is_loaded(tiny_llama):
    with pytest.raises(ConfigError, match=r"unmask='9-12'.*keeps 4 layers"):
        build_nlp(tiny_llama, unmask="9-12")


def test_a_name_that_is_not_a_local_path_fails_at_initialize():
    nlp = build_nlp("HuggingFaceTB/SmolLM2-135M", unmask="none")
    with pytest.raises(ConfigError, match=r"name='HuggingFaceTB/SmolLM2-135M'.*never downloads"):
        nlp.initialize()


def test_replaced_listeners_save_and_load_as_their_own_decoder(tiny_llama):
    nlp = build_nlp(tiny_llama, unmask="second_half")
    train(nlp, steps=3)
    nlp.replace_listeners("transformer", "ner", ["model.tok2vec"])
    tok2vec_cfg = nlp.config["components"]["ner"]["model"]["tok2vec"]
    assert tok2vec_cfg["@architectures"] == "spacy-unmask.Tok2VecDecoder.v1"
    assert tok2vec_cfg["unmask"] == "second_half" and "pooling" in tok2vec_cfg
    restored = spacy.util.load_model_from_config(nlp.config, auto_fill=True)
    restored.from_bytes(nlp.to_bytes())
    docs_a, docs_b = list(nlp.pipe(TEXTS)), list(restored.pipe(TEXTS))
    for a, b in zip(docs_a, docs_b):
        assert [(e.start, e.end, e.label_) for e in a.ents] == [(e.start, e.end, e.label_) for e in b.ents]


def test_each_optimizer_step_leaves_the_decoder_with_zero_gradients(tiny_llama):
    # (that the step gives thinc's weights is pinned in test_optimizer.py)
    spacy.util.fix_random_seed(0)
    nlp = build_nlp(tiny_llama)
    data = examples(nlp)
    optimizer = nlp.initialize(lambda: data)
    module = nlp.get_pipe("transformer").model.transformer
    for _ in range(3):
        # spacy train's step: update every component, then each one's optimizer step
        nlp.update(data, sgd=False)
        assert any(p.grad is not None and p.grad.any() for p in module.parameters())
        for _, proc in nlp.pipeline:
            proc.finish_update(optimizer)
        assert not any(p.grad is not None and p.grad.any() for p in module.parameters())
