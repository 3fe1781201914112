"""The recipe study's plan: which runs answer which question, and what each answer is.

Every run is the shipped pipeline (`configs/cpu.cfg`: transformer + ner + spancat, or `ner`
alone where a stage asks what sharing the decoder costs) with the settings of one `Arm`
written into it explicitly, so a run's recipe does not move when the shipped defaults follow
the study's answers. The stages, each decided on dev (a pipeline's dev score is its
`[training.score_weights]`: 0.5 NER F1 + 0.5 SpanCat F1; an NER-only run's is its NER F1):

1. balance: the shipped recipe as is, joint and NER-only; the same with the schedule fixed
   (`Arm.epochs`: the run ends on an evaluated step and the rate schedule ends with it); and
   the fixed schedule with spancat's listener gradient scaled down. The joint variants' best on
   dev is the recipe the next stages build on.
2. epochs: 3 / 5 / 8 epochs' worth of steps. The stages after it run at the winner's length
   or at `BUDGET_EPOCHS`, whichever is shorter: they pick the shipped default.
3. heads' rate: the heads (ner, spancat: random weights) at the decoder's rate or faster
   (`learn_rate_scale` of the decoder architecture).
4. pooling: the listeners' reduction of a word's pieces, mean or first piece (as the paper).
5. ner head: spaCy's transition-based `ner` or `bio_ner` (one softmax over BIO tags a token,
   the paper's head) on the same listener; with `bio_ner`, its decoding: each token's argmax
   (the paper's) or the best valid BIO sequence (`viterbi`). The loss does not depend on it;
   it moves the predictions and the dev score that picks `model-best`.
6. minilm: MiniLM-L6 in the same joint pipeline at the chosen epochs, spancat gradient, pooling,
   ner head and decoding (the answers so far that it can share: stock spacy-transformers has no
   `learn_rate_scale`, so its heads train at its own one rate), that rate chosen on dev, then
   its ner head (spaCy's `ner` or `bio_ner`) chosen on dev at that rate, its rate chosen again
   at that head when it is not the decoder's (the stage `minilm rate at its head`), then its own
   threshold chosen on dev and trained at. It runs before the decoder-only stages because it
   depends on none of them and it is the row the shipped pipeline must beat.
7. rate: the decoder's learning rate (`sweep_plan.choose_rate` on the dev score); then that
   recipe without spancat, 3 seeds (what sharing costs NER, asked early; see `ner only`).
8. depth: 15 / 22 / 30 decoder layers. The stages after it run at the winner's depth or at
   `BUDGET_LAYERS`, whichever is shallower.
9. spec: `none`, `second_half`, `all` at that depth, 3 seeds each.
10. threshold: spancat's threshold chosen on the spec winner's dev runs (`choose_threshold`), and
   that recipe trained at it, 3 seeds: the shipped pipeline.
11. ner only: the chosen recipe without spancat, 3 seeds (what sharing the decoder costs NER);
   long: the shipped recipe at the `epochs` winner's length and the `depth` winner's layers,
   when either is over the budget.

A stage settles its factor on seed 0 over its grid, then runs seeds 1 and 2 of the two best
and takes the better mean (`settle`). Each function here takes `get(arm, seed)`, which gives a
finished run's record or None: the runner trains on demand, the report only reads; a stage
whose runs are missing answers as far as it can and says its answer is provisional.
"""
import copy
import dataclasses
import hashlib
import statistics
from pathlib import Path
from typing import Callable, Dict, List, NamedTuple, Optional, Tuple

from thinc.api import Config

from spacy_unmask.bio_decoding import DECODINGS
from sweep_plan import SEEDS, choose_rate
from sweep_recipe import ner_only

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "configs" / "cpu.cfg"
MINILM = ROOT / "configs" / "sweep" / "minilm.cfg"
STEPS_PER_EPOCH = 92  # batches of configs/cpu.cfg's batcher in one pass over the train split
SPANCAT_GRAD = "components.spancat.model.tok2vec.grad_factor"
RATE_GRID = {"decoder": [1e-4, 2e-4, 5e-4], "minilm": [1e-4, 2e-4, 5e-4]}
EPOCHS = (3, 5, 8)
# The most epochs a newcomer's `spacy project run all` affords on a 2-core CPU in 15 minutes
# (train: 460 steps in 769 s alone in the study, plus corpus, evaluate, package, install):
# the stages after `epochs` build the shipped default at this length; a longer winner of
# `epochs` is confirmed at the end with the final recipe, as the candidate for cpu_long.cfg.
BUDGET_EPOCHS = 5
DEPTHS = (15, 22, 30)
# The most decoder layers that budget affords at BUDGET_EPOCHS: a step's time grows with the
# layers (22 at 5 epochs trains about 1.45x as long, over the 15 minutes), so a deeper winner
# of `depth` is, like a longer one of `epochs`, the candidate for cpu_long.cfg, and the stages
# after `depth` build the shipped default at this depth.
BUDGET_LAYERS = 15
SPECS = ("none", "second_half", "all")
HEAD_RATES = (None, 5e-4, 1e-3)  # None: the heads at the decoder's rate
POOLINGS = {"mean": "reduce_mean.v1", "first": "reduce_first.v1"}
# the ner component of each head, its listener apart: written whole into every arm, so an arm's
# head does not follow whatever head configs/cpu.cfg ships ("parser" is cpu.cfg's before the study)
NER_HEADS = {
    "parser": {"factory": "ner", "model": {
        "@architectures": "spacy.TransitionBasedParser.v2", "state_type": "ner", "extra_state_tokens": False,
        "hidden_width": 64, "maxout_pieces": 2, "use_upper": False, "nO": None}},
    "bio": {"factory": "bio_ner", "model": {"@architectures": "spacy.Tagger.v2", "nO": None, "normalize": False}},
}
# bio_ner's readings of its tag scores; "argmax", the factory's default, is the paper's and is
# left out of an arm's config
NER_DECODINGS = tuple(DECODINGS)
# spancat's threshold only filters its predictions, so every run is also scored at each of these
# (the same predictions, cut); the study's runs train at 0.5, configs/cpu.cfg's before the study
SPANCAT_THRESHOLDS = (0.1, 0.2, 0.3, 0.4, 0.5)
# the heads' factors, settled in this order after `epochs`: (stage, Arm field, values)
HEAD_FACTORS = (("heads' rate", "head_rate", HEAD_RATES), ("pooling", "pooling", tuple(POOLINGS)),
                ("ner head", "ner_head", tuple(NER_HEADS)), ("ner decoding", "ner_decoding", NER_DECODINGS))


@dataclasses.dataclass(frozen=True)
class Arm:
    """One recipe. `epochs=None` is the schedule configs/cpu.cfg had before the study (3 epochs,
    evaluated every 100 steps, a 400-step schedule: the last 76 of its 276 steps are never
    evaluated, so `model-best` is at most step 200, and the rate never decays to its end);
    an int is that many epochs' worth of steps, evaluated every epoch including the last step,
    with the schedule ending on it."""

    family: str = "decoder"  # or "minilm"
    heads: str = "joint"  # "joint": ner + spancat on one shared transformer; "ner": ner alone
    epochs: Optional[int] = None
    spancat_grad: float = 1.0
    lr: float = 2e-4
    n_layers: int = 15
    unmask: str = "second_half"
    # the heads' rate apart from the decoder's `lr` (None: one rate for all): `initial_rate` is
    # the heads' and the decoder's is set by `learn_rate_scale = lr / head_rate`
    head_rate: Optional[float] = None
    pooling: str = "mean"  # how the listeners reduce a word's pieces: "mean" or "first"
    ner_head: str = "parser"  # spaCy's transition-based `ner`, or "bio": `bio_ner` (the paper's head)
    ner_decoding: str = "argmax"  # bio_ner's `decoding`: "argmax" (the paper's) or "viterbi"
    # spancat keeps the spans scoring at least this; the dev score during training is at it too,
    # so it also moves which checkpoint `model-best` is
    spancat_threshold: float = 0.5

    @property
    def name(self) -> str:
        schedule = "old" if self.epochs is None else f"e{self.epochs}"
        name = f"{self.family}-{self.heads}-{schedule}-lr{self.lr:g}"
        if self.heads == "joint":
            name += f"-sc{self.spancat_grad:g}"
        if self.family == "decoder":
            name += f"-l{self.n_layers}-{self.unmask}"
        if self.head_rate is not None:
            name += f"-heads{self.head_rate:g}"
        if self.pooling != "mean":
            name += f"-{self.pooling}"
        if self.ner_head != "parser":
            name += f"-{self.ner_head}"
        if self.ner_decoding != "argmax":
            name += f"-{self.ner_decoding}"
        if self.heads == "joint" and self.spancat_threshold != 0.5:
            name += f"-t{self.spancat_threshold:g}"
        return name

    def config(self) -> Config:
        config = Config().from_disk(SHIPPED, interpolate=False)
        if self.family == "minilm":
            config = config.merge(Config().from_disk(MINILM, interpolate=False))
        if self.heads == "ner":
            config = ner_only(config)
        if self.head_rate is not None and self.family != "decoder":
            raise ValueError(f"{self.family}: only the decoder's rate can be set apart from the heads'")
        settings = {"training.optimizer.learn_rate.initial_rate": self.lr if self.head_rate is None else self.head_rate}
        if self.epochs is None:
            settings.update({"training.max_epochs": 3, "training.max_steps": 0, "training.eval_frequency": 100,
                             "training.optimizer.learn_rate.total_steps": 400})
        else:
            steps = self.epochs * STEPS_PER_EPOCH
            settings.update({"training.max_epochs": 0, "training.max_steps": steps,
                             "training.eval_frequency": STEPS_PER_EPOCH,
                             "training.optimizer.learn_rate.total_steps": steps})
        if self.heads == "joint":
            settings.update({SPANCAT_GRAD: self.spancat_grad, "components.spancat.threshold": self.spancat_threshold})
        if self.family == "decoder":
            settings.update({"components.transformer.model.n_layers": self.n_layers,
                             "components.transformer.model.unmask": self.unmask})
        head = copy.deepcopy(NER_HEADS[self.ner_head])
        if self.ner_decoding != "argmax":
            if self.ner_head != "bio":
                raise ValueError(f"ner_decoding={self.ner_decoding!r}: only the bio head has a decoding")
            head["decoding"] = self.ner_decoding
        head["model"]["tok2vec"] = config["components"]["ner"]["model"]["tok2vec"]  # the same listener
        config["components"]["ner"] = head
        for listener in [name for name in ("ner", "spancat") if name in config["components"]]:
            settings[f"components.{listener}.model.tok2vec.pooling"] = {"@layers": POOLINGS[self.pooling]}
        model = config["components"]["transformer"]["model"]
        if self.head_rate is None:
            model.pop("learn_rate_scale", None)  # the architecture's default, 1: one rate
        else:
            # rounded, so that a ratio such as 0.19999999999999998 is written as the 0.2 it means
            settings["components.transformer.model.learn_rate_scale"] = float(f"{self.lr / self.head_rate:.12g}")
        for key, value in settings.items():
            *path, last = key.split(".")
            section = config
            for part in path:
                section = section[part]
            section[last] = value
        return config


def run_config(arm: Arm, quick: bool) -> Config:
    """The config an arm's runs train: `--quick` keeps 4 decoder layers."""
    config = arm.config()
    if quick and arm.family == "decoder":
        config["components"]["transformer"]["model"]["n_layers"] = 4
    return config


def digest(config: Config) -> str:
    return hashlib.sha1(config.to_str().encode("utf8")).hexdigest()[:12]


def dev_score(record: dict) -> float:
    """The score spaCy's training picks checkpoints by: the config's score weights on dev."""
    dev = record["dev"]
    if record["heads"] == "ner":
        return dev["ents_f"]
    return 0.5 * dev["ents_f"] + 0.5 * dev["spans_sc_f"]


Get = Callable[[Arm, int], Optional[dict]]


def settle(arms: List[Arm], get: Get, seeds=SEEDS) -> Tuple[Optional[Arm], bool]:
    """The arm with the best mean dev score: every arm on seed 0, the two best on every seed.
    Returns (arm, final); (best so far, False) while runs are missing."""
    first = {arm: get(arm, seeds[0]) for arm in arms}
    done = {arm: r for arm, r in first.items() if r is not None}
    if not done:
        return None, False
    ranked = sorted(done, key=lambda arm: -dev_score(done[arm]))
    if len(done) < len(arms):
        return ranked[0], False
    means = {}
    for arm in ranked[:2]:
        runs = [get(arm, seed) for seed in seeds]
        if any(r is None for r in runs):
            return ranked[0], False
        means[arm] = statistics.mean(dev_score(r) for r in runs)
    return max(means, key=means.get), True


def choose_threshold(records: List[dict]) -> Optional[float]:
    """spancat's threshold with the best mean dev F1 over `records` (each run's
    `spancat_thresholds`: its predictions cut at each of `SPANCAT_THRESHOLDS`), over the
    thresholds every table has; a tie goes to the higher threshold. Records from before the
    thresholds were recorded are left out; None when no record has them."""
    tables = [r["spancat_thresholds"] for r in records if r.get("spancat_thresholds")]
    if not tables:
        return None
    shared = set.intersection(*(set(table) for table in tables))
    means = {float(t): statistics.mean(table[t]["dev"]["f"] for table in tables) for t in shared}
    return max(sorted(means, reverse=True), key=means.get)


def every_seed(arms: List[Arm], get: Get, seeds=SEEDS) -> bool:
    """Runs every seed of every arm; True when all are there."""
    return all([get(arm, seed) is not None for arm in arms for seed in seeds])


def ner_alone(arm: Arm) -> Arm:
    """`arm` without spancat: what sharing the decoder costs NER at that recipe."""
    return dataclasses.replace(arm, heads="ner", spancat_grad=1.0)


def balance_arms() -> Dict[str, Arm]:
    old, fixed = Arm(), Arm(epochs=3)
    return {
        "joint, old schedule (as shipped before)": old,
        "ner only, old schedule": dataclasses.replace(old, heads="ner"),
        "joint, fixed schedule": fixed,
        "ner only, fixed schedule": dataclasses.replace(fixed, heads="ner"),
        "joint, fixed schedule, spancat grad x0.25": dataclasses.replace(fixed, spancat_grad=0.25),
    }


# the names `Plan.run` gives MiniLM's stages, last first: the report's MiniLM row is the first that answered
MINILM_STAGES = ("minilm threshold", "minilm rate at its head", "minilm ner head", "minilm")


class Answer(NamedTuple):
    """A stage's answer: its arm (None before any run), whether every run it needs is done, and
    a note on how it was reached when that is not the stage's rule as written."""

    stage: str
    arm: Optional[Arm]
    final: bool
    note: str = ""


class Plan:
    """The stages in order; each answer feeds the next. `answers` holds each stage's `Answer`."""

    def __init__(self, get: Get, seeds=SEEDS, quick: bool = False):
        self.get, self.seeds, self.answers = get, seeds, []
        # --quick checks the machinery: one rate a grid, so no stage widens
        self.grid = {family: grid[1:2] if quick else grid for family, grid in RATE_GRID.items()}

    def _answer(self, stage: str, arm: Optional[Arm], final: bool, note: str = "") -> Optional[Arm]:
        self.answers.append(Answer(stage, arm, final, note))
        return arm if final else None

    def answer(self, stage: str) -> Optional[Answer]:
        """The stage's answer, or None when the plan stopped before it."""
        return next((found for found in self.answers if found.stage == stage), None)

    def _factor(self, stage: str, base: Arm, field: str, values) -> Optional[Arm]:
        """`base` with `field` settled over `values` (`settle`); None while provisional."""
        arms = [dataclasses.replace(base, **{field: value}) for value in values]
        return self._answer(stage, *settle(arms, self.get, self.seeds))

    def _rate(self, stage: str, base: Arm) -> Optional[Arm]:
        """`base` at the learning rate `choose_rate` picks on the dev score; None while provisional."""
        rate, final = choose_rate(self.grid[base.family], lambda lr, seed: self.get(dataclasses.replace(base, lr=lr), seed),
                                  self.seeds, score=dev_score)
        return self._answer(stage, dataclasses.replace(base, lr=rate) if rate else None, final)

    def _threshold(self, stage: str, arm: Arm) -> Optional[Arm]:
        """`arm` (every seed done) trained at spancat's threshold chosen on its dev runs, every
        seed. Runs finished before thresholds were recorded cannot be rescored (their models are
        gone): the choice uses those that were, and keeps 0.5 when none was; the note says so."""
        records = [self.get(arm, seed) for seed in self.seeds]
        threshold = choose_threshold(records)
        scored = sum(bool(r.get("spancat_thresholds")) for r in records)
        note = ""
        if threshold is None:
            threshold, note = 0.5, "no run was scored at the thresholds: 0.5 kept"
        elif scored < len(records):
            note = f"chosen on {scored} of {len(records)} runs"
        chosen = dataclasses.replace(arm, spancat_threshold=threshold)
        return self._answer(stage, chosen, every_seed([chosen], self.get, self.seeds), note)

    def run(self) -> None:
        arms = balance_arms()
        for arm in arms.values():  # seed 0 of every arm first: the cheapest look at each question
            self.get(arm, self.seeds[0])
        joint = [a for a in arms.values() if a.heads == "joint"]
        answer = settle(joint, self.get, self.seeds)
        # what sharing the decoder costs NER: joint and NER-only at 3 seeds, old and fixed schedule
        every_seed([a for a in arms.values() if a.epochs is None or a.heads == "ner"] + [Arm(epochs=3)],
                   self.get, self.seeds)
        base = self._answer("balance", *answer)
        if base is None:
            return
        longest = self._factor("epochs", base, "epochs", EPOCHS)
        if longest is None:
            return
        # the stages that pick the shipped default run within the newcomer's budget
        base = dataclasses.replace(longest, epochs=min(longest.epochs, BUDGET_EPOCHS))
        for stage, field, values in HEAD_FACTORS:
            if field == "ner_decoding" and base.ner_head != "bio":
                continue  # spaCy's ner has one reading of its predictions
            base = self._factor(stage, base, field, values)
            if base is None:
                return
        # the encoder row shares the answers so far (schedule, listeners, ner head) and none after
        encoder = Arm(family="minilm", epochs=base.epochs, spancat_grad=base.spancat_grad, pooling=base.pooling,
                      ner_head=base.ner_head, ner_decoding=base.ner_decoding)
        encoder = self._rate("minilm", encoder)
        if encoder is None:
            return
        # the encoder's own ner head at its rate: the decoder's need not be the encoder's best (its
        # heads train at its one rate), so spaCy's ner and bio_ner (at the decoder's decoding)
        decoding = encoder.ner_decoding if encoder.ner_head == "bio" else "argmax"
        heads = [dataclasses.replace(encoder, ner_head=head, ner_decoding=decoding if head == "bio" else "argmax")
                 for head in NER_HEADS]
        rated = encoder
        encoder = self._answer("minilm ner head", *settle(heads, self.get, self.seeds))
        if encoder is None:
            return
        # its rate was chosen on the decoder's head; with another head (whose weights train at that
        # one rate too) the rate is chosen again on dev, once: the runs it shares are read, not rerun
        if encoder.ner_head != rated.ner_head:
            encoder = self._rate("minilm rate at its head", encoder)
        if encoder is None or self._threshold("minilm threshold", encoder) is None:
            return
        base = self._rate("rate", base)
        if base is None:
            return
        # what sharing the decoder costs NER (the first question), at the recipe as it
        # stands, before the stages that may not move it: the `ner only` stage reads these runs
        # when the spec and threshold keep it, and trains its own when they do not
        every_seed([ner_alone(base)], self.get, self.seeds)
        deepest = self._factor("depth", base, "n_layers", DEPTHS)
        if deepest is None:
            return
        base = dataclasses.replace(deepest, n_layers=min(deepest.n_layers, BUDGET_LAYERS))
        specs = [dataclasses.replace(base, unmask=s) for s in SPECS]
        done = every_seed(specs, self.get, self.seeds)
        best = max(specs, key=lambda a: statistics.mean(dev_score(self.get(a, s)) for s in self.seeds)) if done else None
        if self._answer("spec", best, done) is None:
            return
        # the shipped recipe: spancat's threshold chosen on dev, trained at it (its 3 seeds are metrics/)
        shipped = self._threshold("threshold", best)
        if shipped is None:
            return
        # what sharing the decoder costs NER at the shipped recipe, and the shipped recipe at the
        # longest schedule and greatest depth that won on dev, when either is over the budget
        ner = ner_alone(best)
        self._answer("ner only", ner, every_seed([ner], self.get, self.seeds))
        long = dataclasses.replace(shipped, epochs=longest.epochs, n_layers=deepest.n_layers)
        if long != shipped:
            self._answer("long", long, every_seed([long], self.get, self.seeds))
