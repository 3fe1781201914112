"""`spacy unmask apply`: annotate a corpus with any spaCy pipeline, in resumable shards.

What a job guarantees: every input document ends up in exactly one listed shard, once; a shard
is listed only when its files are complete on disk, and one damaged later is redone on resume;
one job at a time holds OUTPUT; a worker that dies costs its block a retry, not the job; a
signal stops the job between blocks; and every way it stops says what happened and that
rerunning the same command resumes.
"""
import logging
import time
from contextlib import closing
from pathlib import Path
from typing import Dict, Optional

import spacy

from .backends import BACKENDS, make_backend
from .inputs import InputError, count_documents, input_files, read_blocks
from .lock import OutputLock
from .shards import OutputError, ShardStore
from .stopping import JobInterrupted, StopSignals
from .workers import RESUME, PipelineLoadError, UsageError, WorkerError

__all__ = ["BACKENDS", "InputError", "JobInterrupted", "OutputError", "PipelineLoadError", "UsageError",
           "WorkerError", "apply_pipeline"]
logger = logging.getLogger("spacy_unmask.annotate")


def check_model(model: str) -> None:
    """Fail here, not in a worker, when MODEL is neither an installed pipeline nor a pipeline folder."""
    if spacy.util.is_package(model) or (Path(model) / "config.cfg").is_file():
        return
    raise PipelineLoadError(f"MODEL {model!r} is neither an installed pipeline package nor a folder with a config.cfg")


def file_fingerprint(path: Path) -> list:
    """Path, size and modification time: a file whose fingerprint changed is another input."""
    stat = path.stat()
    return [str(path.resolve()), stat.st_size, stat.st_mtime_ns]


def apply_pipeline(
    model: str,
    input_path: Path,
    output: Path,
    backend: str = "local",
    workers: int = 1,
    batch_size: int = 64,
    block_size: int = 1000,
    text_key: str = "text",
    id_key: str = "id",
    gpu_id: int = -1,
    address: Optional[str] = None,
    force: bool = False,
    skip_bad: bool = False,
    progress: bool = True,
) -> Dict[str, float]:
    """Annotate every document of `input_path` into shards in `output`; returns the totals."""
    from tqdm import tqdm

    check_model(model)
    # What makes a rerun the same job: a shard is known by its block's index, so the input
    # files (name, size, modification time) and how they are cut into blocks must not change.
    job = {"model": str(Path(model).resolve()) if Path(model).exists() else str(model),
           "input": [file_fingerprint(f) for f in input_files(input_path)],
           "text_key": text_key, "id_key": id_key, "block_size": block_size}
    with OutputLock(output):
        store = ShardStore(output, job, force)
        for name, why in store.damaged.items():
            logger.warning("%s in %s is redone: %s", name, output, why)
        runner = make_backend(backend, model, batch_size, workers, gpu_id, address)
        bar = tqdm(total=count_documents(input_path) if progress else None, initial=store.finished_items(),
                   unit="doc", disable=not progress, dynamic_ncols=True)
        start, words = time.perf_counter(), 0

        def pending():
            for block in read_blocks(input_path, block_size, text_key, id_key, skip_bad):
                if not store.done(block.index):
                    yield block

        try:
            # installed once the backend is up: `ray.init` sets a SIGTERM handler of its own
            # closing: a backend ends its work (Ray Data's threads, say) before `runner.close()`
            with StopSignals() as stop, closing(runner.map(pending(), stop)) as results:
                for result in results:
                    store.write(result)
                    words += result.words
                    bar.update(result.docs + len(result.rejects))
                    bar.set_postfix_str(f"{words / (time.perf_counter() - start):.0f} words/s")
                    if stop():
                        break
        finally:
            bar.close()
            runner.close()
        if stop():
            raise JobInterrupted(f"stopped by {stop.name}: {len(store.shards)} shards are done in {output}; "
                                 f"{RESUME}", stop.signum)
        seconds = time.perf_counter() - start
        totals = store.finish()
    return {**totals, "seconds": round(seconds, 2), "words_this_run": words,
            "words_per_s": round(words / seconds, 1) if seconds else 0.0, "redone": sorted(store.damaged)}
