"""Worker processes forked from a process that has run the decoder.

spaCy's `nlp.pipe(..., n_process=N)` and `spacy apply --n-process N` fork their workers on
Linux. torch's CPU thread pool (GNU OpenMP in its Linux wheels) does not survive a fork: the
child inherits the pool's bookkeeping but none of its threads, and its first multi-threaded
matmul waits for them forever (both workers sit at 0% CPU). A child that runs torch with one
thread never enters the pool, and N workers of one thread each use N cores, which is what the
caller asked for. torch's own DataLoader workers do the same. The handlers are registered
when the first decoder is built (`install`), not on import.
"""
import os

import torch

WORKER_THREADS = 1
# The tokenizers library turns its own threads off in a forked child anyway, and warns in
# every worker unless this variable is set when the fork happens: it is set for the fork
# only, so the parent keeps its setting.
_TOKENIZERS = "TOKENIZERS_PARALLELISM"
_parent_setting = []


def _before_fork() -> None:
    _parent_setting.append(os.environ.get(_TOKENIZERS))
    os.environ[_TOKENIZERS] = "false"


def _after_fork_in_parent() -> None:
    previous = _parent_setting.pop()
    if previous is None:
        del os.environ[_TOKENIZERS]
    else:
        os.environ[_TOKENIZERS] = previous


def _after_fork_in_child() -> None:
    _parent_setting.clear()
    torch.set_num_threads(WORKER_THREADS)


_installed = []


def install() -> None:
    """Register the fork handlers, once; the layer calls this when it builds a decoder, so a
    process that never runs one (`spacy info`, a CLI listing) forks as it always did."""
    if _installed or not hasattr(os, "register_at_fork"):  # elsewhere workers are spawned and start clean
        return
    os.register_at_fork(before=_before_fork, after_in_parent=_after_fork_in_parent, after_in_child=_after_fork_in_child)
    _installed.append(True)
