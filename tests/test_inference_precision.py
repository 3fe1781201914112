"""The decoder's precision chosen from the hardware: bfloat16 where it is native, float32 elsewhere.

The capability check is forced both ways (`precision.cpu_bf16_instructions`), so these
tests pin the decision on any CPU; the numbers compare bf16 with fp32 on the same weights.
"""
import warnings

import numpy
import pytest
import spacy
import torch

from spacy_unmask import precision
from spacy_unmask.errors import ConfigError
from spacy_unmask.precision import PrecisionNotice

from .pipelines import build_nlp, examples, train

TEXTS = ["Apple opened a store in Berlin .", "Obama 😀 visited Paris !", "", "   ", "I love New York so much ."]
# bf16 keeps 8 bits of mantissa (one rounding: up to 0.4% relative). Seen at the real pieces of
# the tiny decoder: cosine 0.99998 for words, 0.995 for the two pieces of a whitespace-only
# text; the real SmolLM2 (test_real_model.py) 0.996 at worst, 0.9997 on average.
MIN_COSINE = 0.99
MEAN_COSINE = 0.999
MAX_RELATIVE = 0.05  # |bf16 - fp32| / |fp32| over all real pieces (Frobenius)


def module_of(nlp):
    return nlp.get_pipe("transformer").model.transformer


def weight_dtypes(nlp):
    return {p.dtype for p in module_of(nlp).parameters()}


def hidden_states(nlp, texts=TEXTS):
    """Each doc's hidden states at its real pieces (a window's padding is no one's vector)."""
    return [
        doc._.trf_data.model_output.last_hidden_state[doc._.trf_data.wordpieces.attention_mask.astype(bool)]
        for doc in nlp.pipe(texts) if doc._.trf_data.model_output
    ]


def entities(nlp):
    return [[(e.start, e.end, e.label_) for e in doc.ents] for doc in nlp.pipe(TEXTS)]


def weights_file_size(folder) -> int:
    return sum(f.stat().st_size for f in (folder / "transformer").rglob("*") if f.is_file())


@pytest.fixture
def cpu_has_bf16(monkeypatch):
    monkeypatch.setattr(precision, "_NOTIFIED", set())
    monkeypatch.setattr(precision, "cpu_bf16_instructions", lambda: ("AVX512-BF16",))


@pytest.fixture
def cpu_lacks_bf16(monkeypatch):
    monkeypatch.setattr(precision, "_NOTIFIED", set())
    monkeypatch.setattr(precision, "cpu_bf16_instructions", lambda: ())


@pytest.fixture(scope="module")
def saved(tiny_llama, tmp_path_factory):
    """One trained float32 pipeline saved twice: as shipped (bf16 storage) and with float32 storage."""
    root = tmp_path_factory.mktemp("precision")
    nlp = build_nlp(tiny_llama, inference_dtype="auto")
    train(nlp, steps=20)
    nlp.to_disk(root / "auto")
    nlp.config["components"]["transformer"]["model"]["inference_dtype"] = "float32"
    nlp.get_pipe("transformer").model.attrs["settings"] = _with(nlp, inference_dtype="float32")
    nlp.to_disk(root / "float32")
    return {"auto": root / "auto", "float32": root / "float32", "live": nlp}


def _with(nlp, **changes):
    import dataclasses

    settings = nlp.get_pipe("transformer").model.attrs["settings"]
    module_of(nlp).settings = dataclasses.replace(settings, **changes)
    return module_of(nlp).settings


def test_a_saved_pipeline_stores_the_decoder_in_bf16_at_half_the_size(saved):
    ratio = weights_file_size(saved["auto"]) / weights_file_size(saved["float32"])
    assert 0.45 < ratio < 0.6, ratio
    # saving leaves the live module's float32 master weights alone
    assert weight_dtypes(saved["live"]) == {torch.float32}


def test_a_loaded_pipeline_runs_in_bf16_on_a_cpu_that_has_it_and_says_why(saved, cpu_has_bf16):
    with pytest.warns(PrecisionNotice, match=r"runs in bfloat16 on cpu \(inference_dtype = \"auto\" and this CPU has AVX512-BF16\)"):
        nlp = spacy.load(saved["auto"])
    assert weight_dtypes(nlp) == {torch.bfloat16}
    # RoPE's frequencies keep float32 (transformers computes the angles in float32)
    assert module_of(nlp).transformer.rotary_emb.inv_freq.dtype == torch.float32
    # listeners still get float32
    assert all(h.dtype == numpy.float32 for h in hidden_states(nlp))


def test_the_notice_is_said_once_per_process(saved, cpu_has_bf16):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        spacy.load(saved["auto"])
        spacy.load(saved["auto"])
    assert len([w for w in caught if issubclass(w.category, PrecisionNotice)]) == 1


def test_bf16_hidden_states_are_close_to_fp32_on_the_same_weights(saved, cpu_has_bf16):
    half = spacy.load(saved["auto"])
    full = spacy.load(saved["auto"], config={"components.transformer.model.inference_dtype": "float32"})
    assert weight_dtypes(half) == {torch.bfloat16} and weight_dtypes(full) == {torch.float32}
    h, f = numpy.concatenate(hidden_states(half)), numpy.concatenate(hidden_states(full))
    cosine = (h * f).sum(-1) / (numpy.linalg.norm(h, axis=-1) * numpy.linalg.norm(f, axis=-1))
    assert cosine.min() >= MIN_COSINE and cosine.mean() >= MEAN_COSINE, cosine
    assert numpy.linalg.norm(h - f) <= MAX_RELATIVE * numpy.linalg.norm(f)


def test_a_cpu_without_native_bf16_falls_back_to_float32_with_a_notice(saved, cpu_lacks_bf16):
    with pytest.warns(PrecisionNotice, match=r"runs in float32 on cpu .*neither AMX-BF16 nor AVX512-BF16.*emulated"):
        nlp = spacy.load(saved["auto"])
    assert weight_dtypes(nlp) == {torch.float32}
    # the stored bf16 weights cast back to float32 exactly: the same vectors as the
    # float32 run of the same stored weights, wherever it runs
    forced = spacy.load(saved["auto"], config={"components.transformer.model.inference_dtype": "float32"})
    for a, b in zip(hidden_states(nlp), hidden_states(forced)):
        numpy.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("forced,dtype", [("bfloat16", torch.bfloat16), ("float32", torch.float32)])
def test_inference_dtype_forces_either_whatever_the_cpu_has(saved, monkeypatch, forced, dtype):
    for instructions in [(), ("AMX-BF16",)]:
        monkeypatch.setattr(precision, "cpu_bf16_instructions", lambda: instructions)
        nlp = spacy.load(saved["auto"], config={"components.transformer.model.inference_dtype": forced})
        assert weight_dtypes(nlp) == {dtype}


def test_a_bf16_pipeline_round_trips_through_disk(saved, cpu_has_bf16, tmp_path):
    nlp = spacy.load(saved["auto"])
    nlp.to_disk(tmp_path / "again")
    again = spacy.load(tmp_path / "again")
    assert weight_dtypes(again) == {torch.bfloat16}
    assert abs(weights_file_size(tmp_path / "again") / weights_file_size(saved["auto"]) - 1) < 0.01
    for a, b in zip(hidden_states(nlp), hidden_states(again)):
        numpy.testing.assert_array_equal(a, b)
    assert entities(nlp) == entities(again)


def test_a_loaded_pipeline_trained_further_goes_back_to_float32(saved, cpu_has_bf16):
    nlp = spacy.load(saved["auto"])
    assert weight_dtypes(nlp) == {torch.bfloat16}
    optimizer = nlp.resume_training()
    losses = {}
    nlp.update(examples(nlp), sgd=optimizer, losses=losses)
    assert weight_dtypes(nlp) == {torch.float32}
    assert numpy.isfinite(losses["ner"])


def test_a_bad_inference_dtype_is_refused_naming_the_key(tiny_llama):
    with pytest.raises(ConfigError, match=r"inference_dtype='float16'.*auto.*bfloat16, float32"):
        build_nlp(tiny_llama, inference_dtype="float16")


def _linear_dtypes(nlp):
    seen = set()
    layer = module_of(nlp).transformer.layers[0].mlp.down_proj
    handle = layer.register_forward_hook(lambda m, i, o: seen.add(o.dtype))
    nlp.update(examples(nlp), sgd=False)
    handle.remove()
    return seen


def test_mixed_precision_trains_under_bf16_autocast_over_float32_weights_on_a_cpu_that_has_it(tiny_llama, cpu_has_bf16):
    nlp = build_nlp(tiny_llama, extra="mixed_precision = true")
    with pytest.warns(PrecisionNotice, match=r"bfloat16 autocast on cpu \(mixed_precision = true and this CPU has AVX512-BF16\)"):
        losses = train(nlp, steps=30)
    # the last steps' mean: a tiny model's NER loss jumps from step to step (in float32 too)
    assert numpy.mean(losses[-5:]) < 0.6 * losses[0], losses
    assert weight_dtypes(nlp) == {torch.float32}
    assert _linear_dtypes(nlp) == {torch.bfloat16}


def test_mixed_precision_on_a_cpu_without_bf16_runs_float32_with_a_notice(tiny_llama, cpu_lacks_bf16):
    nlp = build_nlp(tiny_llama, extra="mixed_precision = true")
    nlp.initialize(lambda: examples(nlp))
    with pytest.warns(PrecisionNotice, match=r"mixed_precision = true, but the decoder runs in float32 on cpu"):
        assert _linear_dtypes(nlp) == {torch.float32}


def test_autocast_training_stays_close_to_float32_training(tiny_llama, cpu_has_bf16):
    # the same seed and steps with and without autocast: losses track each other
    plain = train(build_nlp(tiny_llama), steps=10)
    mixed = train(build_nlp(tiny_llama, extra="mixed_precision = true"), steps=10)
    assert numpy.allclose(plain, mixed, rtol=0.25), (plain, mixed)
