"""`bio_ner`: named entities as one BIO tag a token, the unmasking paper's head.

Dukić & Šnajder label each word with a linear layer over its first piece, trained with
cross-entropy on BIO tags. spaCy has that model already: `spacy.Tagger.v2` (a listener's
vectors, one softmax layer) trained by the `tagger` component with spaCy's sequence
cross-entropy. `BIOTagger` is that component with entities for tags: its gold tags come
from the reference `doc.ents` (aligned to the predicted tokens as spaCy's `ner` aligns
them), its predictions are written to `doc.ents`, and it is scored as `ner` is (`ents_f`,
...), so it drops in where `ner` stands, score weights included.

It predicts each token on its own; a tag sequence that no entity has (an `I-` after `O` or
after another label) is read the way conlleval reads it: the `I-` opens an entity.
"""
from itertools import islice
from typing import Callable, Iterable, List, Optional, Sequence, Tuple

from spacy.language import Language
from spacy.pipeline.tagger import Tagger
from spacy.tokens import Doc, Span
from spacy.training import Example, validate_examples, validate_get_examples
from thinc.api import Config, Model, SequenceCategoricalCrossentropy

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


class BIOTagger(Tagger):
    """spaCy's `tagger`, tagging each token B-/I-<entity label> or O and setting `doc.ents`."""

    def initialize(self, get_examples: Callable[[], Iterable[Example]], *, nlp=None, labels=None):
        """Labels: B- and I- of every entity label in the examples (or `labels`, entity labels), and O."""
        validate_get_examples(get_examples, "BIOTagger.initialize")
        if labels is None:
            labels = sorted({ent.label_ for eg in get_examples() for ent in eg.reference.ents})
        for tag in [OUTSIDE] + [f"{prefix}-{label}" for label in labels for prefix in "BI"]:
            self.add_label(tag)
        docs, truths = [], []
        for eg in islice(get_examples(), 10):
            docs.append(eg.predicted)
            truths.append(self.model.ops.asarray(
                [[1.0 if tag == gold else 0.0 for tag in self.labels] for gold in self._gold(eg)], dtype="float32"))
        self.model.initialize(X=docs, Y=truths)

    def _gold(self, eg: Example) -> List[Optional[str]]:
        return [bio_of_biluo(tag) for tag in eg.get_aligned_ner()]

    def get_loss(self, examples: Iterable[Example], scores) -> Tuple[float, List]:
        validate_examples(examples, "BIOTagger.get_loss")
        loss_func = SequenceCategoricalCrossentropy(
            names=self.labels, normalize=False, neg_prefix=self.cfg["neg_prefix"],
            label_smoothing=self.cfg["label_smoothing"],
        )
        d_scores, loss = loss_func(scores, [self._gold(eg) for eg in examples])
        return float(loss), d_scores

    def set_annotations(self, docs: Iterable[Doc], batch_tag_ids) -> None:
        if isinstance(docs, Doc):
            docs = [docs]
        labels = self.labels
        for doc, tag_ids in zip(docs, batch_tag_ids):
            tags = [labels[int(i)] for i in (tag_ids.get() if hasattr(tag_ids, "get") else tag_ids)]
            doc.ents = [Span(doc, start, end, label=label) for start, end, label in spans_of_bio(tags)]


@Language.factory(
    "bio_ner",
    assigns=["doc.ents", "token.ent_iob", "token.ent_type"],
    default_config={
        "model": DEFAULT_MODEL,
        "scorer": {"@scorers": "spacy.ner_scorer.v1"},
        "neg_prefix": "!",
        "label_smoothing": 0.0,
    },
    default_score_weights={"ents_f": 1.0, "ents_p": 0.0, "ents_r": 0.0, "ents_per_type": None},
)
def make_bio_ner(nlp: Language, name: str, model: Model, scorer: Optional[Callable], neg_prefix: str,
                 label_smoothing: float) -> BIOTagger:
    """Named entities as BIO tags, one softmax over each token's vector (the unmasking paper's head).

    model (Model[List[Doc], List[Floats2d]]): Scores each token's tags: by default
        `spacy.Tagger.v2` over a transformer listener that reads each word's first piece
        (`reduce_first.v1`), as the paper does.
    scorer (Optional[Callable]): Scores `doc.ents`, as for `ner` (`spacy.ner_scorer.v1`).
    neg_prefix (str): As in spaCy's `tagger`: a gold tag "!X" says only that the tag is not X.
    label_smoothing (float): As in spaCy's `tagger`: moves this much of the target's mass
        from the gold tag to the others.
    """
    return BIOTagger(nlp.vocab, model, name=name, overwrite=True, scorer=scorer, neg_prefix=neg_prefix,
                     label_smoothing=label_smoothing)
