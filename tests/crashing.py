"""A component that kills its own process on one chosen text: a worker that dies mid-block.

Workers are fresh interpreters (spawned processes, Ray actors), so they register this factory
through a `sitecustomize` that `tests/apply_util.crash_site` puts on their PYTHONPATH.
"""
import os
import signal
from pathlib import Path

from spacy.language import Language


class CrashOn:
    def __init__(self, text: str, marker: str):
        self.text = text
        self.marker = marker

    def __call__(self, doc):
        if doc.text == self.text and not (self.marker and Path(self.marker).exists()):
            if self.marker:
                Path(self.marker).touch()  # only the first try dies
            os.kill(os.getpid(), signal.SIGKILL)
        return doc


@Language.factory("test_crash_on", default_config={"text": "CRASH", "marker": ""})
def make_crash_on(nlp, name: str, text: str, marker: str):
    """SIGKILL this process on a doc whose text is `text`: every time, or once if `marker` is a path."""
    return CrashOn(text, marker)
