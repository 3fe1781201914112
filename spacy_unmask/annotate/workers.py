"""What the backends share about their workers: cores per worker, the retry bound, and how a
failure in a worker is named to the user.

A worker that dies while it holds a block (killed, out of memory, a crash in native code) costs
that block a retry on a fresh worker, up to `MAX_RETRIES` times; past that the job stops with a
`WorkerError`. A pipeline that cannot be loaded is not retried: its error is the job's error.
"""
import os
import signal

from .inputs import Block

MAX_RETRIES = 2
RESUME = "the finished shards are kept: rerunning the same command resumes with the rest"


class WorkerError(RuntimeError):
    """A worker died more often than the retries allow, or failed on a block."""


class UsageError(ValueError):
    """An argument of the job that cannot be used (`--backend`, `--workers`, `--address`, an
    extra that is not installed)."""


class PipelineLoadError(ValueError):
    """MODEL could not be loaded (in this process or in a worker); carries the loader's error."""


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def threads_per_worker(workers: int) -> int:
    return max(1, cores() // workers)


def describe_block(block: Block) -> str:
    """`block 3 (in.jsonl lines 25-32)`: where a block's documents came from."""
    if not block.records:
        return f"block {block.index}"
    first, last = block.records[0], block.records[-1]
    return f"block {block.index} ({os.path.basename(first.source)} lines {first.line}-{last.line})"


def describe_exit(exitcode) -> str:
    """What a process's exit code says about how it ended: `killed by SIGKILL`, `exit code 3`."""
    if exitcode is None:
        return "lost"
    if exitcode < 0:
        try:
            return f"killed by {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"killed by signal {-exitcode}"
    return f"exit code {exitcode}"


def load_error(model: str, err: BaseException) -> PipelineLoadError:
    return PipelineLoadError(f"MODEL {model!r} could not be loaded: {type(err).__name__}: {err}")
