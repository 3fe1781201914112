"""Where blocks are annotated: in this process, in N processes on this machine, or on Ray.

Every backend maps `annotate_block` over blocks and yields each `ShardResult` as it is ready;
the driver writes shards and the manifest, so resuming and output order do not depend on the
backend. Workers load the pipeline once; torch threads per worker are the cores given divided
by the workers.
"""
import os
from collections import deque
from typing import Iterable, Iterator, Optional

from .annotator import annotate_block, load_pipeline
from .inputs import Block
from .shards import ShardResult

BACKENDS = ("local", "ray")


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def threads_per_worker(workers: int) -> int:
    return max(1, cores() // workers)


class InProcess:
    """`--backend local --workers 1`: plain `nlp.pipe` here."""

    def __init__(self, model: str, batch_size: int, gpu_id: int = -1):
        self.nlp = load_pipeline(model, gpu_id)
        self.batch_size = batch_size

    def map(self, blocks: Iterable[Block]) -> Iterator[ShardResult]:
        for block in blocks:
            yield annotate_block(self.nlp, block, self.batch_size)

    def close(self) -> None:
        pass


_worker = {}


def _start_worker(model: str, batch_size: int, gpu_id: int, threads: int) -> None:
    # keep a load error and raise it with the first block, where the driver names it
    try:
        _worker["nlp"] = load_pipeline(model, gpu_id, threads)
    except Exception as err:
        _worker["error"] = err
    _worker["batch_size"] = batch_size


def _annotate_in_worker(block: Block) -> ShardResult:
    if "error" in _worker:
        raise _worker["error"]
    return annotate_block(_worker["nlp"], block, _worker["batch_size"])


class ProcessPool:
    """`--backend local --workers N`: N spawned processes (a fresh interpreter each, so no
    thread pool is inherited across a fork), each with its own copy of the pipeline. A worker
    that dies (out of memory, a crash in native code) fails the job with `BrokenProcessPool`
    instead of leaving it waiting."""

    def __init__(self, model: str, batch_size: int, workers: int, gpu_id: int = -1):
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        self.workers = workers
        self.pool = ProcessPoolExecutor(
            workers, mp_context=multiprocessing.get_context("spawn"), initializer=_start_worker,
            initargs=(model, batch_size, gpu_id, threads_per_worker(workers)),
        )

    def map(self, blocks: Iterable[Block]) -> Iterator[ShardResult]:
        # a bounded window keeps a big input from being read into memory ahead of the workers
        pending = deque()
        for block in blocks:
            pending.append(self.pool.submit(_annotate_in_worker, block))
            if len(pending) >= 2 * self.workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


def make_backend(backend: str, model: str, batch_size: int, workers: int, gpu_id: int = -1,
                 address: Optional[str] = None):
    if backend not in BACKENDS:
        raise ValueError(f"--backend {backend!r}: choose one of {', '.join(BACKENDS)}")
    if not isinstance(workers, int) or workers < 1:
        raise ValueError(f"--workers {workers!r}: must be a positive integer")
    if backend == "ray":
        from .ray_backend import RayActors

        return RayActors(model, batch_size, workers, gpu_id, address)
    if workers == 1:
        return InProcess(model, batch_size, gpu_id)
    return ProcessPool(model, batch_size, workers, gpu_id)
