"""`bio_ner`: BIO tags from the reference entities, entities from the predicted tags."""
import random

import numpy
import pytest
import spacy
from spacy.tokens import Doc
from spacy.training import Example
from thinc.api import Config

from spacy_unmask.bio_decoding import allowed_transitions, best_valid_sequence
from spacy_unmask.bio_tagger import bio_of_biluo, spans_of_bio

from .pipelines import TEXTS, TRAIN, config_text


@pytest.mark.parametrize(
    "tags, spans",
    [
        (["O", "B-LOC", "I-LOC", "O"], [(1, 3, "LOC")]),
        (["B-PER", "B-PER", "I-PER"], [(0, 1, "PER"), (1, 3, "PER")]),  # two entities side by side
        (["B-PER", "I-LOC", "I-LOC"], [(0, 1, "PER"), (1, 3, "LOC")]),  # a label change opens one
        (["O", "I-ORG", "I-ORG", "O", "I-ORG"], [(1, 3, "ORG"), (4, 5, "ORG")]),  # stray I- as conlleval
        (["B-LOC"], [(0, 1, "LOC")]),
        ([], []),
        (["O", "O"], []),
    ],
)
def test_bio_tags_read_as_conlleval_reads_them(tags, spans):
    assert spans_of_bio(tags) == spans


def test_biluo_gold_becomes_bio_and_missing_stays_missing():
    assert [bio_of_biluo(t) for t in ["U-LOC", "B-PER", "I-PER", "L-PER", "O", "-", "", None]] == [
        "B-LOC", "B-PER", "I-PER", "I-PER", "O", None, None, None]


def bio_nlp(name):
    config = Config().from_str(config_text(name))
    config["components"]["ner"] = {"factory": "bio_ner"}  # its default model: a listener, first piece
    return spacy.util.load_model_from_config(config, auto_fill=True, validate=True)


def examples(nlp):
    return [Example.from_dict(nlp.make_doc(text), {"entities": ents}) for text, ents in TRAIN]


def test_bio_ner_learns_the_entities_and_is_scored_as_ner(tiny_llama, tmp_path):
    random.seed(0)
    spacy.util.fix_random_seed(0)
    nlp = bio_nlp(tiny_llama)
    assert nlp.get_pipe("ner").__class__.__name__ == "BIOTagger"
    data = examples(nlp)
    optimizer = nlp.initialize(lambda: data)
    assert nlp.get_pipe("ner").labels == ("O", "B-LOC", "I-LOC", "B-ORG", "I-ORG", "B-PER", "I-PER")
    optimizer.learn_rate = 3e-3
    losses = []
    for _ in range(60):
        step = {}
        nlp.update(data, sgd=optimizer, losses=step)
        losses.append(step["ner"])
    assert losses[-1] < 0.2 * losses[0]
    scores = nlp.evaluate(examples(nlp))
    assert scores["ents_f"] > 0.9 and "ents_per_type" in scores
    # every awkward text gets a doc; the saved pipeline predicts what the live one does
    docs = list(nlp.pipe(TEXTS))
    nlp.to_disk(tmp_path / "nlp")
    again = spacy.load(tmp_path / "nlp")
    assert [[(e.start, e.end, e.label_) for e in d.ents] for d in docs] == [
        [(e.start, e.end, e.label_) for e in d.ents] for d in again.pipe(TEXTS)]
    assert [(e.text, e.label_) for e in again("I love New York so much .").ents] == [("New York", "LOC")]


def test_misaligned_and_unannotated_tokens_carry_no_loss(tiny_llama):
    nlp = bio_nlp(tiny_llama)
    data = examples(nlp)
    nlp.initialize(lambda: data)
    tagger = nlp.get_pipe("ner")
    # an entity that is part of a predicted token ("York" in "NewYork") has no gold tag there;
    # one that spans two predicted tokens aligns by its characters
    predicted = Doc(nlp.vocab, words=["I", "love", "NewYork", "and", "New", "York", "."])
    reference = Doc(nlp.vocab, words=["I", "love", "New", "York", "and", "New York", "."],
                    spaces=[True, True, False, True, True, True, False],
                    ents=["O", "O", "O", "B-LOC", "O", "B-LOC", "O"])
    assert tagger._gold(Example(predicted, reference)) == ["O", "O", None, "O", "B-LOC", "I-LOC", "O"]
    unannotated = Example(nlp.make_doc("Obama visited ."), Doc(nlp.vocab, words=["Obama", "visited", "."]))
    assert tagger._gold(unannotated) == [None, None, None]
    scores = tagger.model.predict([unannotated.predicted])
    loss, d_scores = tagger.get_loss([unannotated], scores)
    assert loss == 0.0 and float(abs(d_scores[0]).sum()) == 0.0


def test_labels_round_trip_through_label_data_as_spacy_init_labels_saves_them(tiny_llama):
    trained = bio_nlp(tiny_llama)
    trained.initialize(lambda: examples(trained))
    saved = trained.get_pipe("ner").label_data
    assert saved == ("LOC", "ORG", "PER")
    # [initialize.components.ner] labels = what `spacy init labels` saved; the examples have LOC only
    config = Config().from_str(config_text(tiny_llama))
    config["components"]["ner"] = {"factory": "bio_ner"}
    config["initialize"] = {"components": {"ner": {"labels": list(saved)}}}
    fresh = spacy.util.load_model_from_config(config, auto_fill=True, validate=True)
    fresh.initialize(lambda: examples(fresh)[3:])
    assert fresh.get_pipe("ner").labels == trained.get_pipe("ner").labels
    fresh.update(examples(fresh))  # trains with the restored labels
    # add_label takes an entity label, as ner's does, or one tag
    blank = bio_nlp(tiny_llama).get_pipe("ner")
    assert blank.add_label("MISC") == 1 and blank.add_label("B-MISC") == 0
    assert blank.labels == ("O", "B-MISC", "I-MISC")


def test_entities_set_before_it_stay_as_with_spacys_ner(tiny_llama):
    nlp = bio_nlp(tiny_llama)
    nlp.initialize(lambda: examples(nlp))
    tagger = nlp.get_pipe("ner")
    doc = nlp.make_doc("Obama visited Paris .")
    doc.ents = [doc.char_span(0, 5, label="PER")]
    every_token_loc = [[tagger.labels.index("B-LOC")] * len(doc)]
    tagger.set_annotations([doc], every_token_loc)
    assert [(e.text, e.label_) for e in doc.ents] == [("Obama", "PER"), ("visited", "LOC"), ("Paris", "LOC"), (".", "LOC")]


def test_a_config_that_only_swaps_the_factory_is_refused_naming_the_model(tiny_llama):
    config = Config().from_str(config_text(tiny_llama))
    config["components"]["ner"]["factory"] = "bio_ner"  # ner's TransitionBasedParser stays
    with pytest.raises(ValueError, match=r"softmax.*replace \[components.ner.model\] too"):
        spacy.util.load_model_from_config(config, auto_fill=True, validate=True)


def test_training_data_without_entities_is_refused(tiny_llama):
    nlp = bio_nlp(tiny_llama)
    plain = [Example.from_dict(nlp.make_doc("no entities here"), {"entities": []})]
    with pytest.raises(ValueError, match="no entity labels"):
        nlp.initialize(lambda: plain)


def test_viterbi_decoding_never_leaves_a_stray_inside_tag_and_follows_the_config(tiny_llama, tmp_path):
    nlp = bio_nlp(tiny_llama)
    nlp.initialize(lambda: examples(nlp))
    tagger = nlp.get_pipe("ner")
    assert tagger.decoding == "argmax"
    # random output weights (spaCy starts them at zero): the argmax tags are any tags at all
    softmax = tagger.model.get_ref("softmax")
    softmax.set_param("W", numpy.random.default_rng(0).normal(size=softmax.get_param("W").shape).astype("float32"))
    texts = TEXTS + ["Obama met Merkel in New York and Paris .", "", "Paris ."]
    docs = list(nlp.pipe(texts, disable=["ner"]))
    logits = tagger.model.predict(docs)  # Tagger.v2 with normalize = false: raw scores at prediction
    viterbi = [[tagger.labels[i] for i in ids] for ids in tagger.guesses(logits, "viterbi")]
    argmax = [[tagger.labels[i] for i in ids] for ids in tagger.guesses(logits, "argmax")]
    # the best valid sequence of the log-probabilities is that of the logits: a token's
    # normaliser adds the same to every path
    allowed = allowed_transitions(tagger.labels)
    assert [list(ids) for ids in tagger.guesses(logits, "viterbi")] == [
        list(best_valid_sequence(numpy.asarray(doc_logits, dtype="float64"), allowed)) for doc_logits in logits]
    assert [len(tags) for tags in viterbi] == [len(doc) for doc in docs]
    assert all(i > 0 and tag[2:] == tags[i - 1][2:] and tags[i - 1] != "O" for tags in viterbi
               for i, tag in enumerate(tags) if tag.startswith("I-"))
    assert any(spans_of_bio(a) != spans_of_bio(v) for a, v in zip(argmax, viterbi))  # the entities differ
    # the same weights in a model that normalizes decode the same
    softmax.attrs["softmax_normalize"] = True
    assert [list(ids) for ids in tagger.guesses(tagger.model.predict(docs), "viterbi")] == [
        [tagger.labels.index(tag) for tag in tags] for tags in viterbi]
    softmax.attrs["softmax_normalize"] = False
    # the pipeline decodes as its config says, saved and loaded, or loaded with the other value
    nlp.to_disk(tmp_path / "nlp")
    loaded = spacy.load(tmp_path / "nlp", config={"components": {"ner": {"decoding": "viterbi"}}})
    assert loaded.get_pipe("ner").decoding == "viterbi"
    assert [[(e.start, e.end, e.label_) for e in doc.ents] for doc in loaded.pipe(texts)] == [
        spans_of_bio(tags) for tags in viterbi]
    loaded.to_disk(tmp_path / "viterbi")
    assert spacy.load(tmp_path / "viterbi").get_pipe("ner").decoding == "viterbi"
    with pytest.raises(ValueError, match=r"components.ner.decoding='beam' is not accepted.*'viterbi'"):
        spacy.load(tmp_path / "nlp", config={"components": {"ner": {"decoding": "beam"}}})
