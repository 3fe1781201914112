"""The sweep's rules: which specs it runs, the rate grids and seeds, and how a rate is chosen.

The runner (scripts/sweep.py) follows them to decide what to train; the report
(scripts/sweep_report.py) and the recipe study (scripts/study_plan.py) apply the same rules to
finished records, so a table always says what drove the runs.
"""
import math
import statistics

SPECS = ["none", "all", "first_half", "second_half", "1000", "0100", "0010", "0001", "repeat2"]
LORA_SPECS = ["none", "second_half", "all"]
# starting grids (1-2-5 steps); `choose_rate` widens one that peaks at an edge
GRID = {
    "decoder": [1e-4, 2e-4, 5e-4],  # full fine-tuning; the shipped rate is 2e-4
    "lora": [5e-4, 1e-3, 2e-3],  # adapters and the ner head
    "minilm": [1e-4, 2e-4, 5e-4],
    "tok2vec": [1e-3, 2e-3, 5e-3],
}
SEEDS = (0, 1, 2)
MAX_RATES = 6  # a grid is widened at most to this many rates


def grid_of(family: str, quick: bool) -> list:
    """The starting rates of `family`; --quick checks the machinery with the middle one."""
    return GRID[family][1:2] if quick else GRID[family]


def seeds_of(quick: bool) -> tuple:
    return SEEDS[:1] if quick else SEEDS


def spec_settings(spec: str):
    """(unmask, repeat) of a sweep spec: `repeat2` is repetition alone, `repeat2+X` over unmask X."""
    if spec.startswith("repeat2"):
        return (spec.split("+", 1)[1] if "+" in spec else "none"), 2
    return spec, 1


def neighbour_rate(rate: float, up: bool) -> float:
    """The next rate on the 1-2-5 series above or below `rate`."""
    exponent = math.floor(math.log10(rate) + 1e-9)
    series = [1, 2, 5]
    position = min(range(3), key=lambda i: abs(series[i] * 10**exponent - rate)) + (1 if up else -1)
    exponent += position // 3
    return float(f"{series[position % 3]}e{exponent}")


def choose_rate(grid, get, seeds=SEEDS, max_rates=MAX_RATES, score=lambda record: record["dev"]["ents_f"]):
    """The learning rate of one family, and whether the choice is final.

    `get(lr, seed)` returns that run's record (training it if need be) or None when it is
    not available; the choice then stops early and is provisional. Seed 0 runs over the grid,
    which is widened by one 1-2-5 step while its best rate is the highest or lowest tried;
    the two best rates on seed 0 then run every seed, and the one with the higher mean dev F1
    wins (widened again if that one sits at an edge). `score` reads a run's dev score from its
    record (default: dev NER F1).
    """
    rates = sorted(grid)

    def widened(rate):
        if len(rates) >= max_rates or rate not in (rates[0], rates[-1]) or len(rates) == 1:
            return False
        rates.insert(0, neighbour_rate(rates[0], up=False)) if rate == rates[0] else rates.append(neighbour_rate(rates[-1], up=True))
        return True

    while True:
        first = {lr: get(lr, 0) for lr in rates}
        done = {lr: r for lr, r in first.items() if r is not None}
        if not done:
            return None, False
        ranked = sorted(done, key=lambda lr: -score(done[lr]))
        if len(done) < len(rates):
            return ranked[0], False
        if widened(ranked[0]):
            continue
        means = {}
        for lr in ranked[:2]:
            runs = [get(lr, seed) for seed in seeds]
            if any(r is None for r in runs):
                return ranked[0], False
            means[lr] = statistics.mean(score(r) for r in runs)
        chosen = max(means, key=means.get)
        if widened(chosen):
            continue
        return chosen, True
