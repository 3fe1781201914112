"""Stored weights in bfloat16/float16 (`dtype`) and recomputed activations (`gradient_checkpointing`)."""
import warnings

import numpy
import pytest
import spacy
import torch
from thinc.api import SGD

from spacy_unmask import optimizer as optimizer_module
from spacy_unmask.errors import ConfigError

from .pipelines import build_nlp, examples, spacy_train_steps, train

TEXTS = ["Apple opened a store in Berlin .", "Obama 😀 visited Paris !", "", "   "]


def module_of(nlp):
    return nlp.get_pipe("transformer").model.transformer


def entities(nlp):
    return [[(e.start, e.end, e.label_) for e in doc.ents] for doc in nlp.pipe(TEXTS)]


def weights_file_size(folder) -> int:
    return sum(f.stat().st_size for f in (folder / "transformer").rglob("*") if f.is_file())


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_dtype_stores_the_decoder_weights_in_that_precision(tiny_llama, dtype):
    nlp = build_nlp(tiny_llama, extra=f'dtype = "{dtype}"')
    nlp.initialize(lambda: examples(nlp))
    assert {p.dtype for p in module_of(nlp).parameters()} == {getattr(torch, dtype)}
    # RoPE's inverse frequencies stay float32, as transformers keeps them
    assert module_of(nlp).transformer.rotary_emb.inv_freq.dtype == torch.float32
    # listeners still get float32 (numpy has no bfloat16)
    doc = nlp("Apple opened a store in Berlin .")
    assert doc._.trf_data.model_output.last_hidden_state.dtype == numpy.float32


def test_bfloat16_pipeline_trains_saves_at_half_the_size_and_loads_identically(tiny_llama, tmp_path):
    full = build_nlp(tiny_llama)
    train(full, steps=3)
    full.to_disk(tmp_path / "float32")
    half = build_nlp(tiny_llama, extra='dtype = "bfloat16"', inference_dtype="bfloat16")
    losses = train(half, steps=30)
    assert losses[-1] < 0.5 * losses[0]
    assert {p.dtype for p in module_of(half).parameters()} == {torch.bfloat16}
    half.to_disk(tmp_path / "bfloat16")
    ratio = weights_file_size(tmp_path / "bfloat16") / weights_file_size(tmp_path / "float32")
    assert 0.45 < ratio < 0.6, ratio
    loaded = spacy.load(tmp_path / "bfloat16")
    assert {p.dtype for p in module_of(loaded).parameters()} == {torch.bfloat16}
    assert entities(loaded) == entities(half)
    for a, b in zip(half.pipe(TEXTS), loaded.pipe(TEXTS)):
        if a._.trf_data.model_output:
            numpy.testing.assert_array_equal(a._.trf_data.model_output.last_hidden_state,
                                             b._.trf_data.model_output.last_hidden_state)


def test_a_bad_dtype_is_refused_naming_the_key(tiny_llama):
    with pytest.raises(ConfigError, match="dtype='float64'.*float32, bfloat16, float16"):
        build_nlp(tiny_llama, extra='dtype = "float64"')


def test_an_optimizer_thinc_must_apply_cannot_update_half_precision_weights(tiny_llama, monkeypatch):
    monkeypatch.setattr(optimizer_module, "_NOTIFIED", set())
    nlp = build_nlp(tiny_llama, extra='dtype = "bfloat16"')
    optimizer = SGD(1e-2, use_averages=False)
    nlp.initialize(lambda: examples(nlp), sgd=optimizer)
    nlp.update(examples(nlp), sgd=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ValueError, match="bfloat16.*Adam"):
            nlp.get_pipe("transformer").finish_update(optimizer)


def test_gradient_checkpointing_trains_to_the_same_weights_and_round_trips(tiny_llama, tmp_path):
    def trained(checkpointing: bool):
        spacy.util.fix_random_seed(0)
        nlp = build_nlp(tiny_llama, unmask="0101", extra=f"gradient_checkpointing = {str(checkpointing).lower()}")
        optimizer = nlp.initialize(lambda: examples(nlp))
        spacy_train_steps(nlp, optimizer, steps=3)
        return nlp

    plain, recomputed = trained(False), trained(True)
    module = module_of(recomputed)
    base = getattr(module.transformer, "base_model", module.transformer)
    assert base.gradient_checkpointing and not module_of(plain).transformer.gradient_checkpointing
    a = dict(module_of(plain).named_parameters())
    for name, param in module.named_parameters():
        torch.testing.assert_close(param, a[name], rtol=1e-4, atol=1e-5, msg=name)
    recomputed.to_disk(tmp_path / "ckpt")
    loaded = spacy.load(tmp_path / "ckpt")
    assert module_of(loaded).transformer.gradient_checkpointing
    assert entities(loaded) == entities(recomputed)


def test_gradient_checkpointing_recomputes_the_unmasked_layers_in_backward(tiny_llama):
    nlp = build_nlp(tiny_llama, unmask="all", extra="gradient_checkpointing = true")
    nlp.initialize(lambda: examples(nlp))
    calls = []
    layers = module_of(nlp).transformer.layers
    handles = [layer.register_forward_pre_hook(lambda *a: calls.append(1)) for layer in layers]
    nlp.update(examples(nlp), sgd=False)
    for h in handles:
        h.remove()
    # each layer runs once forward and once more when backward recomputes it
    assert len(calls) == 2 * len(layers)


def test_gradient_checkpointing_must_be_a_bool(tiny_llama):
    from confection import ConfigValidationError

    from spacy_unmask import DecoderSettings, LayerGroups

    with pytest.raises(ConfigValidationError, match="gradient_checkpointing"):
        build_nlp(tiny_llama, extra='gradient_checkpointing = "yes"')
    with pytest.raises(ConfigError, match="gradient_checkpointing='yes'"):
        DecoderSettings(unmask=LayerGroups.parse("none"), gradient_checkpointing="yes")
