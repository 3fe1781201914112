"""`--backend ray`: the same blocks through Ray Data, `map_batches` over a pool of actors.

Each actor loads the pipeline once (with one GPU each when `gpu_id` >= 0, and the cores given
divided among the actors otherwise) and annotates one block a call. Ray runs on the cluster
at `address`, or on a local Ray started for the job and shut down after it. Blocks travel
pickled in a binary column. The pending blocks are read in the driver first (bad lines are
named before any work starts); what comes back is written by the driver as it arrives.
"""
import logging
import pickle
from typing import Iterable, Iterator, Optional

from .annotator import annotate_block, load_pipeline
from .inputs import Block
from .shards import ShardResult


class ShardAnnotator:
    """A Ray Data actor: the pipeline, loaded once; one block in, one `ShardResult` out."""

    def __init__(self, model: str, batch_size: int, use_gpu: bool, threads: int):
        # Ray gives an actor that asked for a GPU exactly one, visible as device 0
        self.nlp = load_pipeline(model, 0 if use_gpu else -1, threads)
        self.batch_size = batch_size

    def __call__(self, batch):
        results = [annotate_block(self.nlp, pickle.loads(payload), self.batch_size) for payload in batch["block"]]
        return {"result": [pickle.dumps(result) for result in results]}


class RayActors:
    def __init__(self, model: str, batch_size: int, workers: int, gpu_id: int = -1, address: Optional[str] = None):
        try:
            import ray
        except ImportError as err:
            raise ValueError("--backend ray needs Ray Data: pip install 'spacy-unmask[ray]'") from err
        from .backends import threads_per_worker

        self.ray = ray
        self.started = not ray.is_initialized()
        if not self.started and address:
            raise ValueError(f"--address {address}: Ray is already initialized in this process, so it cannot join another cluster")
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
        self.model, self.batch_size, self.workers = model, batch_size, workers
        self.use_gpu = gpu_id >= 0
        self.threads = 1 if self.use_gpu else threads_per_worker(workers)

    def map(self, blocks: Iterable[Block]) -> Iterator[ShardResult]:
        items = [{"block": pickle.dumps(block)} for block in blocks]
        if not items:
            return
        dataset = self.ray.data.from_items(items, override_num_blocks=len(items)).map_batches(
            ShardAnnotator,
            fn_constructor_kwargs={"model": self.model, "batch_size": self.batch_size, "use_gpu": self.use_gpu,
                                   "threads": self.threads},
            batch_size=1,
            # (Ray 2.5x logs an error-level line that the actor's constructor arguments are in the
            # object store, for any map_batches over actors: ray-project/ray#57733, harmless here)
            compute=self.ray.data.ActorPoolStrategy(size=self.workers),
            num_cpus=self.threads,
            num_gpus=1 if self.use_gpu else 0,
        )
        for row in dataset.iter_rows():
            yield pickle.loads(row["result"])

    def close(self) -> None:
        if self.started:
            self.ray.shutdown()
