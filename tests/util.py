"""What the tests share: the project's paths and scripts, the cached assets, tiny random decoders of
every supported family with their tokenizers, and checks that several test modules make.

Byte-level BPE (GPT-2 style, as SmolLM2, Llama 3, Qwen, OLMo 2, Granite and SmolLM3 ship)
for most families; SentencePiece-style BPE with `▁` pieces and byte fallback (as Gemma and
Phi-3 ship) for those. The fixtures that build them once per session are in conftest.py.
"""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import AutoModelForCausalLM, LlamaConfig, MistralConfig, PreTrainedTokenizerFast
from transformers import Gemma2Config, Gemma3TextConfig, GemmaConfig, GraniteConfig, Olmo2Config, Phi3Config
from transformers import Qwen2Config, Qwen3Config, SmolLM3Config

from fetch_assets import DATA_FILE, ENCODER_DIR, MODEL_DIR, default_cache

ROOT = Path(__file__).resolve().parent.parent


def smollm2_dir() -> Path:
    """Where the project's asset step leaves the converted SmolLM2 folder."""
    return default_cache() / MODEL_DIR


WNUT = default_cache() / DATA_FILE
ENCODER = default_cache() / ENCODER_DIR


def _needs(asset: Path):
    """Marks a test `real_model` (it needs a cached asset) and skips it, naming the remedy, when
    the asset is missing."""
    skip = pytest.mark.skipif(not asset.exists(), reason=f"{asset} not cached: run `python scripts/fetch_assets.py`")

    def mark(test):
        return pytest.mark.real_model(skip(test))

    return mark


needs_wnut = _needs(WNUT)
needs_model = _needs(smollm2_dir() / "config.json")
needs_encoder = _needs(ENCODER / "config.json")


def script(*args, check=True):
    """`python ARGS` in the project's root; its output fails the test unless `check=False`."""
    result = subprocess.run([sys.executable, *map(str, args)], cwd=ROOT, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise AssertionError(result.stdout + result.stderr)
    return result


# the tiny tokenizers' training texts
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
FAMILIES = ("llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "gemma3_text", "phi3", "olmo2", "granite", "smollm3")
# The families whose tokenizers are SentencePiece models: `▁` for spaces, bytes for unknown characters.
SENTENCEPIECE = {"gemma": "never", "gemma2": "never", "gemma3_text": "never", "phi3": "first"}
# Small enough that the tests' 8-piece inputs reach past it (see test_masking).
SLIDING_WINDOW = 4


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


def build_sentencepiece_tokenizer(prepend_scheme: str = "first") -> PreTrainedTokenizerFast:
    """A SentencePiece-style BPE as transformers converts Llama-2 / Phi-3 ("first": a `▁` before
    the text) or Gemma ("never") tokenizers: spaces become `▁` inside pieces, and a character
    the vocabulary lacks falls back to one piece per UTF-8 byte (`<0xF0>` ...)."""
    backend = Tokenizer(models.BPE(unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme=prepend_scheme, split=True)
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<unk>", "<s>", "</s>"], show_progress=False)
    backend.train_from_iterator(CORPUS * 5, trainer)
    spec = json.loads(backend.to_str())
    vocab = spec["model"]["vocab"]
    for byte in range(256):  # the byte pieces of a real SentencePiece vocabulary
        vocab.setdefault(f"<0x{byte:02X}>", len(vocab))
    spec["model"]["byte_fallback"] = True
    spec["decoder"] = json.loads(decoders.Sequence([
        decoders.Metaspace(replacement="▁", prepend_scheme=prepend_scheme), decoders.ByteFallback(), decoders.Fuse(),
    ]).__getstate__())
    backend = Tokenizer.from_str(json.dumps(spec))
    return PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>", bos_token="<s>", eos_token="</s>")


def tokenizer_of(family: str) -> PreTrainedTokenizerFast:
    if family in SENTENCEPIECE:
        return build_sentencepiece_tokenizer(SENTENCEPIECE[family])
    return build_tokenizer()


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
    # The quirks each family's test model must show: Gemma's head_dim apart from
    # hidden / heads and scaled embeddings; Gemma 2's soft-capping and alternating
    # sliding / global layers; Gemma 3's local layers with their own rotary base and
    # q/k norms; Phi-3's fused projections; OLMo 2's post-norms; Granite's multipliers;
    # SmolLM3's layers without rotary positions.
    common["pad_token_id"] = 0  # the families' defaults lie outside a tiny vocabulary
    sliding = dict(sliding_window=SLIDING_WINDOW, query_pre_attn_scalar=16, head_dim=16)
    if family == "gemma":
        return GemmaConfig(**common, head_dim=16)
    if family == "gemma2":
        return Gemma2Config(**common, **sliding, attn_logit_softcapping=50.0)
    if family == "gemma3_text":
        types = ["sliding_attention", "sliding_attention", "full_attention", "sliding_attention"]
        return Gemma3TextConfig(**common, **sliding, layer_types=types, rope_local_base_freq=10_000.0)
    if family == "phi3":
        return Phi3Config(**common)
    if family == "olmo2":
        return Olmo2Config(**common)
    if family == "granite":
        return GraniteConfig(**common, embedding_multiplier=12.0, residual_multiplier=0.22,
                             attention_multiplier=1 / 8, logits_scaling=4.0)
    if family == "smollm3":
        return SmolLM3Config(**common, no_rope_layer_interval=2)
    raise ValueError(family)


def build_model_dir(folder: Path, family: str, seed: int = 0) -> Path:
    tokenizer = tokenizer_of(family)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(tiny_config(family, len(tokenizer)))
    model.save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))
    return folder


# texts whose pieces are hard to align: punctuation runs, emoji, odd spaces, accents and typographic quotes
AWKWARD = [
    "Apple opened a store in Berlin .",
    "Hello, world! (really?) -- yes...",
    "I love NYC 😀😀 so much 🙃 #nyc @user",
    "two  spaces,   three, \ttab and\nnewline",
    "  leading and trailing  ",
    "naïve café Zürich – “quotes”",
]


def check(docs, spans, offsets, align):
    """Yield (token, piece text) pairs where a piece lies outside its token's characters."""
    row_starts, flat = [], 0
    for row in offsets:
        row_starts.append(flat)
        flat += len(row)
    bad, position = [], 0
    for doc, span, row, base in zip(docs, spans, offsets, row_starts):
        for token in doc:
            pieces = align[position].dataXd.ravel().tolist()
            position += 1
            if not token.is_space and not pieces:
                bad.append((token.text, None))
            for p in pieces:
                start, end = row[p - base]
                text = doc.text[start:end]
                if not (start < token.idx + len(token) and end > token.idx) or not text.strip():
                    # a piece must overlap the token's own characters (pure-space
                    # pieces may only go to space tokens)
                    if not token.is_space:
                        bad.append((token.text, text))
    return bad


def assert_padding_invariant(model):
    """A short sequence's vectors are the same alone and beside a longer, padded batch-mate."""
    short = torch.tensor([[9, 3, 7]])
    batch = torch.tensor([[5, 17, 30, 42, 8, 11], [9, 3, 7, 0, 0, 0]])
    mask = torch.tensor([[1] * 6, [1, 1, 1, 0, 0, 0]])
    with torch.no_grad():
        alone = model(input_ids=short, attention_mask=torch.ones_like(short)).last_hidden_state[0]
        padded = model(input_ids=batch, attention_mask=mask).last_hidden_state[1, :3]
    assert torch.allclose(alone, padded, atol=1e-5)
