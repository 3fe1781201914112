"""Turning folders and files into model parts, and the errors for wrong ones."""
import json
import shutil

import pytest

from spacy_unmask.checks import check_model
from spacy_unmask.errors import ConfigError
from spacy_unmask.layer_groups import LayerGroups
from spacy_unmask.loading import load_config, load_tokenizer, load_weights, resolve_source
from spacy_unmask.lora import apply_lora
from spacy_unmask.settings import DecoderSettings, LoraSettings


@pytest.fixture
def copy_of_llama(tiny_llama, tmp_path):
    target = tmp_path / "llama"
    shutil.copytree(tiny_llama, target)
    return target


def test_a_hub_id_is_refused_before_any_download():
    with pytest.raises(ConfigError, match=r"name='HuggingFaceTB/SmolLM2-135M'.*never downloads.*no such file"):
        resolve_source("HuggingFaceTB/SmolLM2-135M")


def test_a_file_that_is_not_gguf_is_refused(tmp_path):
    (tmp_path / "model.bin").write_bytes(b"x")
    with pytest.raises(ConfigError, match=r"not a \.gguf"):
        resolve_source(tmp_path / "model.bin")


def test_a_folder_without_config_names_its_gguf_files(tmp_path):
    (tmp_path / "m.Q4.gguf").write_bytes(b"x")
    with pytest.raises(ConfigError, match=r"no config\.json; it holds \['m\.Q4\.gguf'\]"):
        resolve_source(tmp_path)


def test_a_folder_without_tokenizer_json_is_refused(copy_of_llama):
    (copy_of_llama / "tokenizer.json").unlink()
    with pytest.raises(ConfigError, match=r"no tokenizer\.json"):
        resolve_source(copy_of_llama)


def test_a_broken_gguf_names_the_file(tmp_path):
    (tmp_path / "broken.gguf").write_bytes(b"not a gguf at all")
    with pytest.raises(ConfigError, match=r"name='.*broken\.gguf'"):
        load_config(resolve_source(tmp_path / "broken.gguf"))


def test_corrupt_weights_give_a_clear_error(copy_of_llama):
    (copy_of_llama / "model.safetensors").write_bytes(b"garbage")
    source = resolve_source(copy_of_llama)
    with pytest.raises(ConfigError, match=r"no usable weights"):
        load_weights(source, load_config(source), "sdpa")


def test_weights_missing_for_the_config_are_an_error_not_random_values(copy_of_llama):
    config = json.loads((copy_of_llama / "config.json").read_text())
    config["num_hidden_layers"] = 6
    (copy_of_llama / "config.json").write_text(json.dumps(config))
    source = resolve_source(copy_of_llama)
    with pytest.raises(ConfigError, match=r"lack \d+ tensors"):
        load_weights(source, load_config(source), "sdpa")


@pytest.mark.parametrize("bad", [0, 5, -1, True])
def test_n_layers_outside_the_model_names_the_range(tiny_llama, bad):
    with pytest.raises(ConfigError, match=r"^n_layers=.*from 1 to 4"):
        load_config(resolve_source(tiny_llama), bad)


def test_the_tokenizer_pads_right_with_eos_and_feeds_no_segment_ids(tiny_llama):
    tokenizer = load_tokenizer(resolve_source(tiny_llama))
    assert tokenizer.pad_token == tokenizer.eos_token
    encoding = tokenizer(["Apple opened", "I"], padding="longest")
    assert set(encoding) == {"input_ids", "attention_mask"}
    assert encoding["attention_mask"][1][0] == 1 and encoding["attention_mask"][1][-1] == 0


def test_lora_targets_must_be_linear_layers(tiny_llama):
    source = resolve_source(tiny_llama)
    model = load_weights(source, load_config(source), "sdpa")
    with pytest.raises(ConfigError, match=r"lora\.target_modules.*\['mlp'\] are not linear layers.*q_proj"):
        apply_lora(model, LoraSettings(target_modules=["mlp"]))


def test_halves_of_a_one_layer_decoder_are_refused(tiny_llama):
    settings = DecoderSettings(unmask=LayerGroups.parse("first_half"), n_layers=1)
    with pytest.raises(ConfigError, match=r"unmask='first_half'.*at least 2 layers"):
        check_model(settings, load_config(resolve_source(tiny_llama), 1))
