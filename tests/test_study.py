"""The recipe study's plan: arms written explicitly into the shipped config, schedules that end on
an evaluated step, and the staging rule (seed 0 over a grid, the two best confirmed on 3 seeds)."""
import dataclasses

import pytest
import spacy
from spacy.tokens import DocBin
from spacy.training import Example
from thinc.api import Config

import study
import study_plan
import study_report
from study_plan import Arm, Plan, settle

from .pipelines import TRAIN, config_text


def record(arm, seed, ner, spancat=0.0, by_threshold=None):
    """A run's record; `by_threshold` gives dev spancat F1 at each threshold (default: `spancat` at all)."""
    by_threshold = by_threshold or {t: spancat for t in study_plan.SPANCAT_THRESHOLDS}
    return {"heads": arm.heads, "dev": {"ents_f": ner, "spans_sc_f": spancat}, "seed": seed,
            "spancat_thresholds": {f"{t:g}": {"dev": {"f": f}} for t, f in by_threshold.items()}}


def test_a_fixed_schedule_ends_on_an_evaluated_step_with_the_rate_schedule():
    training = Arm(epochs=5).config()["training"]
    steps = 5 * study_plan.STEPS_PER_EPOCH
    assert training["max_epochs"] == 0 and training["max_steps"] == steps
    assert steps % training["eval_frequency"] == 0  # spaCy evaluates step `max_steps`, the last one
    assert training["optimizer"]["learn_rate"]["total_steps"] == steps


def test_every_studied_knob_is_written_so_the_shipped_defaults_can_follow_the_answers():
    arm = Arm(epochs=3, spancat_grad=0.25, lr=1e-4, n_layers=22, unmask="all")
    config = arm.config()
    model = config["components"]["transformer"]["model"]
    assert (model["n_layers"], model["unmask"]) == (22, "all")
    assert config["components"]["spancat"]["model"]["tok2vec"]["grad_factor"] == 0.25
    assert config["training"]["optimizer"]["learn_rate"]["initial_rate"] == 1e-4
    ner = dataclasses.replace(arm, heads="ner").config()
    assert ner["nlp"]["pipeline"] == ["transformer", "ner"] and "spancat" not in ner["components"]
    encoder = Arm(family="minilm", epochs=3).config()["components"]["transformer"]["model"]
    assert encoder["@architectures"] == "spacy-transformers.TransformerModel.v3"


def test_the_heads_rate_and_pooling_are_written_and_left_out_when_at_the_default(tmp_path, monkeypatch):
    arm = Arm(epochs=5, lr=2e-4, head_rate=1e-3, pooling="first")
    config = arm.config()
    assert config["training"]["optimizer"]["learn_rate"]["initial_rate"] == 1e-3
    assert config["components"]["transformer"]["model"]["learn_rate_scale"] == 0.2
    for listener in ("ner", "spancat"):
        assert config["components"][listener]["model"]["tok2vec"]["pooling"] == {"@layers": "reduce_first.v1"}
    # a shipped config that has moved to the answers: an arm at the old defaults still trains them
    shipped = tmp_path / "cpu.cfg"
    shipped.write_text(config.to_str())
    monkeypatch.setattr(study_plan, "SHIPPED", shipped)
    plain = Arm(epochs=5).config()
    assert "learn_rate_scale" not in plain["components"]["transformer"]["model"]
    assert plain["training"]["optimizer"]["learn_rate"]["initial_rate"] == 2e-4
    assert plain["components"]["ner"]["model"]["tok2vec"]["pooling"] == {"@layers": "reduce_mean.v1"}
    monkeypatch.undo()
    assert study_plan.digest(plain) == study_plan.digest(Arm(epochs=5).config())


def test_the_bio_head_takes_the_ner_listener_and_its_pooling():
    config = Arm(epochs=5, ner_head="bio", pooling="first").config()
    ner = config["components"]["ner"]
    assert ner["factory"] == "bio_ner" and ner["model"]["@architectures"] == "spacy.Tagger.v2"
    assert ner["model"]["tok2vec"]["@architectures"] == "spacy-transformers.TransformerListener.v1"
    assert ner["model"]["tok2vec"]["pooling"] == {"@layers": "reduce_first.v1"}
    assert config["nlp"]["pipeline"] == ["transformer", "ner", "spancat", "doc_cleaner"]


def test_later_stages_build_on_the_budget_when_a_longer_schedule_and_a_deeper_decoder_win():
    def get(arm, seed):  # 8 epochs and 30 layers best on dev; everything else equal
        return record(arm, seed, 0.5 + 0.01 * (arm.epochs or 0) + 0.001 * arm.n_layers, 0.4)

    plan = Plan(get)
    plan.run()
    answers = {found.stage: (found.arm, found.final) for found in plan.answers}
    assert answers["epochs"][0].epochs == 8 and answers["epochs"][1]
    assert answers["heads' rate"][0].epochs == study_plan.BUDGET_EPOCHS
    assert answers["depth"][0].n_layers == 30
    assert answers["spec"][0].epochs == study_plan.BUDGET_EPOCHS
    assert answers["spec"][0].n_layers == study_plan.BUDGET_LAYERS
    assert answers["ner only"][0].heads == "ner" and answers["ner only"][1]
    long = answers["long"][0]
    assert (long.epochs, long.n_layers) == (8, 30)
    assert dataclasses.replace(long, epochs=study_plan.BUDGET_EPOCHS, n_layers=study_plan.BUDGET_LAYERS) == answers["threshold"][0]


def test_the_shipped_recipe_trains_at_the_threshold_chosen_on_the_spec_winners_dev_runs():
    asked = []

    def get(arm, seed):
        asked.append((arm, seed))
        # spancat's dev F1 peaks at 0.3 for the decoder and at 0.2 for MiniLM
        peak = 0.2 if arm.family == "minilm" else 0.3
        return record(arm, seed, 0.5, 0.4, {t: 0.4 - abs(t - peak) for t in study_plan.SPANCAT_THRESHOLDS})

    plan = Plan(get)
    plan.run()
    answers = {found.stage: (found.arm, found.final) for found in plan.answers}
    shipped, final = answers["threshold"]
    assert final and shipped == dataclasses.replace(answers["spec"][0], spancat_threshold=0.3)
    assert all((shipped, seed) in asked for seed in (0, 1, 2))  # trained at it, every seed
    assert shipped.config()["components"]["spancat"]["threshold"] == 0.3
    assert Arm(epochs=5).config()["components"]["spancat"]["threshold"] == 0.5  # whatever cpu.cfg ships
    encoder, final = answers["minilm threshold"]
    assert final and encoder.family == "minilm" and encoder.spancat_threshold == 0.2
    assert answers["ner only"][0].spancat_threshold == 0.5  # no spancat: its name and config have none
    assert "-t" not in answers["ner only"][0].name


def test_the_encoder_row_runs_after_the_shared_stages_and_before_the_decoder_only_ones():
    def get(arm, seed):  # first-piece pooling, the bio head and viterbi win; the decoder's other rates never ran
        if arm.family == "decoder" and arm.lr != 2e-4:
            return None
        return record(arm, seed, 0.5 + 0.05 * (arm.pooling == "first") + 0.05 * (arm.ner_head == "bio")
                      + 0.05 * (arm.ner_decoding == "viterbi"), 0.4)

    plan = Plan(get)
    plan.run()
    labels = [found.stage for found in plan.answers]
    assert labels.index("minilm threshold") < labels.index("rate") == len(labels) - 1
    answers = {found.stage: (found.arm, found.final) for found in plan.answers}
    encoder, final = answers["minilm threshold"]
    assert final and (encoder.family, encoder.pooling, encoder.ner_head, encoder.ner_decoding) == (
        "minilm", "first", "bio", "viterbi")
    assert encoder.epochs == answers["ner head"][0].epochs
    assert answers["rate"][1] is False  # provisional: the decoder-only stages wait for it


def test_the_encoder_gets_the_ner_head_that_wins_on_its_own_dev_runs():
    def get(arm, seed):  # the decoder does better with bio_ner and viterbi, MiniLM with spaCy's ner
        if arm.family == "decoder" and arm.lr != 2e-4:
            return None
        bio = arm.ner_head == "bio"
        return record(arm, seed, 0.5 + 0.05 * (bio if arm.family == "decoder" else not bio)
                      + 0.05 * (arm.ner_decoding == "viterbi"), 0.4)

    plan = Plan(get)
    plan.run()
    answers = {found.stage: (found.arm, found.final) for found in plan.answers}
    assert (answers["ner decoding"][0].ner_head, answers["ner decoding"][0].ner_decoding) == ("bio", "viterbi")
    assert answers["minilm ner head"][1] and answers["minilm threshold"][1]
    encoder = answers["minilm threshold"][0]
    assert (encoder.family, encoder.ner_head, encoder.ner_decoding) == ("minilm", "parser", "argmax")
    assert encoder.lr == answers["minilm"][0].lr


def test_the_encoders_rate_is_chosen_again_at_its_own_head_and_only_then():
    asked = []

    def get(arm, seed):  # MiniLM: bio_ner best at 2e-4, spaCy's ner best (and better) at 5e-4
        asked.append((arm, seed))
        if arm.family == "decoder":
            return None if arm.lr != 2e-4 else record(arm, seed, 0.5 + 0.05 * (arm.ner_head == "bio"), 0.4)
        peak = 2e-4 if arm.ner_head == "bio" else 5e-4
        return record(arm, seed, 0.5 + 0.1 * (arm.ner_head == "parser") - 100 * abs(arm.lr - peak), 0.4)

    plan = Plan(get)
    plan.run()
    answers = {found.stage: (found.arm, found.final) for found in plan.answers}
    assert answers["minilm"][0].lr == 2e-4 and answers["minilm ner head"][0].ner_head == "parser"
    retuned, final = answers["minilm rate at its head"]
    assert final and (retuned.ner_head, retuned.lr) == ("parser", 5e-4)
    assert answers["minilm threshold"][0] == retuned  # the row is at the rate its own head chose
    assert (dataclasses.replace(retuned, lr=1e-4), 0) in asked  # the grid ran again at that head

    def same_head(arm, seed):  # both families best with bio_ner: the rate already chosen stands
        if arm.family == "decoder" and arm.lr != 2e-4:
            return None
        return record(arm, seed, 0.5 + 0.05 * (arm.ner_head == "bio") - 100 * abs(arm.lr - 2e-4), 0.4)

    plan = Plan(same_head)
    plan.run()
    stages = [found.stage for found in plan.answers]
    assert "minilm rate at its head" not in stages and "minilm threshold" in stages


def test_what_sharing_costs_ner_is_asked_at_the_recipe_after_the_rate_before_depth_and_spec():
    asked = []

    def get(arm, seed):  # second_half best, every other arm level (each stage keeps its first value)
        asked.append(arm)
        return record(arm, seed, 0.5 + 0.01 * (arm.unmask == "second_half"), 0.4)

    plan = Plan(get)
    plan.run()
    rated = plan.answer("rate").arm
    early = dataclasses.replace(rated, heads="ner")
    first_ner = asked.index(early)
    assert all(arm.n_layers == 15 and arm.unmask == "second_half" for arm in asked[:first_ner])
    assert any(arm.n_layers == 22 for arm in asked[first_ner:])  # depth comes after it
    assert plan.answer("ner only").arm == early  # the later stages kept the recipe: the same runs


def test_the_threshold_is_the_best_mean_on_dev_and_a_tie_goes_to_the_higher():
    arm = Arm()
    runs = [record(arm, 0, 0.5, 0.4, {0.2: 0.50, 0.3: 0.40, 0.5: 0.45}),
            record(arm, 1, 0.5, 0.4, {0.2: 0.30, 0.3: 0.41, 0.5: 0.45})]
    assert study_plan.choose_threshold(runs) == 0.5  # 0.2's mean is 0.40, 0.5's is 0.45
    assert study_plan.choose_threshold([record(arm, 0, 0.5, 0.4, {0.2: 0.5, 0.4: 0.5})]) == 0.4
    assert study_plan.choose_threshold([{"dev": {}}]) is None
    # only the thresholds every table has
    assert study_plan.choose_threshold([record(arm, 0, 0.5, 0.4, {0.2: 0.9, 0.5: 0.5}),
                                        record(arm, 1, 0.5, 0.4, {0.3: 0.9, 0.5: 0.5})]) == 0.5


def test_runs_from_before_thresholds_were_recorded_keep_0_5_and_say_so():
    def get(arm, seed):
        found = record(arm, seed, 0.5, 0.4, {0.3: 0.6, 0.5: 0.4})
        if arm.spancat_threshold == 0.5 and seed > 0:
            del found["spancat_thresholds"]
        return found

    plan = Plan(get)
    plan.run()
    threshold = plan.answer("threshold")
    assert threshold.note == "chosen on 1 of 3 runs" and threshold.arm.spancat_threshold == 0.3
    plan = Plan(lambda arm, seed: {k: v for k, v in record(arm, seed, 0.5, 0.4).items() if k != "spancat_thresholds"})
    plan.run()
    assert plan.answer("threshold").note == "no run was scored at the thresholds: 0.5 kept"
    assert plan.answer("threshold").final and plan.answer("ner only").final  # the plan goes on


def test_arm_names_tell_every_setting_apart():
    arms = [Arm(), Arm(epochs=3), Arm(heads="ner"), Arm(spancat_grad=0.5), Arm(lr=1e-4), Arm(n_layers=30),
            Arm(unmask="all"), Arm(family="minilm"), Arm(head_rate=1e-3), Arm(pooling="first"),
            Arm(ner_head="bio"), Arm(ner_head="bio", ner_decoding="viterbi"), Arm(spancat_threshold=0.3)]
    assert len({a.name for a in arms}) == len(arms)


def test_settle_confirms_the_two_best_on_every_seed_and_takes_the_better_mean():
    a, b, c = Arm(epochs=3), Arm(epochs=5), Arm(epochs=8)
    # c is best on seed 0 but collapses on seed 1; b is steady
    dev = {(a, 0): 0.40, (b, 0): 0.45, (c, 0): 0.50, (b, 1): 0.46, (b, 2): 0.44, (c, 1): 0.20, (c, 2): 0.48}
    asked = []

    def get(arm, seed):
        asked.append((arm, seed))
        return record(arm, seed, dev[(arm, seed)]) if (arm, seed) in dev else None

    assert settle([a, b, c], get) == (b, True)
    assert (a, 1) not in asked  # the third-best on seed 0 is not run again


def test_missing_runs_make_an_answer_provisional_and_stop_the_later_stages():
    plan = Plan(lambda arm, seed: record(arm, seed, 0.4, 0.3) if seed == 0 else None)
    plan.run()
    labels = [(found.stage, found.final) for found in plan.answers]
    assert labels == [("balance", False)]


def test_the_kept_checkpoint_is_the_last_evaluation_with_the_best_exact_score():
    # 0.3046 and 0.3049 both print as 0.30 in spaCy's table; of the exact ties spaCy keeps the last
    assert study.best_step([[0, 0.0], [92, 0.1], [184, 0.3046], [276, 0.3049], [368, 0.3049]]) == 368
    assert study.best_step([[0, 0.0], [92, 0.5], [184, 0.4]]) == 92
    assert study.best_step([]) is None


def test_spacy_train_writes_every_evaluations_exact_score_and_model_best_is_the_step_named(tiny_llama, tmp_path):
    from spacy.cli._util import parse_config_overrides
    from spacy.cli.train import train

    nlp = spacy.util.load_model_from_config(Config().from_str(config_text(tiny_llama)), auto_fill=True)
    corpus = tmp_path / "train.spacy"
    DocBin(docs=[eg.reference for eg in (Example.from_dict(nlp.make_doc(t), {"entities": e}) for t, e in TRAIN)]).to_disk(corpus)
    cfg = tmp_path / "cfg.cfg"
    nlp.config.to_disk(cfg)
    log = tmp_path / "out" / "evaluations.jsonl"
    args = ["--paths.train", str(corpus), "--paths.dev", str(corpus), "--training.max_steps", "6",
            "--training.max_epochs", "0", "--training.eval_frequency", "2", *study.logger_args(log)]
    train(cfg, tmp_path / "out", overrides=parse_config_overrides(args))
    evaluated = study.evaluations(log)
    assert [step for step, _ in evaluated] == [0, 2, 4, 6]
    assert any(round(score, 2) != score for _, score in evaluated)  # not the table's 2 places
    best = study.best_step(evaluated)
    kept = spacy.load(tmp_path / "out" / "model-best").meta["performance"]
    assert [score for step, score in evaluated if step == best] == [pytest.approx(kept["ents_f"])]


SPANCAT = """
[components.spancat]
factory = "spancat"
spans_key = "sc"
threshold = 0.5

[components.spancat.model]
@architectures = "spacy.SpanCategorizer.v1"

[components.spancat.model.reducer]
@layers = "spacy.mean_max_reducer.v1"
hidden_size = 16

[components.spancat.model.scorer]
@layers = "spacy.LinearLogistic.v1"

[components.spancat.model.tok2vec]
@architectures = "spacy-transformers.TransformerListener.v1"
grad_factor = 1.0

[components.spancat.model.tok2vec.pooling]
@layers = "reduce_mean.v1"

[components.spancat.suggester]
@misc = "spacy.ngram_suggester.v1"
sizes = [1, 2]
"""


def test_spancat_is_scored_at_each_threshold_as_if_it_had_been_set(tiny_llama, tmp_path):
    text = config_text(tiny_llama).replace('pipeline = ["transformer", "ner"]', 'pipeline = ["transformer", "ner", "spancat"]')
    nlp = spacy.util.load_model_from_config(Config().from_str(text + SPANCAT), auto_fill=True, validate=True)
    data = [Example.from_dict(nlp.make_doc(t), {"entities": ents, "spans": {"sc": ents}}) for t, ents in TRAIN]
    spacy.util.fix_random_seed(0)
    optimizer = nlp.initialize(lambda: data)
    optimizer.learn_rate = 3e-3
    for _ in range(40):
        nlp.update(data, sgd=optimizer)
    nlp.to_disk(tmp_path / "nlp")
    DocBin(docs=[eg.reference for eg in data]).to_disk(tmp_path / "gold.spacy")
    paths = {"dev": tmp_path / "gold.spacy", "test": tmp_path / "gold.spacy"}
    scores = study.score_run(tmp_path / "nlp", paths, thresholds=(0.1, 0.3))
    found = study.thresholds_of(scores)
    assert set(found) == {"0.1", "0.3"} and set(found["0.1"]) == {"dev", "test"}
    seen = set()
    for threshold in (0.1, 0.3, 0.5):
        direct = spacy.load(tmp_path / "nlp")
        direct.get_pipe("spancat").cfg["threshold"] = threshold  # a load-time config loses to the saved cfg
        expected = direct.evaluate([Example(direct.make_doc(eg.reference.text), eg.reference) for eg in data])
        if threshold < 0.5:
            assert found[f"{threshold:g}"]["dev"] == {k: expected[f"spans_sc_{k}"] for k in "prf"}
        else:  # the pipeline's own threshold: its scores are those of spaCy's evaluate, NER's and spancat's
            for key in ("ents_f", "ents_per_type", "spans_sc_p", "spans_sc_r", "spans_sc_f", "spans_sc_per_type"):
                assert scores["dev"][key] == expected[key], key
        seen.add(expected["spans_sc_r"])
    assert len(seen) > 1  # the thresholds cut different span sets here


def test_the_threshold_table_gives_every_arm_its_mean_per_threshold():
    def run(f):
        return {"spancat_thresholds": {t: {"dev": {"f": f + d}, "test": {"f": f}} for t, d in (("0.2", 0.1), ("0.5", 0.0))}}

    lines = study_report.thresholds_table({("a", 0): run(0.4), ("a", 1): run(0.5), ("b", 0): {"dev": {}}})
    assert lines[5] == "| `a` | 2 | 55.0 ± 7.1 | 45.0 ± 7.1 | 45.0 ± 7.1 | 45.0 ± 7.1 |"
    assert len(lines) == 6


def full_record(arm, seed, ner, spancat):
    """A finished run's record as study.py writes it, of the current recipe."""
    scores = {"ents_p": ner, "ents_r": ner, "ents_f": ner, "spans_sc_p": spancat, "spans_sc_r": spancat,
              "spans_sc_f": spancat}
    return {"run": f"{arm.name}-s{seed}", "arm": arm.name, "settings": vars(arm), "heads": arm.heads,
            "family": arm.family, "seed": seed, "recipe": study_plan.digest(study_plan.run_config(arm, False)),
            "quick": False, "train_seconds": 1.0, "train_cpu_seconds": 2.0, "other_cpu_seconds": 0.0,
            "best_step": 460, "dev": dict(scores),
            "test": {**scores, "ents_per_type": {"person": {"p": ner, "r": ner, "f": ner}}}}


def test_the_arm_that_is_the_shipped_config_gives_the_installed_pipelines_3_seed_metrics(tmp_path, monkeypatch):
    import json

    from runs import write_run

    shipped, other = Arm(epochs=3), Arm(epochs=8)
    cfg = tmp_path / "cpu.cfg"
    cfg.write_text(shipped.config().to_str())
    monkeypatch.setattr(study_report, "SHIPPED", cfg)
    out, metrics = tmp_path / "study", tmp_path / "metrics" / "cpu_seeds.json"
    out.mkdir()
    for seed, ner in enumerate((0.40, 0.44)):
        write_run(out / f"{shipped.name}-s{seed}.json", full_record(shipped, seed, ner, 0.3))
        write_run(out / f"{other.name}-s{seed}.json", full_record(other, seed, 0.9, 0.9))
    write_run(out / f"{other.name}-s2.json", full_record(other, 2, 0.9, 0.9))
    study_report.write_report(out, False, metrics)
    assert f"`configs/cpu.cfg` as it stands is arm `{shipped.name}` (2 of 3 seeds run)" in out.with_suffix(".md").read_text()
    assert not metrics.exists()  # only once every seed has run
    write_run(out / f"{shipped.name}-s2.json", full_record(shipped, 2, 0.48, 0.3))
    study_report.write_report(out, False, metrics)
    figures = json.loads(metrics.read_text())
    assert figures["arm"] == shipped.name and figures["seeds"] == [0, 1, 2]
    assert figures["test"]["ents_f"]["per_seed"] == [0.40, 0.44, 0.48]
    assert abs(figures["test"]["ents_f"]["mean"] - 0.44) < 1e-9 and abs(figures["test"]["ents_f"]["sd"] - 0.04) < 1e-9
    assert abs(figures["test_ents_per_type"]["person"]["f"] - 0.44) < 1e-9


def test_an_arms_ner_head_is_its_own_whatever_head_the_shipped_config_has(tmp_path, monkeypatch):
    parser, bio = Arm(epochs=5), Arm(epochs=5, ner_head="bio")
    plain = parser.config().to_str()
    cfg = tmp_path / "cpu.cfg"
    cfg.write_text(bio.config().to_str())  # as if cpu.cfg shipped the bio head
    monkeypatch.setattr(study_plan, "SHIPPED", cfg)
    assert parser.config()["components"]["ner"]["factory"] == "ner"
    assert parser.config().to_str() == plain and bio.config().to_str() != plain


def test_the_decoding_is_settled_for_the_bio_head_only_and_written_only_when_not_the_papers():
    assert "decoding" not in Arm(epochs=5, ner_head="bio").config()["components"]["ner"]
    assert Arm(epochs=5, ner_head="bio", ner_decoding="viterbi").config()["components"]["ner"]["decoding"] == "viterbi"
    with pytest.raises(ValueError, match="only the bio head"):
        Arm(ner_decoding="viterbi").config()

    def get(arm, seed):  # spaCy's ner wins: no decoding stage, nothing asked at viterbi
        assert arm.ner_decoding == "argmax"
        return record(arm, seed, 0.5 + 0.05 * (arm.ner_head == "parser"), 0.4)

    plan = Plan(get)
    plan.run()
    labels = [found.stage for found in plan.answers]
    assert "ner head" in labels and "ner decoding" not in labels and "minilm" in labels


def test_a_rate_ratio_is_written_as_the_number_it_means():
    scale = Arm(lr=1e-6, head_rate=1e-5).config()["components"]["transformer"]["model"]["learn_rate_scale"]
    assert 1e-6 / 1e-5 != 0.1 and scale == 0.1


def test_the_per_label_table_and_the_metrics_average_a_label_over_the_runs_that_scored_it():
    arm = Arm(epochs=5)
    runs = {(arm.name, seed): full_record(arm, seed, 0.4 + 0.1 * seed, 0.3) for seed in range(3)}
    for seed, f in ((1, 0.4), (2, 0.6)):  # a label only two runs' tables have
        runs[(arm.name, seed)]["test"]["ents_per_type"]["corporation"] = {"p": f, "r": f, "f": f}
    figures = study_report.seed_figures(runs, arm)["test_ents_per_type"]
    assert abs(figures["corporation"]["f"] - 0.5) < 1e-9 and figures["corporation"]["n"] == 2
    assert abs(figures["person"]["f"] - 0.5) < 1e-9 and figures["person"]["n"] == 3
    table = study_report.per_label(runs, arm.name)
    assert "| corporation | 50.0 ± 14.1 | 50.0 ± 14.1 | 50.0 ± 14.1 | 2 |" in table and "| person | 50.0 ± 10.0 | 50.0 ± 10.0 | 50.0 ± 10.0 | 3 |" in table


def test_the_report_sets_the_shipped_recipe_beside_minilms_row_and_keeps_its_figures(tmp_path, monkeypatch):
    import json

    from runs import write_run

    out, metrics = tmp_path / "study", tmp_path / "metrics" / "cpu_seeds.json"
    out.mkdir()

    def get(arm, seed):  # every run the plan asks for, level
        write_run(out / f"{arm.name}-s{seed}.json", full_record(arm, seed, 0.5, 0.4))
        return full_record(arm, seed, 0.5, 0.4)

    plan = Plan(get)
    plan.run()
    answers = {found.stage: found.arm for found in plan.answers}
    shipped, encoder = answers["threshold"], answers["minilm threshold"]
    cfg = tmp_path / "cpu.cfg"
    cfg.write_text(shipped.config().to_str())
    monkeypatch.setattr(study_report, "SHIPPED", cfg)
    for seed, (ours, theirs) in enumerate([(0.50, 0.45), (0.54, 0.46), (0.52, 0.47)]):
        for arm, test_ner in ((shipped, ours), (encoder, theirs)):  # dev as it was: the plan's answers stay
            run = full_record(arm, seed, 0.5, 0.4)
            run["test"]["ents_f"] = test_ner
            write_run(out / f"{arm.name}-s{seed}.json", run)
    study_report.write_report(out, False, metrics)
    text = out.with_suffix(".md").read_text()
    assert "## The shipped recipe against MiniLM-L6 in the same pipeline" in text
    # 52.0 ± 2.0 against 46.0 ± 1.0: ahead by 6.0, more than the wider sd (2.0)
    assert "| test NER | 52.0 ± 2.0 (3) | 46.0 ± 1.0 (3) | +6.0 | 2.0 | yes |" in text
    assert "| test SpanCat | 40.0 ± 0.0 (3) | 40.0 ± 0.0 (3) | +0.0 | 0.0 | no |" in text
    figures = json.loads(metrics.with_name("minilm_seeds.json").read_text())
    assert figures["arm"] == encoder.name and figures["test"]["ents_f"]["per_seed"] == [0.45, 0.46, 0.47]
    assert "minilm.cfg" in figures["config"]


def test_the_report_sets_the_shipped_recipe_beside_ner_alone_and_the_longer_recipe(tmp_path, monkeypatch):
    from runs import write_run

    out = tmp_path / "study"
    out.mkdir()

    def get(arm, seed):  # 8 epochs and 30 layers best on dev, so a longer recipe is asked for
        run = full_record(arm, seed, 0.5 + 0.01 * (arm.epochs or 0) + 0.001 * arm.n_layers, 0.4)
        write_run(out / f"{arm.name}-s{seed}.json", run)
        return run

    plan = Plan(get)
    plan.run()
    answers = {found.stage: found.arm for found in plan.answers}
    shipped, ner, long = answers["threshold"], answers["ner only"], answers["long"]
    cfg = tmp_path / "cpu.cfg"
    cfg.write_text(shipped.config().to_str())
    monkeypatch.setattr(study_report, "SHIPPED", cfg)
    joint_dev = 100 * get(shipped, 0)["dev"]["ents_f"]
    for seed, (dev, test) in enumerate([(0.01, -0.01), (0.02, -0.005), (0.03, 0.0)]):
        run = get(ner, seed)  # NER alone: 2 points above on dev, 0.5 below on test
        run["dev"]["ents_f"] += dev
        run["test"]["ents_f"] += test
        write_run(out / f"{ner.name}-s{seed}.json", run)
    study_report.write_report(out, False)
    text = out.with_suffix(".md").read_text()
    sharing = text.split("## What sharing the decoder costs NER")[1].split("##")[0]
    assert f"| dev NER | {joint_dev:.1f} ± 0.0 (3) | {joint_dev + 2:.1f} ± 1.0 (3) | -2.0 | 1.0 | no |" in sharing
    assert "| test NER |" in sharing and "| +0.5 | 0.5 | yes |" in sharing  # within 1 point, or above
    assert "SpanCat" not in sharing.split("|---|")[1]  # NER alone has none
    longer = text.split("## The longer recipe against the shipped one")[1]
    assert f"| `{long.name}` | `{shipped.name}` |" in longer
    assert "| dev NER |" in longer and "| dev SpanCat |" in longer


def test_minilms_row_is_provisional_and_keeps_no_figures_until_its_last_stage_has_run(tmp_path, monkeypatch):
    from runs import write_run

    out, metrics = tmp_path / "study", tmp_path / "metrics" / "cpu_seeds.json"
    out.mkdir()

    def get(arm, seed):  # best at 2e-4; MiniLM prefers spaCy's ner, whose other rates have not run yet
        if arm.family == "minilm" and arm.ner_head == "parser" and arm.lr != 2e-4:
            return None
        fits = (arm.ner_head == "parser") == (arm.family == "minilm")
        run = full_record(arm, seed, 0.5 + 0.05 * fits - 100 * abs(arm.lr - 2e-4), 0.4)
        write_run(out / f"{arm.name}-s{seed}.json", run)
        return run

    plan = Plan(get)
    plan.run()
    answers = {found.stage: found for found in plan.answers}
    assert not answers["minilm rate at its head"].final and "minilm threshold" not in answers
    cfg = tmp_path / "cpu.cfg"
    cfg.write_text(answers["ner decoding"].arm.config().to_str())
    monkeypatch.setattr(study_report, "SHIPPED", cfg)
    study_report.write_report(out, False, metrics)
    text = out.with_suffix(".md").read_text()
    assert "(provisional: runs missing; so far the `minilm rate at its head` stage)" in text
    assert f"| `{answers['minilm rate at its head'].arm.name}` |" in text
    assert metrics.is_file() and not metrics.with_name("minilm_seeds.json").exists()


def test_the_shipped_arm_is_found_in_quick_mode_too_whose_runs_shrink_the_decoder(tmp_path, monkeypatch):
    from runs import write_run

    arm = Arm(epochs=5)
    cfg = tmp_path / "cpu.cfg"
    cfg.write_text(arm.config().to_str())
    monkeypatch.setattr(study_report, "SHIPPED", cfg)
    run = {**full_record(arm, 0, 0.5, 0.4), "quick": True, "recipe": study_plan.digest(study_plan.run_config(arm, True))}
    write_run(tmp_path / f"{arm.name}-s0-quick.json", run)
    records, stale = study_report.current_records(tmp_path, True)
    assert stale == 0 and study_report.shipped_arm(records) == arm


def test_the_shipped_arm_is_found_whatever_order_cpu_cfg_writes_its_keys_in(tmp_path, monkeypatch):
    from runs import write_run

    arm = Arm(epochs=5, ner_head="bio", ner_decoding="viterbi")
    config = arm.config()
    ner = config["components"]["ner"]
    config["components"]["ner"] = {"decoding": ner["decoding"], **{k: v for k, v in ner.items() if k != "decoding"}}
    assert config.to_str() != arm.config().to_str()  # the same settings, written in another order
    cfg = tmp_path / "cpu.cfg"
    cfg.write_text(config.to_str())
    monkeypatch.setattr(study_report, "SHIPPED", cfg)
    write_run(tmp_path / f"{arm.name}-s0.json", full_record(arm, 0, 0.5, 0.4))
    records, _stale = study_report.current_records(tmp_path, False)
    assert study_report.shipped_arm(records) == arm
    cfg.write_text(Arm(epochs=5, ner_head="bio").config().to_str())  # argmax: another arm
    assert study_report.shipped_arm(records) is None


def test_the_plot_shows_ner_and_spancat_on_dev_and_test_and_marks_the_shipped_row(tmp_path, monkeypatch):
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    joint, alone = Arm(epochs=5), Arm(epochs=5, heads="ner")
    records = {(joint.name, 0): full_record(joint, 0, 0.5, 0.4), (joint.name, 1): full_record(joint, 1, 0.6, 0.5)}
    records[(alone.name, 0)] = full_record(alone, 0, 0.55, 0.0)
    for part in ("dev", "test"):  # NER alone is scored without spancat
        records[(alone.name, 0)][part] = {k: v for k, v in records[(alone.name, 0)][part].items() if "spans" not in k}
    drawn = []
    monkeypatch.setattr(Figure, "savefig", lambda fig, path, **kw: drawn.append(fig))
    study_report.plot(records, tmp_path / "study.png", {joint.name: "shipped"})
    (fig,) = drawn
    titles = [ax.get_title() for ax in fig.axes]
    assert [t.split(" F1")[0] for t in titles] == ["dev NER", "dev SpanCat", "test NER", "test SpanCat"]
    points = [[[round(x, 6) for x in c.get_offsets()[:, 0]] for c in ax.collections] for ax in fig.axes]
    assert sorted(points[2], key=len) == [[55.0], [50.0, 60.0]]  # test NER: both arms, every seed
    assert points[3] == [[40.0, 50.0]]  # test SpanCat: the joint arm only
    labels = {tick.get_text(): tick.get_fontweight() for tick in fig.axes[0].get_yticklabels()}
    assert labels[f"{joint.name} [shipped]"] == "bold" and labels[alone.name] == "normal"


def test_the_config_of_a_stages_final_answer_is_what_its_runs_trained_and_none_before(tmp_path):
    from runs import write_run

    out = tmp_path / "study"
    out.mkdir()

    def get(arm, seed):
        run = full_record(arm, seed, 0.5 + 0.01 * (arm.epochs or 0), 0.4)
        write_run(out / f"{arm.name}-s{seed}.json", run)
        return run

    plan = Plan(get)
    plan.run()
    encoder = plan.answer("minilm threshold").arm
    config = study_report.answer_config(out, "minilm threshold")
    assert config.to_str() == study_plan.run_config(encoder, False).to_str()
    assert config["components"]["transformer"]["model"]["@architectures"] == "spacy-transformers.TransformerModel.v3"
    for path in out.glob(f"{study_plan.Arm(epochs=5).name}-s*.json"):
        path.unlink()  # a stage the plan no longer reaches has no answer to train
    with pytest.raises(SystemExit, match="'minilm threshold' has no final answer"):
        study_report.answer_config(out, "minilm threshold")
