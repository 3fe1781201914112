"""Tiny random decoders and a tiny byte-level BPE tokenizer, built once per session."""
import os
from pathlib import Path

import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import AutoModelForCausalLM, LlamaConfig, MistralConfig, PreTrainedTokenizerFast
from transformers import Qwen2Config, Qwen3Config

CORPUS = [
    "Apple opened a new store in Berlin on Monday .",
    "Barack Obama visited Paris and London last week !",
    "I love New York 😀 so much #nyc @user http://t.co/x",
    "The quick brown fox jumps over the lazy dog .",
    "Don't stop believing , said Journey in 1981 .",
    "Microsoft and Google compete in the cloud market .",
    "  multiple   spaces\tand\nnewlines here  ",
]
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
N_LAYERS = 4
FAMILIES = ("llama", "mistral", "qwen2", "qwen3")


def build_tokenizer() -> PreTrainedTokenizerFast:
    """A GPT-2-style byte-level BPE: offsets *not* trimmed, no pad token (as decoders ship)."""
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=SPECIALS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(CORPUS * 5, trainer)
    backend.post_processor = processors.ByteLevel(trim_offsets=False)
    return PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<|endoftext|>", bos_token="<|endoftext|>")


def tiny_config(family: str, vocab_size: int):
    common = dict(
        vocab_size=vocab_size,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=N_LAYERS,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        tie_word_embeddings=True,
    )
    if family == "llama":
        return LlamaConfig(**common)
    if family == "mistral":
        return MistralConfig(**common, sliding_window=None)
    if family == "qwen2":
        return Qwen2Config(**common)
    if family == "qwen3":
        return Qwen3Config(**common, head_dim=8)
    raise ValueError(family)


def build_model_dir(folder: Path, family: str, seed: int = 0) -> Path:
    tokenizer = build_tokenizer()
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(tiny_config(family, len(tokenizer)))
    model.save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))
    return folder


@pytest.fixture(scope="session")
def tiny_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    return {family: build_model_dir(root / family, family) for family in FAMILIES}


@pytest.fixture(scope="session")
def tiny_llama(tiny_dirs) -> Path:
    return tiny_dirs["llama"]


def smollm2_dir() -> Path:
    """Where the project's asset step leaves the converted SmolLM2 folder."""
    cache = Path(os.environ.get("SPACY_UNMASK_CACHE", Path.home() / ".cache" / "spacy-unmask"))
    return cache / "smollm2-135m"


@pytest.fixture(scope="session")
def trained_tiny_pipeline(tiny_llama, tmp_path_factory) -> Path:
    """A transformer + ner pipeline on the tiny Llama, trained to predict some entities, on disk."""
    from .pipelines import build_nlp, train

    nlp = build_nlp(tiny_llama)
    train(nlp, steps=30)
    path = tmp_path_factory.mktemp("trained") / "nlp"
    nlp.to_disk(path)
    return path
