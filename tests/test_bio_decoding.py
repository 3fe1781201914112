"""`bio_decoding`: the best valid BIO sequence, checked against every sequence there is."""
import itertools

import numpy
import pytest

from spacy_unmask.bio_decoding import allowed_transitions, best_valid_sequence, log_softmax
from spacy_unmask.bio_tagger import spans_of_bio

LABELS = ("O", "B-LOC", "I-LOC", "B-PER", "I-PER")


def is_valid(tags):
    return all(not tag.startswith("I-") or (i > 0 and tags[i - 1][2:] == tag[2:] and tags[i - 1] != "O")
               for i, tag in enumerate(tags))


def test_an_inside_tag_may_only_continue_its_own_label():
    allowed = allowed_transitions(LABELS)
    start = allowed[-1]
    assert [LABELS[j] for j in range(len(LABELS)) if not start[j]] == ["I-LOC", "I-PER"]
    after = {LABELS[i]: {LABELS[j] for j in range(len(LABELS)) if allowed[i, j]} for i in range(len(LABELS))}
    assert after["O"] == {"O", "B-LOC", "B-PER"}
    assert after["B-LOC"] == after["I-LOC"] == {"O", "B-LOC", "I-LOC", "B-PER"}
    assert after["I-PER"] == {"O", "B-LOC", "B-PER", "I-PER"}


@pytest.mark.parametrize("seed", range(20))
def test_the_sequence_is_the_best_of_all_valid_ones(seed):
    rng = numpy.random.default_rng(seed)
    log_probs = log_softmax(rng.normal(scale=3.0, size=(4, len(LABELS))), normalized=False)
    found = best_valid_sequence(log_probs, allowed_transitions(LABELS))
    valid = [ids for ids in itertools.product(range(len(LABELS)), repeat=4) if is_valid([LABELS[i] for i in ids])]
    best = max(valid, key=lambda ids: sum(log_probs[t, i] for t, i in enumerate(ids)))
    assert tuple(found) == best


def test_a_stray_inside_tag_is_read_as_the_likelier_valid_reading():
    # "New York": the argmax reads B-LOC, then I-PER (a stray tag that conlleval opens a PER with)
    probs = numpy.array([[0.1, 0.8, 0.0, 0.1, 0.0], [0.1, 0.0, 0.4, 0.0, 0.5]])
    argmax = [LABELS[i] for i in probs.argmax(axis=1)]
    assert spans_of_bio(argmax) == [(0, 1, "LOC"), (1, 2, "PER")]
    ids = best_valid_sequence(log_softmax(probs, normalized=True), allowed_transitions(LABELS))
    assert spans_of_bio([LABELS[i] for i in ids]) == [(0, 2, "LOC")]
    # a valid argmax is kept as it is; no tokens, no tags
    valid = numpy.array([[0.1, 0.8, 0.0, 0.1, 0.0], [0.1, 0.0, 0.5, 0.0, 0.4]])
    assert list(best_valid_sequence(log_softmax(valid, True), allowed_transitions(LABELS))) == [1, 2]
    assert best_valid_sequence(numpy.zeros((0, len(LABELS))), allowed_transitions(LABELS)).shape == (0,)


def test_log_probabilities_are_the_same_from_logits_or_probabilities():
    logits = numpy.array([[2.0, -1.0, 0.5], [1000.0, 0.0, -1000.0]])  # the second would overflow exp
    from_logits = log_softmax(logits, normalized=False)
    assert numpy.allclose(numpy.exp(from_logits).sum(axis=1), 1.0)
    probs = numpy.exp(from_logits)
    assert numpy.allclose(log_softmax(probs[:1], normalized=True), from_logits[:1])
    # a probability that underflowed to 0 ranks last but leaves every path possible
    assert numpy.isfinite(log_softmax(numpy.array([[1.0, 0.0]]), normalized=True)).all()
