"""`bio_ner`: named entities as one BIO tag a token, the unmasking paper's head.

Dukić & Šnajder label each word with a linear layer over its first piece, trained with
cross-entropy on BIO tags. spaCy has that model already: `spacy.Tagger.v2` (a listener's
vectors, one softmax layer) trained by the `tagger` component with spaCy's sequence
cross-entropy. `BIOTagger` is that component with entities for tags: its gold tags come
from the reference `doc.ents` (aligned to the predicted tokens as spaCy's `ner` aligns
them), its predictions are written to `doc.ents`, and it is scored as `ner` is (`ents_f`,
...), so it drops in where `ner` stands, score weights included.

It scores each token on its own. `decoding` says how the scores become tags
(`bio_decoding`): `argmax`, the paper's, takes each token's best tag, and a sequence that no
entity has (an `I-` after `O` or after another label) is read as conlleval reads it, the `I-`
opening an entity; `viterbi` takes the best sequence in which every `I-` continues its entity.
"""
from itertools import islice
from typing import Callable, Iterable, List, Optional, Sequence, Tuple

from spacy.language import Language
from spacy.pipeline.tagger import Tagger
from spacy.tokens import Doc, Span
from spacy.training import Example, validate_examples, validate_get_examples
from thinc.api import Config, Model, SequenceCategoricalCrossentropy

from .bio_decoding import DECODINGS, allowed_transitions, best_valid_sequence, log_softmax
from .errors import ConfigError

OUTSIDE = "O"

DEFAULT_MODEL = Config().from_str(
    """
[model]
@architectures = "spacy.Tagger.v2"
nO = null
normalize = false

[model.tok2vec]
@architectures = "spacy-transformers.TransformerListener.v1"
grad_factor = 1.0
upstream = "*"

[model.tok2vec.pooling]
@layers = "reduce_first.v1"
"""
)["model"]


def bio_of_biluo(tag: Optional[str]) -> Optional[str]:
    """spaCy's aligned BILUO tag as BIO; None (misaligned or unannotated) stays None."""
    if tag is None or tag in ("", "-"):
        return None
    if tag == OUTSIDE:
        return OUTSIDE
    prefix, label = tag.split("-", 1)
    return ("B-" if prefix in ("B", "U") else "I-") + label


def spans_of_bio(tags: Sequence[str]) -> List[Tuple[int, int, str]]:
    """(start, end, label) token spans of a BIO sequence; an `I-` that continues nothing opens one."""
    spans, start, label = [], None, None
    for i, tag in enumerate(list(tags) + [OUTSIDE]):
        prefix, _, name = tag.partition("-")
        if start is not None and not (prefix == "I" and name == label):
            spans.append((start, i, label))
            start = label = None
        if prefix in ("B", "I") and start is None:
            start, label = i, name
    return spans


def softmax_of(model: Model) -> Optional[Model]:
    """The model's softmax layer over the tags (its `softmax` ref in `spacy.Tagger.v2`), or None."""
    if model.has_ref("softmax"):
        return model.get_ref("softmax")
    return next((node for node in model.walk() if node.name == "softmax"), None)


class BIOTagger(Tagger):
    """spaCy's `tagger`, tagging each token B-/I-<entity label> or O and setting `doc.ents`.

    `decoding` (one of `DECODINGS`) is fixed when the component is made, from the pipeline's
    config, so that a saved pipeline decodes as its config says; `guesses` reads scores with
    either decoding, for comparing them on the same predictions."""

    def __init__(self, *args, decoding: str = "argmax", **kwargs):
        super().__init__(*args, **kwargs)
        if decoding not in DECODINGS:
            raise ConfigError(f"components.{self.name}.decoding", decoding,
                              "; ".join(f"{name!r}: {what}" for name, what in DECODINGS.items()))
        self._decoding = decoding

    @property
    def decoding(self) -> str:
        return self._decoding

    def guesses(self, scores, decoding: str) -> List:
        """Each doc's tag ids from its tag scores (`model.predict`'s), read by `decoding`."""
        if decoding == "argmax":
            return super()._scores2guesses(scores)
        if decoding not in DECODINGS:
            raise ValueError(f"decoding {decoding!r}: use one of {', '.join(DECODINGS)}")
        # the softmax layer returns logits at prediction time when the model does not normalize
        normalized = softmax_of(self.model).attrs["softmax_normalize"]
        allowed = allowed_transitions(self.labels)
        return [best_valid_sequence(log_softmax(self.model.ops.to_numpy(doc_scores), normalized), allowed)
                for doc_scores in scores]

    def _scores2guesses(self, scores):
        return self.guesses(scores, self.decoding)

    @property
    def label_data(self) -> Tuple[str, ...]:
        """The entity labels (what `spacy init labels` saves and `initialize(labels=...)` takes)."""
        return tuple(sorted({tag[2:] for tag in self.labels if tag != OUTSIDE}))

    def add_label(self, label: str) -> int:
        """Add an entity label (its B- and I- tags, and O), or one tag given as "B-X", "I-X" or "O"."""
        if not isinstance(label, str):
            return super().add_label(label)  # spaCy's error
        if label == OUTSIDE or label[:2] in ("B-", "I-"):
            tags = [OUTSIDE, label]
        else:
            tags = [OUTSIDE, f"B-{label}", f"I-{label}"]
        return int(any([super(BIOTagger, self).add_label(tag) for tag in tags]))

    def initialize(self, get_examples: Callable[[], Iterable[Example]], *, nlp=None, labels=None):
        """Labels: B- and I- of every entity label in the examples (or in `labels`), and O."""
        validate_get_examples(get_examples, "BIOTagger.initialize")
        if labels is None:
            labels = sorted({ent.label_ for eg in get_examples() for ent in eg.reference.ents})
        for label in labels:
            self.add_label(label)
        if len(self.labels) < 2:
            raise ValueError(f"[{self.name}] bio_ner found no entity labels in the training examples "
                             "(and none were given): it has nothing to learn")
        docs, truths = [], []
        for eg in islice(get_examples(), 10):
            docs.append(eg.predicted)
            truths.append(self.model.ops.asarray(
                [[1.0 if tag == gold else 0.0 for tag in self.labels] for gold in self._gold(eg)], dtype="float32"))
        if not docs:
            raise ValueError(f"[{self.name}] bio_ner.initialize got no training examples")
        self.model.initialize(X=docs, Y=truths)

    def _gold(self, eg: Example) -> List[Optional[str]]:
        return [bio_of_biluo(tag) for tag in eg.get_aligned_ner()]

    def get_loss(self, examples: Iterable[Example], scores) -> Tuple[float, List]:
        validate_examples(examples, "BIOTagger.get_loss")
        loss_func = SequenceCategoricalCrossentropy(
            names=self.labels, normalize=False, label_smoothing=self.cfg["label_smoothing"],
        )
        d_scores, loss = loss_func(scores, [self._gold(eg) for eg in examples])
        return float(loss), d_scores

    def set_annotations(self, docs: Iterable[Doc], batch_tag_ids) -> None:
        if isinstance(docs, Doc):
            docs = [docs]
        labels = self.labels
        for doc, tag_ids in zip(docs, batch_tag_ids):
            tags = [labels[int(i)] for i in (tag_ids.get() if hasattr(tag_ids, "get") else tag_ids)]
            # entities set before this component (an entity_ruler, say) stay, as with spaCy's `ner`:
            # a predicted entity that overlaps one of them is dropped
            taken = {i for ent in doc.ents for i in range(ent.start, ent.end)}
            new = [Span(doc, start, end, label=label) for start, end, label in spans_of_bio(tags)
                   if taken.isdisjoint(range(start, end))]
            doc.set_ents(new, default="unmodified")


@Language.factory(
    "bio_ner",
    assigns=["doc.ents", "token.ent_iob", "token.ent_type"],
    default_config={
        "model": DEFAULT_MODEL,
        "scorer": {"@scorers": "spacy.ner_scorer.v1"},
        "label_smoothing": 0.0,
        "decoding": "argmax",
    },
    default_score_weights={"ents_f": 1.0, "ents_p": 0.0, "ents_r": 0.0, "ents_per_type": None},
)
def make_bio_ner(nlp: Language, name: str, model: Model, scorer: Optional[Callable],
                 label_smoothing: float, decoding: str) -> BIOTagger:
    """Named entities as BIO tags, one softmax over each token's vector (the unmasking paper's head).

    model (Model[List[Doc], List[Floats2d]]): Scores each token's tags: by default
        `spacy.Tagger.v2` over a transformer listener that reads each word's first piece
        (`reduce_first.v1`), as the paper does.
    scorer (Optional[Callable]): Scores `doc.ents`, as for `ner` (`spacy.ner_scorer.v1`).
    label_smoothing (float): As in spaCy's `tagger`: moves this much of the target's mass
        from the gold tag to the others.
    decoding (str): How each token's tag scores become tags: "argmax" (each token's best
        tag on its own, as the paper; an I- that continues nothing opens an entity) or
        "viterbi" (the highest-scoring tag sequence in which every I- continues a B- or I- of
        its label). The loss does not depend on it; it moves the predictions, and in
        training the dev score that picks `model-best`.
    """
    if softmax_of(model) is None:
        raise ValueError(f"[{name}] bio_ner needs a model that ends in a softmax over its tags, such as "
                         f"spacy.Tagger.v2 over a listener; got {model.name!r} (a config that only changes "
                         "`ner`'s factory keeps ner's TransitionBasedParser: replace [components.ner.model] too)")
    return BIOTagger(nlp.vocab, model, name=name, scorer=scorer, label_smoothing=label_smoothing, decoding=decoding)
