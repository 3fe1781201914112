"""From each token's BIO tag scores to one tag a token: on its own, or the best valid sequence.

A tagger that scores each token on its own can emit a sequence no entity has: an `I-X` after
`O`, or after a tag of another label. Read as conlleval reads it, such an `I-` opens an entity,
so one stray tag cuts a name into fragments or glues a word to its neighbour. `viterbi` takes
instead the sequence with the highest total log-probability among those in which every `I-X`
continues a `B-X` or `I-X` (the constraint of AllenNLP's `allowed_transitions`, here without a
learned transition score): the tagger and its training are the same, only the reading changes.
"""
from typing import Dict, Sequence

import numpy

DECODINGS: Dict[str, str] = {
    "argmax": "each token's best tag on its own; an I- that continues nothing opens an entity",
    "viterbi": "the best tag sequence in which every I- continues an entity of its label",
}


def allowed_transitions(labels: Sequence[str]) -> numpy.ndarray:
    """(n_tags + 1, n_tags) bools: row i, column j says tag j may follow tag i; the last row is
    the sequence's start, where no I- may stand."""
    def may_follow(previous, tag):
        if not tag.startswith("I-"):
            return True
        return previous is not None and previous[:2] in ("B-", "I-") and previous[2:] == tag[2:]

    rows = list(labels) + [None]
    return numpy.array([[may_follow(previous, tag) for tag in labels] for previous in rows], dtype=bool)


def best_valid_sequence(log_probs: numpy.ndarray, allowed: numpy.ndarray) -> numpy.ndarray:
    """The tag ids (one a token) with the highest summed log-probability among the sequences
    `allowed` permits (`allowed_transitions`). `log_probs`: (n_tokens, n_tags)."""
    n_tokens, n_tags = log_probs.shape
    if n_tokens == 0:
        return numpy.zeros((0,), dtype="int64")
    # -inf where a transition is forbidden; "O" and every "B-" are always open, so a path exists
    penalty = numpy.where(allowed, 0.0, -numpy.inf)
    score = penalty[-1] + log_probs[0]
    back = numpy.zeros((n_tokens, n_tags), dtype="int64")
    for t in range(1, n_tokens):
        candidates = score[:, None] + penalty[:-1]  # (previous tag, tag)
        back[t] = candidates.argmax(axis=0)
        score = candidates[back[t], numpy.arange(n_tags)] + log_probs[t]
    path = [int(score.argmax())]
    for t in range(n_tokens - 1, 0, -1):
        path.append(int(back[t, path[-1]]))
    return numpy.array(path[::-1], dtype="int64")


def log_softmax(scores: numpy.ndarray, normalized: bool) -> numpy.ndarray:
    """Each row's log-probabilities, from probabilities (`normalized`) or from raw logits (what
    `spacy.Tagger.v2` with `normalize = false` returns at prediction time)."""
    scores = numpy.asarray(scores, dtype="float64")
    if normalized:
        # floored, so that a probability that underflowed to 0 ranks last instead of ruling out every path
        return numpy.log(numpy.maximum(scores, 1e-300))
    shifted = scores - scores.max(axis=1, keepdims=True)
    return shifted - numpy.log(numpy.exp(shifted).sum(axis=1, keepdims=True))
