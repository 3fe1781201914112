"""4-bit base weights (`quantization`, QLoRA) on CPU: training, saving, loading, and clear refusals.

bitsandbytes 0.50.2 (requirements.txt) runs 4-bit layers on CPU, so the whole path runs here;
the GPU path is the same code on another device.
"""
import warnings

import numpy
import pytest
import spacy
import torch

from spacy_unmask import quantization as quantization_module
from spacy_unmask.settings import QuantizationSettings
from spacy_unmask.errors import ConfigError

from .util import FAMILIES
from .pipelines import build_nlp, examples, train

bnb = pytest.importorskip("bitsandbytes")

QUANTIZED = '\n[components.transformer.model.quantization]\n@misc = "spacy-unmask.BitsAndBytes4bit.v1"\n'
LORA = {"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": '["q_proj","v_proj"]'}
TEXTS = ["Apple opened a store in Berlin .", "Obama 😀 visited Paris !", "", "   "]


def module_of(nlp):
    return nlp.get_pipe("transformer").model.transformer


def states(nlp):
    return [doc._.trf_data.model_output.last_hidden_state for doc in nlp.pipe(TEXTS) if doc._.trf_data.model_output]


def linear_kinds(nlp):
    return {type(m).__name__ for n, m in module_of(nlp).named_modules() if n.endswith(("q_proj.base_layer", "gate_proj"))}


def test_a_quantized_pipeline_trains_its_adapters_saves_the_4bit_weights_and_loads_identically(tiny_llama, tmp_path):
    nlp = build_nlp(tiny_llama, unmask="all", lora=LORA, extra='dtype = "bfloat16"\n' + QUANTIZED)
    losses = train(nlp, steps=30)
    assert losses[-1] < 0.6 * losses[0], losses  # 24 -> 12 here; LoRA on q, v over bf16 weights does the same
    assert linear_kinds(nlp) == {"Linear4bit"}
    trainable = {n: p for n, p in module_of(nlp).named_parameters() if p.requires_grad}
    assert trainable and all(".lora_" in n for n in trainable)
    # the adapters trained (lora_B starts at zero), not only the ner head
    assert all(p.abs().sum() > 0 for n, p in trainable.items() if ".lora_B." in n)
    nlp.to_disk(tmp_path / "qlora")
    loaded = spacy.load(tmp_path / "qlora")
    assert linear_kinds(loaded) == {"Linear4bit"}
    assert module_of(loaded).unmasked_layers == module_of(nlp).unmasked_layers
    assert [[(e.start, e.end, e.label_) for e in d.ents] for d in loaded.pipe(TEXTS)] == \
        [[(e.start, e.end, e.label_) for e in d.ents] for d in nlp.pipe(TEXTS)]
    for a, b in zip(states(nlp), states(loaded)):
        numpy.testing.assert_array_equal(a, b)


def test_what_a_quantized_pipeline_saves_is_the_packed_4bit_weights_with_their_statistics(tiny_llama):
    nlp = build_nlp(tiny_llama, lora=LORA, extra=QUANTIZED)
    nlp.initialize()
    state = module_of(nlp).state_dict()
    q_proj = "transformer.base_model.model.layers.0.self_attn.q_proj.base_layer.weight"
    hidden = module_of(nlp).config.hidden_size
    # two 4-bit weights a byte, plus absmax per block and, with double quantization, their own statistics
    assert state[q_proj].dtype == torch.uint8 and state[q_proj].numel() == hidden * hidden // 2
    assert {q_proj + s for s in (".absmax", ".quant_map", ".nested_absmax", ".quant_state.bitsandbytes__nf4")} <= set(state)
    assert state["transformer.base_model.model.embed_tokens.weight"].dtype == torch.float32


def test_quantization_without_lora_is_refused_naming_both_keys(tiny_llama):
    with pytest.raises(ConfigError, match="quantization.*lora"):
        build_nlp(tiny_llama, extra=QUANTIZED)


@pytest.mark.parametrize("key,value,message", [
    ("quant_type", '"int3"', "quantization.quant_type='int3'.*nf4, fp4"),
    ("compute_dtype", '"float64"', "quantization.compute_dtype='float64'"),
])
def test_bad_quantization_values_are_refused_naming_the_key(tiny_llama, key, value, message):
    with pytest.raises(ConfigError, match=message):
        build_nlp(tiny_llama, lora=LORA, extra=QUANTIZED + f"{key} = {value}\n")


def test_without_a_bitsandbytes_that_runs_here_initialize_says_what_is_missing(tiny_llama, monkeypatch):
    def no_cpu_kernels(self, *args, **kwargs):
        raise NotImplementedError("4-bit matmul has no CPU kernel in this build")

    monkeypatch.setattr(bnb.nn.Linear4bit, "forward", no_cpu_kernels)
    nlp = build_nlp(tiny_llama, lora=LORA, extra=QUANTIZED)
    with pytest.raises(ConfigError, match="trains 4-bit layers of input size 32.*device cpu.*no CPU kernel.*GPU"):
        nlp.initialize()


def test_training_after_an_evaluation_stays_on_the_trainable_4bit_layout(tiny_llama):
    """bitsandbytes would repack the weights for its CPU inference kernel at the first
    prediction (on AVX512-BF16 CPUs), and later training steps would run without autograd."""
    nlp = build_nlp(tiny_llama, lora=LORA, extra=QUANTIZED)  # hidden size 32: below one 64-weight block
    optimizer = nlp.initialize(lambda: examples(nlp))
    nlp.update(examples(nlp), sgd=optimizer)
    list(nlp.pipe(TEXTS))
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*autograd kernel was not registered.*")
        nlp.update(examples(nlp), sgd=optimizer)
    layers = [m for m in module_of(nlp).modules() if isinstance(m, bnb.nn.Linear4bit)]
    assert layers and not any(getattr(m.weight.quant_state, "packing_format_for_cpu", False) for m in layers)
    assert not any(m.support_avx512bf16_for_cpu for m in layers), "repacking off on any CPU, not only this one"


def test_a_folder_of_already_quantized_weights_is_refused_naming_the_remedy(tmp_path, tiny_llama):
    import json
    import shutil

    folder = tmp_path / "prequantized"
    shutil.copytree(tiny_llama, folder)
    config = json.loads((folder / "config.json").read_text())
    config["quantization_config"] = {"quant_method": "bitsandbytes", "load_in_4bit": True}
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ConfigError, match="quantized weights.*original .float. folder.*quantization"):
        build_nlp(folder, lora=LORA)


def test_without_bitsandbytes_installed_the_error_names_the_package(tiny_llama, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_bitsandbytes(name, *args, **kwargs):
        if name == "bitsandbytes":
            raise ImportError("No module named 'bitsandbytes'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_bitsandbytes)
    settings = QuantizationSettings()
    with pytest.raises(ConfigError, match=r"bitsandbytes package.*spacy-unmask\[quantization\]"):
        quantization_module.check_bitsandbytes(settings, torch.device("cpu"))


def test_quantization_with_gradient_checkpointing_recomputes_through_the_4bit_layers(tiny_llama):
    nlp = build_nlp(tiny_llama, unmask="all", lora=LORA, extra="gradient_checkpointing = true\n" + QUANTIZED)
    optimizer = nlp.initialize(lambda: examples(nlp))
    base = module_of(nlp).transformer.base_model.model
    assert base.gradient_checkpointing and base.is_loaded_in_4bit
    calls = []
    handles = [layer.register_forward_pre_hook(lambda *a: calls.append(1)) for layer in base.layers]
    nlp.update(examples(nlp), sgd=optimizer)
    for handle in handles:
        handle.remove()
    assert len(calls) == 2 * len(base.layers)


@pytest.mark.parametrize("family", [f for f in FAMILIES if f != "llama"])  # llama: the test above
def test_every_family_trains_4bit_with_its_default_adapters_and_loads_identically(tiny_dirs, family, tmp_path):
    attn = "eager" if family == "gemma2" else "sdpa"
    lora = {k: v for k, v in LORA.items() if k != "target_modules"}  # the family's default targets
    nlp = build_nlp(tiny_dirs[family], unmask="second_half", lora=lora,
                    extra=f'attn_implementation = "{attn}"\n' + QUANTIZED)
    train(nlp, steps=3)
    kinds = {type(m).__name__ for n, m in module_of(nlp).named_modules() if n.endswith(".base_layer")}
    assert kinds == {"Linear4bit"}
    nlp.to_disk(tmp_path / "qlora")
    loaded = spacy.load(tmp_path / "qlora")
    for a, b in zip(states(nlp), states(loaded)):
        numpy.testing.assert_array_equal(a, b)
