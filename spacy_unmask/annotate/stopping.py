"""SIGINT (Ctrl-C) and SIGTERM ask a running job to stop between blocks.

The first signal sets a flag that every backend checks while it waits (a fraction of a second
apart); the job then keeps every finished shard, drops the block in flight and raises
`JobInterrupted`, which says how to resume. A second signal stops at once, as Ctrl-C does
anywhere else. Outside the main thread (where Python allows no signal handlers) nothing is installed and the
flag stays false.
"""
import signal
import threading
from typing import Optional

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class JobInterrupted(Exception):
    """The job stopped on a signal, between blocks; its finished shards are kept."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum  # what a shell reports for a process ended by that signal


class StopSignals:
    """A context manager and a `stop()` callable: true once SIGINT or SIGTERM arrived."""

    def __init__(self):
        self.signum: Optional[int] = None
        self._previous = {}

    def __call__(self) -> bool:
        return self.signum is not None

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name if self.signum else ""

    def _handle(self, signum, frame) -> None:
        if self.signum is not None:
            raise KeyboardInterrupt
        self.signum = signum

    def __enter__(self) -> "StopSignals":
        if threading.current_thread() is threading.main_thread():
            for signum in SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self._previous.items():
            # None: the handler was installed outside Python (Ray's core worker does so)
            signal.signal(signum, signal.SIG_DFL if handler is None else handler)
        self._previous.clear()
