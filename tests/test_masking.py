"""The mask semantics, per layer, on tiny random decoders of each supported family."""
import pytest
import torch
from transformers import AutoModel, GPT2Config

from spacy_unmask.checks import check_model
from spacy_unmask.decoder import DecoderFactory
from spacy_unmask.errors import ConfigError
from spacy_unmask.families import SUPPORTED_MODEL_TYPES, sliding_windows
from spacy_unmask.layer_groups import LayerGroups
from spacy_unmask.loading import load_config, load_weights, resolve_source
from spacy_unmask.settings import DecoderSettings

from .util import FAMILIES, N_LAYERS, SLIDING_WINDOW, assert_padding_invariant, build_model_dir


def attentions(family):
    """The attention paths a family runs on: Gemma 2's soft-capping needs eager."""
    return ("eager",) if family == "gemma2" else ("sdpa", "eager")


def encoder(folder, unmask, attn="sdpa", n_layers=None):
    settings = DecoderSettings(unmask=LayerGroups.parse(unmask), n_layers=n_layers, attn_implementation=attn)
    source = resolve_source(folder)
    config = load_config(source, n_layers)
    check_model(settings, config)
    return DecoderFactory(settings).wrap(load_weights(source, config, attn)).eval()


def layer_states(model, ids, mask=None):
    with torch.no_grad():
        out = model(input_ids=ids, attention_mask=mask, output_hidden_states=True)
    return out.hidden_states  # [embeddings, after layer 0, after layer 1, ...]


def changed_positions_per_layer(model, i=1, j=3):
    """For each layer's output: did the state at position i change when token j changed?"""
    ids = torch.tensor([[5, 17, 30, 42, 8, 60, 71, 90]])
    other = ids.clone()
    other[0, j] = 99
    a, b = layer_states(model, ids), layer_states(model, other)
    return [not torch.allclose(a[layer + 1][0, i], b[layer + 1][0, i]) for layer in range(N_LAYERS)]


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize(
    "unmask,expected",
    [
        ("none", [False, False, False, False]),
        ("0011", [False, False, True, True]),
        ("second_half", [False, False, True, True]),
        ("0100", [False, True, True, True]),
        ("1000", [True, True, True, True]),
        ("all", [True, True, True, True]),
    ],
)
def test_unmasked_layers_see_the_right_context(tiny_dirs, family, unmask, expected):
    # An earlier token learns of a later one at the first unmasked layer, and the
    # news travels up through every layer after it, masked or not (the two tokens
    # are closer than any sliding window).
    for attn in attentions(family):
        assert changed_positions_per_layer(encoder(tiny_dirs[family], unmask, attn)) == expected


@pytest.mark.parametrize("family", FAMILIES)
def test_none_equals_the_untouched_hf_model(tiny_dirs, family):
    ids = torch.tensor([[5, 17, 30, 42, 8, 60, 71], [9, 3, 7, 0, 0, 0, 0]])
    mask = torch.tensor([[1] * 7, [1, 1, 1, 0, 0, 0, 0]])
    for attn in attentions(family):
        plain = AutoModel.from_pretrained(str(tiny_dirs[family]), attn_implementation=attn,
                                          key_mapping={r"^model\.": ""} if family == "gemma3_text" else None).eval()
        with torch.no_grad():
            expected = plain(input_ids=ids, attention_mask=mask).last_hidden_state
            got = encoder(tiny_dirs[family], "none", attn)(input_ids=ids, attention_mask=mask).last_hidden_state
        assert torch.equal(expected, got), attn


@pytest.mark.parametrize("family", [f for f in FAMILIES if "sdpa" in attentions(f)])
@pytest.mark.parametrize("unmask", ["none", "first_half", "0101", "all"])
def test_eager_and_sdpa_agree_with_padding(tiny_dirs, family, unmask):
    ids = torch.tensor([[5, 17, 30, 42, 8, 60, 71], [9, 3, 7, 0, 0, 0, 0]])
    mask = torch.tensor([[1] * 7, [1, 1, 1, 0, 0, 0, 0]])
    with torch.no_grad():
        sdpa = encoder(tiny_dirs[family], unmask, "sdpa")(input_ids=ids, attention_mask=mask).last_hidden_state
        eager = encoder(tiny_dirs[family], unmask, "eager")(input_ids=ids, attention_mask=mask).last_hidden_state
    real = mask.bool()
    assert torch.allclose(sdpa[real], eager[real], atol=1e-5)


def sees(model, n=9):
    """seen[i][j]: does the state at position i change when the token at position j changes?"""
    ids = torch.tensor([[5, 17, 30, 42, 8, 60, 71, 90, 11][:n]])
    with torch.no_grad():
        base = model(input_ids=ids).last_hidden_state[0]
        seen = []
        for j in range(n):
            other = ids.clone()
            other[0, j] = 99
            changed = model(input_ids=other).last_hidden_state[0]
            seen.append([not torch.allclose(base[i], changed[i]) for i in range(n)])
    return [[seen[j][i] for j in range(n)] for i in range(n)]


@pytest.mark.parametrize("family,overrides", [
    ("gemma2", {}),  # layer 0 is a sliding layer
    ("gemma3_text", {}),
    ("mistral", {"sliding_window": SLIDING_WINDOW}),
    ("phi3", {"sliding_window": SLIDING_WINDOW}),
])
def test_an_unmasked_sliding_layer_sees_its_window_on_both_sides(tmp_path, family, overrides):
    folder = build_model_dir(tmp_path / family, family)
    if overrides:
        import json

        config = json.loads((folder / "config.json").read_text())
        (folder / "config.json").write_text(json.dumps({**config, **overrides}))
    for attn in attentions(family):
        for unmask in ("none", "all"):
            model = encoder(folder, unmask, attn, n_layers=1)
            assert sliding_windows(model.config) == (SLIDING_WINDOW,)
            seen = sees(model)
            for i, row in enumerate(seen):
                for j, saw in enumerate(row):
                    allowed = abs(i - j) < SLIDING_WINDOW if unmask == "all" else 0 <= i - j < SLIDING_WINDOW
                    assert saw == allowed, (attn, unmask, i, j)


def test_global_and_sliding_layers_of_one_call_get_their_own_masks(tiny_dirs):
    # Gemma 3's tiny model: layers 0, 1, 3 sliding, 2 global. Unmasked, position 0 hears of
    # position 7 only through the global layer (7 pieces away, past the window of 4).
    model = encoder(tiny_dirs["gemma3_text"], "all", "eager")
    assert sliding_windows(model.config) == (SLIDING_WINDOW, SLIDING_WINDOW, None, SLIDING_WINDOW)
    assert changed_positions_per_layer(model, i=0, j=7) == [False, False, True, True]
    padded = torch.tensor([[5, 17, 30, 42, 8, 60, 71, 90], [5, 17, 30, 42, 8, 60, 71, 0]])
    mask = torch.tensor([[1] * 8, [1] * 7 + [0]])
    with torch.no_grad():
        both = model(input_ids=padded, attention_mask=mask).last_hidden_state
        alone = model(input_ids=padded[1:, :7]).last_hidden_state
    assert torch.allclose(both[1, :7], alone[0], atol=1e-5)


def test_soft_capped_attention_under_sdpa_is_refused_naming_eager(tiny_dirs):
    source = resolve_source(tiny_dirs["gemma2"])
    settings = DecoderSettings(unmask=LayerGroups.parse("second_half"), attn_implementation="sdpa")
    with pytest.raises(ConfigError, match=r"attn_implementation='sdpa'.*\"eager\".*attn_logit_softcapping = 50.0"):
        check_model(settings, load_config(source))


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("unmask", ["none", "second_half", "all"])
def test_vectors_do_not_depend_on_a_padded_batch_mate(tiny_dirs, family, unmask):
    for attn in attentions(family):
        assert_padding_invariant(encoder(tiny_dirs[family], unmask, attn))


def test_layers_are_counted_over_the_kept_layers(tiny_llama):
    model = encoder(tiny_llama, "second_half", n_layers=2)
    assert model.config.num_hidden_layers == 2
    assert len(model.transformer.layers) == 2
    assert model.unmasked_layers == frozenset({1})


def test_flash_attention_is_refused_with_the_accepted_values():
    with pytest.raises(ConfigError, match=r"attn_implementation='flash_attention_2'.*sdpa, eager"):
        DecoderSettings(unmask=LayerGroups.parse("all"), attn_implementation="flash_attention_2")


def test_other_model_types_are_refused_with_the_supported_list():
    base = AutoModel.from_config(GPT2Config(n_layer=2, n_embd=16, n_head=2, vocab_size=50))
    settings = DecoderSettings(unmask=LayerGroups.parse("all"))
    with pytest.raises(ConfigError, match=r"'gpt2'.*" + ", ".join(SUPPORTED_MODEL_TYPES)):
        DecoderFactory(settings).wrap(base)


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_gradient_checkpointing_recomputes_with_the_callers_own_mask(tiny_llama, attn):
    ids = torch.tensor([[5, 17, 30, 42, 8], [9, 3, 7, 0, 0]])
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])

    def grads(checkpointing):
        torch.manual_seed(0)
        model = encoder(tiny_llama, "0101", attn).train()
        if checkpointing:
            model.transformer.gradient_checkpointing_enable({"use_reentrant": False})
        out = model(input_ids=ids, attention_mask=mask).last_hidden_state
        # another call between forward and backward must not leak into the recompute
        model(input_ids=ids[:1], attention_mask=mask[:1])
        out[mask.bool()].sum().backward()
        return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    plain, checkpointed = grads(False), grads(True)
    assert plain.keys() == checkpointed.keys()
    for name in plain:
        assert torch.allclose(plain[name], checkpointed[name], atol=1e-5), name


def test_the_bidirectional_mask_is_built_once_per_call(tiny_llama, monkeypatch):
    import spacy_unmask.masking as masking

    calls = []
    real = masking.create_causal_mask
    monkeypatch.setattr(masking, "create_causal_mask", lambda **kw: calls.append(1) or real(**kw))
    model = encoder(tiny_llama, "all")
    ids = torch.tensor([[5, 17, 30, 42, 8], [9, 3, 7, 0, 0]])
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    with torch.no_grad():
        model(input_ids=ids, attention_mask=mask)
        model(input_ids=ids[1:, :3], attention_mask=mask[1:, :3])  # no padding: no mask at all
        model(input_ids=ids, attention_mask=mask)
    assert len(calls) == 2
