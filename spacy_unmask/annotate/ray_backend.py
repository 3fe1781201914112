"""`--backend ray`: the same blocks through Ray Data, `map_batches` over a pool of actors.

Each actor loads the pipeline once (with one GPU each when `gpu_id` >= 0, and the cores given
divided among the actors otherwise) and annotates one block a call. Ray runs on the cluster
at `address`, or on a local Ray started for the job and shut down after it. Blocks travel
pickled in a binary column. The pending blocks are read in the driver first (bad lines are
named before any work starts); what comes back is written by the driver as it arrives.

Faults: an actor whose process dies is restarted and its block retried, `MAX_RETRIES` times
each (Ray Data's own default is to retry without end); past that, or when the pipeline cannot
be loaded in an actor, the job stops with the cause. A stop request is seen when the next
block comes back (Ray Data's iterator cannot be interrupted safely: an exception raised inside
it, or a shutdown while another thread waits in it, ends the process), so on Ray a job stops
within one block's time: use smaller blocks where that matters.

Ending early (a stop, an error) must leave no Ray Data thread that still calls into Ray once
it is shut down: Ray's core worker ends the whole process, with status 1, when one does. So
results are read without Ray Data's local prefetching (the results are small, so it gains
nothing, and it is one more thread to wait for), and `close` waits for the threads Ray Data
started for the job that call into Ray (its scheduling thread, which Ray Data's own shutdown
gives 2 s; the metadata fetcher; the reader that fetches the next block) before it shuts Ray
down.
"""
import logging
import pickle
import threading
import time
import warnings
from contextlib import closing
from typing import Callable, Iterable, Iterator, List, Optional

from .annotator import annotate_block, load_pipeline
from .inputs import Block
from .shards import ShardResult
from .workers import MAX_RETRIES, RESUME, PipelineLoadError, UsageError, WorkerError, threads_per_worker

logger = logging.getLogger("spacy_unmask.annotate")
# Ray Data's driver-side threads that call into Ray (ray.data._internal: the streaming executor,
# its metadata fetcher, the batch iterator's reader); `close` waits for a job's to end
RAY_DATA_THREADS = ("StreamingExecutor-", "ray-data-metadata-prefetch", "iter_threaded")
SHUTDOWN_WAIT_S = 15.0  # at most this long, in all, before Ray is shut down anyway


class ShardAnnotator:
    """A Ray Data actor: the pipeline, loaded once; one block in, one `ShardResult` out."""

    def __init__(self, model: str, batch_size: int, use_gpu: bool, threads: int):
        # Ray gives an actor that asked for a GPU exactly one, visible as device 0. A load error
        # goes back as the first block's result: raised here (or in a call), Ray would hand the
        # driver only its text, inside an ActorDiedError (or a UserCodeException).
        self.error = None
        try:
            self.nlp = load_pipeline(model, 0 if use_gpu else -1, threads)
        except PipelineLoadError as err:
            self.error = err
        self.batch_size = batch_size

    def __call__(self, batch):
        if self.error is not None:
            return {"result": [pickle.dumps(self.error)]}
        results = [annotate_block(self.nlp, pickle.loads(payload), self.batch_size) for payload in batch["block"]]
        return {"result": [pickle.dumps(result) for result in results]}


class RayActors:
    def __init__(self, model: str, batch_size: int, workers: int, gpu_id: int = -1, address: Optional[str] = None,
                 max_retries: int = MAX_RETRIES):
        try:
            import ray
        except ImportError as err:
            raise UsageError("--backend ray needs Ray Data: pip install 'spacy-unmask[ray]'") from err

        self.ray = ray
        self.started = not ray.is_initialized()
        if not self.started and address:
            raise UsageError(f"--address {address}: Ray is already initialized in this process, so it cannot join another cluster")
        if self.started:
            if address:
                ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
            else:
                # a Ray of its own on this machine, not one RAY_ADDRESS or an earlier job left running
                ray.init(address="local", include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
        # the command shows its own progress bar; Ray Data's would interleave with it, and its
        # notice that it is off would only puzzle the user
        ray.data.DataContext.get_current().enable_progress_bars = False
        logging.getLogger("ray.data").setLevel(logging.WARNING)
        logging.getLogger("ray.data._internal.progress").setLevel(logging.ERROR)
        self.threads_before = set(threading.enumerate())  # a job waits only for the threads it started
        self.model, self.batch_size, self.workers, self.max_retries = model, batch_size, workers, max_retries
        self.use_gpu = gpu_id >= 0
        self.threads = 1 if self.use_gpu else threads_per_worker(workers)

    def _results(self, items: list) -> Iterator[bytes]:
        with warnings.catch_warnings():
            # Ray 2.6x deprecates extra remote arguments (removal announced for 2.64) and names no
            # successor for max_restarts / max_task_retries, the only way to bound Ray Data's
            # default of retrying dead actors without end; on a Ray without them this call fails
            # loudly (an unexpected keyword), never silently unbounded
            warnings.filterwarnings("ignore", message="`ray_remote_args` is deprecated")
            dataset = self.ray.data.from_items(items, override_num_blocks=len(items)).map_batches(
                ShardAnnotator,
                fn_constructor_kwargs={"model": self.model, "batch_size": self.batch_size, "use_gpu": self.use_gpu,
                                       "threads": self.threads},
                batch_size=1,
                # (Ray 2.5x-2.6x logs an error-level line that the actor's constructor arguments are
                # in the object store, for any map_batches over actors: ray-project/ray#57733, harmless)
                compute=self.ray.data.ActorPoolStrategy(size=self.workers),
                num_cpus=self.threads,
                num_gpus=1 if self.use_gpu else 0,
                max_restarts=self.max_retries,  # an actor process that dies is restarted this many times,
                max_task_retries=self.max_retries,  # and the block it held retried as often
            )
        # prefetch_batches=0: no local prefetching and no formatting threads
        with closing(iter(dataset.iter_batches(batch_size=None, batch_format="pyarrow", prefetch_batches=0))) as batches:
            for batch in batches:
                yield from batch.column("result").to_pylist()

    def map(self, blocks: Iterable[Block], stop: Callable[[], bool] = lambda: False) -> Iterator[ShardResult]:
        items = [{"block": pickle.dumps(block)} for block in blocks]
        if not items:
            return
        rows = self._results(items)
        try:
            while not stop():
                try:
                    payload = next(rows)
                except StopIteration:
                    return
                except self.ray.exceptions.RayActorError as err:
                    raise WorkerError(f"a Ray actor died more often than its {self.max_retries} restarts allow "
                                      f"({type(err).__name__}); {RESUME}.") from err
                result = pickle.loads(payload)
                if isinstance(result, PipelineLoadError):
                    raise result
                yield result
        finally:
            # ends Ray Data's execution (its threads, its actors) before Ray itself is shut down
            rows.close()

    def close(self) -> None:
        if self.started:
            deadline = time.monotonic() + SHUTDOWN_WAIT_S
            for thread in self._ray_data_threads():
                thread.join(max(0.0, deadline - time.monotonic()))
            left = [thread.name for thread in self._ray_data_threads() if thread.is_alive()]
            if left:
                logger.warning("Ray Data's threads %s did not end within %.0f s; shutting Ray down anyway",
                               ", ".join(left), SHUTDOWN_WAIT_S)
            self.ray.shutdown()

    def _ray_data_threads(self) -> List[threading.Thread]:
        return [thread for thread in threading.enumerate() if thread not in self.threads_before
                and thread is not threading.current_thread() and thread.name.startswith(RAY_DATA_THREADS)]
