"""`--backend local --workers N`: N spawned processes, each holding one block at a time.

Each worker is a fresh interpreter (spawned, so no torch thread pool is inherited across a
fork) that loads the pipeline once and then annotates the blocks it is sent over its own pipe.
The driver always knows which block each worker holds, so a worker that dies (SIGKILL, the
out-of-memory killer, a crash in native code) is named with its exit and that block, and the
block is handed to a fresh worker, up to `MAX_RETRIES` times. The driver waits with a short
timeout, so a stop request is seen within a fraction of a second; the workers ignore SIGINT
(Ctrl-C reaches the whole process group) and are stopped by the driver.
"""
import logging
import multiprocessing
import os
import signal
import traceback
from collections import deque
from multiprocessing.connection import wait
from typing import Callable, Deque, Dict, Iterable, Iterator, List, Optional

from .inputs import Block
from .shards import ShardResult
from .workers import (MAX_RETRIES, RESUME, PipelineLoadError, WorkerError, describe_block, describe_exit,
                      threads_per_worker)

logger = logging.getLogger("spacy_unmask.annotate")
POLL_S = 0.2


def _serve(conn, model: str, batch_size: int, gpu_id: int, threads: int) -> None:
    """A worker's life: load the pipeline, say so, then annotate blocks until told to stop."""
    from .annotator import annotate_block, load_pipeline

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        nlp = load_pipeline(model, gpu_id, threads)
    except PipelineLoadError as err:
        conn.send(("load_error", str(err)))
        return
    conn.send(("ready", os.getpid()))
    while True:
        try:
            block = conn.recv()
        except EOFError:  # the driver is gone
            return
        if block is None:
            return
        try:
            result = annotate_block(nlp, block, batch_size)
        except Exception:
            conn.send(("error", traceback.format_exc()))
            return
        conn.send(("result", result))


class _Worker:
    def __init__(self, context, args: tuple):
        self.conn, child = context.Pipe()
        self.process = context.Process(target=_serve, args=(child, *args), daemon=True)
        self.process.start()
        child.close()
        self.ready = False
        self.block: Optional[Block] = None

    def stop(self, grace_s: float) -> None:
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(grace_s)
            if self.process.is_alive():
                self.process.kill()
        self.process.join()
        self.conn.close()


class WorkerPool:
    """N workers on this machine; `map` yields each block's shard as a worker finishes it."""

    def __init__(self, model: str, batch_size: int, workers: int, gpu_id: int = -1,
                 max_retries: int = MAX_RETRIES):
        self.model = model
        self.max_retries = max_retries
        self.context = multiprocessing.get_context("spawn")
        self.args = (model, batch_size, gpu_id, threads_per_worker(workers))
        self.workers: List[_Worker] = [_Worker(self.context, self.args) for _ in range(workers)]

    def map(self, blocks: Iterable[Block], stop: Callable[[], bool] = lambda: False) -> Iterator[ShardResult]:
        source = iter(blocks)
        retry: Deque[Block] = deque()
        tries: Dict[int, int] = {}
        load_deaths = 0
        exhausted, input_error = False, None
        while True:
            if stop():
                return
            for worker in self.workers:
                if worker.ready and worker.block is None:
                    block = retry.popleft() if retry else None
                    if block is None and not exhausted:
                        try:
                            block = next(source, None)
                        except Exception as err:  # a bad input line: finish what is in flight first
                            input_error = err
                        exhausted = block is None
                    if block is None:
                        break
                    worker.block = block
                    worker.conn.send(block)
            if exhausted and not retry and all(w.block is None for w in self.workers):
                if input_error is not None:
                    raise input_error
                return
            waiting = [w.conn for w in self.workers] + [w.process.sentinel for w in self.workers]
            ready = set(wait(waiting, timeout=POLL_S))
            for position, worker in enumerate(self.workers):
                if worker.conn in ready:
                    try:
                        kind, payload = worker.conn.recv()
                    except (EOFError, OSError):
                        kind, payload = "died", None
                    if kind == "ready":
                        worker.ready = True
                        load_deaths = 0
                        continue
                    if kind == "load_error":
                        raise PipelineLoadError(payload)
                    if kind == "error":
                        raise WorkerError(f"annotating {describe_block(worker.block)} failed in a worker; {RESUME}."
                                          f"\nThe worker's traceback:\n{payload}")
                    if kind == "result":
                        worker.block = None
                        yield payload
                        continue
                elif worker.process.sentinel not in ready:
                    continue
                # the worker is gone: say what died and where, then retry its block on a fresh one
                worker.process.join()
                how = describe_exit(worker.process.exitcode)
                pid = worker.process.pid
                if stop():
                    return
                if worker.block is None:
                    load_deaths += not worker.ready
                    if load_deaths > self.max_retries:
                        raise WorkerError(f"worker process {pid} died ({how}) while loading {self.model!r}, "
                                          f"{load_deaths} times in a row; {RESUME}.")
                else:
                    tries[worker.block.index] = tries.get(worker.block.index, 0) + 1
                    where = describe_block(worker.block)
                    if tries[worker.block.index] > self.max_retries:
                        raise WorkerError(f"worker process {pid} died ({how}) while annotating {where}, on each of "
                                          f"{tries[worker.block.index]} tries; {RESUME}.")
                    logger.warning("worker process %s died (%s) while annotating %s: retrying it on a fresh "
                                   "worker (retry %d of %d)", pid, how, where, tries[worker.block.index],
                                   self.max_retries)
                    retry.append(worker.block)
                worker.stop(0)
                self.workers[position] = _Worker(self.context, self.args)

    def close(self) -> None:
        for worker in self.workers:
            if worker.process.is_alive() and worker.block is None:
                try:
                    worker.conn.send(None)
                except OSError:
                    pass
        for worker in self.workers:
            worker.stop(grace_s=5.0 if worker.block is None else 0.0)
