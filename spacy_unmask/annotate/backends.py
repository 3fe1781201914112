"""Where blocks are annotated: in this process, in N processes on this machine, or on Ray.

Every backend's `map(blocks, stop)` yields each block's `ShardResult` as it is ready (not
necessarily in input order) and returns early once `stop()` is true; the driver writes shards
and the manifest, so resuming and output order do not depend on the backend. Workers load the
pipeline once; torch threads per worker are the cores given divided by the workers.
"""
from typing import Callable, Iterable, Iterator, Optional

from .annotator import annotate_block, load_pipeline
from .inputs import Block
from .shards import ShardResult
from .workers import UsageError

BACKENDS = ("local", "ray")


class InProcess:
    """`--backend local --workers 1`: plain `nlp.pipe` here; a stop request is seen between
    documents, and the unfinished block is dropped (a rerun redoes it)."""

    def __init__(self, model: str, batch_size: int, gpu_id: int = -1):
        self.nlp = load_pipeline(model, gpu_id)
        self.batch_size = batch_size

    def map(self, blocks: Iterable[Block], stop: Callable[[], bool] = lambda: False) -> Iterator[ShardResult]:
        for block in blocks:
            result = annotate_block(self.nlp, block, self.batch_size, stop)
            if result is None:
                return
            yield result

    def close(self) -> None:
        pass


def make_backend(backend: str, model: str, batch_size: int, workers: int, gpu_id: int = -1,
                 address: Optional[str] = None):
    if backend not in BACKENDS:
        raise UsageError(f"--backend {backend!r}: choose one of {', '.join(BACKENDS)}")
    if not isinstance(workers, int) or workers < 1:
        raise UsageError(f"--workers {workers!r}: must be a positive integer")
    if backend == "ray":
        from .ray_backend import RayActors

        return RayActors(model, batch_size, workers, gpu_id, address)
    if workers == 1:
        return InProcess(model, batch_size, gpu_id)
    from .pool import WorkerPool

    return WorkerPool(model, batch_size, workers, gpu_id)
