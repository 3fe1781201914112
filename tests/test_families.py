"""Every supported family through the whole pipeline: each feature the config offers, trained,
saved, loaded by `spacy.load`, with listeners replaced; LoRA's default targets per family.

(The mask semantics per family are pinned in test_masking.py, the alignment of each kind of
tokenizer in test_alignment.py.)
"""
import numpy
import pytest
import spacy
import torch
from spacy.training import Example

from spacy_unmask.errors import ConfigError
from spacy_unmask.families import FAMILIES as SUPPORTED
from spacy_unmask.lora import apply_lora
from spacy_unmask.settings import LoraSettings
from transformers import AutoModel

from .util import FAMILIES
from .pipelines import TRAIN, build_nlp, train

TEXTS = [text for text, _ in TRAIN] + ["Obama loves Berlin 😀 !!", "naïve café\tZürich\n🙃", "", "   "]


def attention(family: str) -> str:
    return "eager" if family == "gemma2" else "sdpa"  # Gemma 2's soft-capping needs eager


def predictions(nlp):
    docs = list(nlp.pipe(TEXTS))
    ents = [[(e.start, e.end, e.label_) for e in d.ents] for d in docs]
    states = [d._.trf_data.model_output.last_hidden_state if d._.trf_data.model_output else None for d in docs]
    return ents, states


def assert_same(a, b):
    ents_a, states_a = predictions(a)
    ents_b, states_b = predictions(b)
    assert ents_a == ents_b
    for x, y in zip(states_a, states_b):
        assert (x is None) == (y is None)
        if x is not None:
            numpy.testing.assert_allclose(x, y, atol=1e-5)


def test_the_tests_cover_every_supported_family():
    assert set(FAMILIES) == set(SUPPORTED)


@pytest.mark.parametrize("family", FAMILIES)
def test_every_feature_trains_saves_loads_and_replaces_listeners(tiny_dirs, family, tmp_path):
    extra = (f'attn_implementation = "{attention(family)}"\nn_layers = 3\nrepeat = 2\n'
             "gradient_checkpointing = true\n")
    nlp = build_nlp(tiny_dirs[family], unmask="001", extra=extra)
    losses = train(nlp, steps=6)
    assert all(numpy.isfinite(losses)) and min(losses[1:]) < losses[0], losses
    module = nlp.get_pipe("transformer").model.transformer
    assert module.config.num_hidden_layers == 3 and module.unmasked_layers == frozenset({2})
    nlp.to_disk(tmp_path / "nlp")
    loaded = spacy.load(tmp_path / "nlp")
    assert_same(nlp, loaded)
    loaded.replace_listeners("transformer", "ner", ["model.tok2vec"])
    restored = spacy.util.load_model_from_config(loaded.config, auto_fill=True)
    restored.from_bytes(loaded.to_bytes())
    assert [[(e.start, e.end) for e in d.ents] for d in restored.pipe(TEXTS)] == \
        [[(e.start, e.end) for e in d.ents] for d in loaded.pipe(TEXTS)]


@pytest.mark.parametrize("family", FAMILIES)
def test_lora_with_the_family_default_targets_trains_only_adapters_in_bfloat16(tiny_dirs, family, tmp_path):
    lora = {"r": 4, "alpha": 8, "dropout": 0.0}  # no target_modules: the family's own
    extra = f'attn_implementation = "{attention(family)}"\ndtype = "bfloat16"\n'
    nlp = build_nlp(tiny_dirs[family], unmask="all", lora=lora, extra=extra, inference_dtype="bfloat16")
    train(nlp, steps=4)
    module = nlp.get_pipe("transformer").model.transformer
    trainable = [n for n, p in module.named_parameters() if p.requires_grad]
    targets = SUPPORTED[family].lora_targets
    assert trainable and all(".lora_" in n for n in trainable)
    assert {n.split(".lora_")[0].rsplit(".", 1)[-1] for n in trainable} == set(targets)
    assert all(p.dtype == torch.bfloat16 for n, p in module.named_parameters() if not p.requires_grad and p.dim() > 1)
    nlp.to_disk(tmp_path / "nlp")
    loaded = spacy.load(tmp_path / "nlp")
    # the loaded decoder holds every trained weight as stored: bfloat16 (peft keeps the live
    # adapters in float32; how close bf16 vectors come to fp32 is pinned in test_inference_precision)
    stored = {n: p.detach().to(torch.bfloat16) for n, p in module.named_parameters()}
    for name, param in loaded.get_pipe("transformer").model.transformer.named_parameters():
        assert torch.equal(param.detach(), stored[name]), name
    for x, y in zip(predictions(nlp)[1], predictions(loaded)[1]):
        assert (x is None) == (y is None) and (x is None or x.shape == y.shape)


def test_targets_that_match_nothing_name_the_key_the_family_and_its_modules(tiny_dirs):
    model = AutoModel.from_pretrained(str(tiny_dirs["phi3"]))
    with pytest.raises(ConfigError, match=r"lora\.target_modules.*\['q_proj', 'v_proj'\] are not linear layers of "
                                          r"this phi3 model.*'qkv_proj'.*default, \['qkv_proj'\]"):
        apply_lora(model, LoraSettings(target_modules=["q_proj", "v_proj"]))


@pytest.mark.parametrize("value", ["q_proj", [], [""]])
def test_malformed_lora_targets_are_refused_when_the_config_loads(value):
    with pytest.raises(ConfigError, match=r"lora\.target_modules.*null \(the model family's default\)"):
        LoraSettings(target_modules=value)


@pytest.mark.parametrize("family", FAMILIES)
def test_a_padded_batch_gives_each_doc_its_own_vectors_in_the_pipeline(tiny_dirs, family):
    nlp = build_nlp(tiny_dirs[family], unmask="second_half", extra=f'attn_implementation = "{attention(family)}"\n')
    nlp.initialize(lambda: [Example.from_dict(nlp.make_doc(t), {"entities": e}) for t, e in TRAIN])
    def real_pieces(doc):
        return doc._.trf_data.model_output.last_hidden_state[:, : doc._.trf_data.wordpieces.lengths[0]]

    alone = [real_pieces(nlp(t)) for t in TEXTS[:4]]
    batch = [real_pieces(d) for d in nlp.pipe(TEXTS[:4], batch_size=4)]
    assert len({b.shape[1] for b in batch}) > 1  # the batch did pad
    for a, b in zip(alone, batch):
        numpy.testing.assert_allclose(a, b, atol=1e-5)


def test_gemma2_under_sdpa_is_refused_when_the_pipeline_config_loads(tiny_dirs):
    with pytest.raises(ConfigError, match=r"attn_implementation='sdpa'.*\"eager\".*attn_logit_softcapping"):
        build_nlp(tiny_dirs["gemma2"], extra='attn_implementation = "sdpa"\n')


def test_an_unsupported_model_type_is_refused_naming_the_supported_ones(tmp_path, tiny_llama):
    import shutil

    from transformers import GPT2Config

    folder = shutil.copytree(tiny_llama, tmp_path / "gpt2")
    GPT2Config(n_layer=2, n_embd=16, n_head=2, vocab_size=50).save_pretrained(folder)
    with pytest.raises(ConfigError, match=r"name='gpt2'.*gemma2, gemma3_text, phi3, olmo2, granite, smollm3"):
        build_nlp(folder)
