"""Sequence repetition on tiny random decoders."""
import pytest
import torch
from transformers import AutoModel

from spacy_unmask.decoder import DecoderFactory
from spacy_unmask.errors import ConfigError
from spacy_unmask.layer_groups import LayerGroups
from spacy_unmask.repetition import repeat_pieces
from spacy_unmask.settings import DecoderSettings

from .pipelines import assert_same_predictions, build_nlp, train
from .util import assert_padding_invariant


def encoder(folder, repeat, unmask="none"):
    settings = DecoderSettings(unmask=LayerGroups.parse(unmask), repeat=repeat)
    return DecoderFactory(settings).wrap(AutoModel.from_pretrained(str(folder))).eval()


def test_repeated_rows_keep_right_padding_and_point_at_the_last_copy():
    ids = torch.tensor([[5, 6, 7], [8, 9, 0]])
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    rep, rep_mask, index = repeat_pieces(ids, mask, 2)
    assert rep.tolist() == [[5, 6, 7, 5, 6, 7], [8, 9, 8, 9, 0, 0]]
    assert rep_mask.tolist() == [[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0]]
    assert index[0].tolist() == [3, 4, 5] and index[1, :2].tolist() == [2, 3]


@pytest.mark.parametrize("repeat,sees_right", [(1, False), (2, True), (3, True)])
def test_with_a_causal_mask_only_repetition_lets_an_early_piece_see_a_later_one(tiny_llama, repeat, sees_right):
    model = encoder(tiny_llama, repeat)
    ids = torch.tensor([[5, 17, 30, 42, 8, 60]])
    other = ids.clone()
    other[0, 4] = 99
    with torch.no_grad():
        a = model(input_ids=ids).last_hidden_state[0, 1]
        b = model(input_ids=other).last_hidden_state[0, 1]
    assert (not torch.allclose(a, b)) == sees_right


def test_vectors_come_from_the_last_copy_of_a_manual_forward(tiny_llama):
    model = encoder(tiny_llama, 2)
    plain = AutoModel.from_pretrained(str(tiny_llama)).eval()
    ids = torch.tensor([[5, 17, 30, 42]])
    with torch.no_grad():
        manual = plain(input_ids=torch.cat([ids, ids], dim=1)).last_hidden_state[0, 4:]
        got = model(input_ids=ids, attention_mask=torch.ones_like(ids)).last_hidden_state[0]
    assert torch.allclose(manual, got, atol=1e-5)


@pytest.mark.parametrize("unmask", ["none", "second_half"])
def test_repeated_vectors_do_not_depend_on_a_padded_batch_mate(tiny_llama, unmask):
    assert_padding_invariant(encoder(tiny_llama, 2, unmask))


@pytest.mark.parametrize("bad", [0, -1, True, 1.5])
def test_bad_repeat_values_name_the_key(bad):
    with pytest.raises(ConfigError, match=r"^repeat="):
        DecoderSettings(unmask=LayerGroups.parse("none"), repeat=bad)


def test_a_repeat_for_which_no_window_fits_fails_at_config_load(tiny_llama):
    # the tiny models have 256 positions; default windows are 128 tokens
    with pytest.raises(ConfigError, match=r"repeat=3.*256 positions.*at most 2 times"):
        build_nlp(tiny_llama, unmask="none", extra="repeat = 3")


def test_a_repeat_2_pipeline_trains_and_round_trips(tiny_llama, tmp_path):
    import spacy

    nlp = build_nlp(tiny_llama, unmask="none", extra="repeat = 2")
    losses = train(nlp)
    assert losses[-1] < 0.5 * losses[0]
    nlp.to_disk(tmp_path / "rep")
    assert_same_predictions(nlp, spacy.load(tmp_path / "rep"))
