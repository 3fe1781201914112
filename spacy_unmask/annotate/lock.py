"""One job at a time on an OUTPUT folder: an exclusive `flock` on `OUTPUT/.lock`.

The kernel holds the lock for the job's process and drops it when the process ends however it
ends (SIGKILL included), so a dead job never leaves OUTPUT locked and a rerun resumes at once.
The lock file names its holder (pid, host, start time, command line), so a second job is
refused with a message that says which job has the folder. POSIX only (`fcntl`).
"""
import fcntl
import json
import os
import socket
import sys
import time
from pathlib import Path

from .shards import OutputError

LOCK = ".lock"


class OutputLock:
    def __init__(self, folder: Path):
        self.path = Path(folder) / LOCK
        self.handle = None

    def __enter__(self) -> "OutputLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = self.path.open("a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read()
            handle.close()
            try:
                info = json.loads(holder)
                who = (f"pid {info['pid']} on {info['host']}, started {info['started']}: "
                       f"{' '.join(info['command'])}")
            except (ValueError, KeyError, TypeError):
                who = "a job that has not yet said who it is"
            raise OutputError(f"{self.path.parent} is in use by another `spacy unmask apply` job ({who}); "
                              "wait for it to end or stop it, then rerun this command (it resumes)") from None
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                 "started": time.strftime("%Y-%m-%d %H:%M:%S"), "command": sys.argv}) + "\n")
        handle.flush()
        self.handle = handle
        return self

    def __exit__(self, *exc) -> None:
        if self.handle is not None:
            fcntl.flock(self.handle, fcntl.LOCK_UN)
            self.handle.close()
            self.handle = None
