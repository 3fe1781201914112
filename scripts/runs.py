"""What the sweep and the recipe study share about one training run: the CPU it took, its record
on disk, the corpus it trains on, and the console line that reports it.

A run is `spacy train` in a child process, scored after; its record (one JSON file) is the
resume marker, written atomically so that a crash mid-write leaves the old file or none.
"""
import json
import os
import resource
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

import spacy
from spacy.tokens import DocBin

from spacy_unmask.annotate.shards import write_atomic


def log(message: str) -> None:
    print(f"[sweep {time.strftime('%H:%M:%S')}] {message}", flush=True)


def child_cpu_seconds() -> float:
    """User + system CPU seconds of this process's finished child processes so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def busy_seconds(line: str, ticks: int) -> float:
    """The busy CPU seconds in /proc/stat's first (`cpu`) line: user, nice, system, irq, softirq
    and steal (time the hypervisor gave to other guests: our runs could not use it either)."""
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in line.split()[1:9])
    return (user + nice + system + irq + softirq + steal) / ticks


def machine_busy_seconds():
    """CPU seconds the whole machine has spent busy (all cores, every process) since boot, from
    /proc/stat; None where there is none or it has an unexpected form."""
    try:
        return busy_seconds(Path("/proc/stat").read_text().split("\n", 1)[0], os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError):
        return None


def other_cpu_seconds(busy_start, busy_end, own: float):
    """What other processes took while a run used `own` CPU seconds; None where /proc/stat was
    missing or does not see this process (less than half of `own`: a sandbox's fake one)."""
    if busy_start is None or busy_end is None or busy_end - busy_start < 0.5 * own:
        return None
    return round(busy_end - busy_start - own, 1)


def code_version(root: Path) -> Optional[str]:
    """The commit `root`'s checkout is at, with "-dirty" when `spacy_unmask/` (the code a run
    trains with) has uncommitted changes; None outside a git checkout. Two runs of the same
    recipe that differ can be told apart by it."""
    def git(*args):
        return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True)

    try:
        head = git("rev-parse", "--short=12", "HEAD")
    except OSError:  # no git on the machine
        return None
    if head.returncode != 0:
        return None
    changed = git("status", "--porcelain", "--untracked-files=no", "--", "spacy_unmask").stdout.strip()
    return head.stdout.strip() + ("-dirty" if changed else "")


@dataclass
class Trained:
    """What a finished `spacy train` took: wall seconds, CPU seconds (user + system, all threads)
    and the CPU seconds other processes took meanwhile (None where /proc/stat cannot tell), and
    the code it trained with (`code_version` as it started)."""

    stdout: str
    seconds: float
    cpu_seconds: float
    other_cpu_seconds: Optional[float]
    code: Optional[str] = None


def train(name: str, cmd: List[str], cwd: Path) -> Trained:
    """Runs the `spacy train` command `cmd` of the run `name`, timed; a failure ends the job with
    the tail of its output."""
    log(f"training {name}")
    code = code_version(cwd)
    start, cpu_start, busy_start = time.perf_counter(), child_cpu_seconds(), machine_busy_seconds()
    result = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    seconds, cpu_seconds = time.perf_counter() - start, child_cpu_seconds() - cpu_start
    busy_end = machine_busy_seconds()
    if result.returncode != 0:
        raise SystemExit(f"{name} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return Trained(result.stdout, seconds, cpu_seconds, other_cpu_seconds(busy_start, busy_end, cpu_seconds), code)


def read_run(path: Path):
    """A finished run's record, or None if the file is unreadable (a crash mid-write)."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def write_run(path: Path, record: dict) -> None:
    """A finished run's record, written whole or not at all."""
    write_atomic(path, (json.dumps(record, indent=2) + "\n").encode("utf8"))


def corpus_paths(corpus: Path, quick: bool, out: Path) -> dict:
    """{"train"|"dev"|"test": .spacy path}: the corpus itself, or for --quick a small slice of it in `out/corpus`."""
    missing = [p for p in ("train", "dev", "test") if not (corpus / f"{p}.spacy").is_file()]
    if missing:
        raise SystemExit(f"{corpus / missing[0]}.spacy is missing: run `spacy project run corpus` first")
    if not quick:
        return {p: corpus / f"{p}.spacy" for p in ("train", "dev", "test")}
    small = out / "corpus"
    small.mkdir(parents=True, exist_ok=True)
    vocab = spacy.blank("en").vocab
    for part, n in (("train", 24), ("dev", 12), ("test", 12)):
        docs = list(DocBin().from_disk(corpus / f"{part}.spacy").get_docs(vocab))[:n]
        DocBin(docs=docs).to_disk(small / f"{part}.spacy")
    return {p: small / f"{p}.spacy" for p in ("train", "dev", "test")}
