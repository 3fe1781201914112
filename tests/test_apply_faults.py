"""`spacy unmask apply` under the faults of long jobs: dead workers, failed and damaged writes,
signals, pipelines that cannot load, and memory that must not grow block after block."""
import errno
import importlib.util
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time

import psutil
import pytest
import spacy

from spacy_unmask.annotate import OutputError, PipelineLoadError, WorkerError
from spacy_unmask.annotate import shards as shards_module
from spacy_unmask.annotate.annotator import annotate_block, load_pipeline
from spacy_unmask.annotate.inputs import read_blocks

from .apply_util import ROOT, apply, crash_site, crashing_pipeline, manifest, shard_rows, write_jsonl
from .pipelines import TRAIN

HAS_RAY = importlib.util.find_spec("ray") is not None
RAY = pytest.param("ray", marks=pytest.mark.skipif(not HAS_RAY, reason="ray[data] not installed"))
# 40 documents, blocks of 8: "CRASH" is the 13th, in block 1 (lines 9-16)
TEXTS = [text for text, _ in TRAIN] * 3 + ["CRASH"] + [text for text, _ in TRAIN] * 6 + ["Obama 😀 in Paris !"] * 3


@pytest.fixture
def crash_env(tmp_path, monkeypatch):
    """New interpreters started by this test (spawned workers, a Ray started here) know `test_crash_on`."""
    monkeypatch.setenv("PYTHONPATH", crash_site(tmp_path / "site"))


def reference_rows(trained_tiny_pipeline, source, tmp_path):
    apply(trained_tiny_pipeline, source, tmp_path / "reference")
    return shard_rows(tmp_path / "reference")


@pytest.mark.parametrize("backend", ["local", RAY])
def test_a_worker_killed_mid_block_costs_that_block_a_retry_not_the_job(trained_tiny_pipeline, tmp_path, crash_env,
                                                                         backend, caplog):
    source = write_jsonl(tmp_path / "in.jsonl", TEXTS)
    marker = tmp_path / "crashed-once"
    model = crashing_pipeline(trained_tiny_pipeline, tmp_path / "crash-once", marker=str(marker))
    with caplog.at_level(logging.WARNING, logger="spacy_unmask.annotate"):
        totals = apply(model, source, tmp_path / "out", backend=backend, workers=2)
    assert marker.exists(), "a worker was killed"
    assert totals["docs"] == len(TEXTS) and totals["shards"] == 5
    assert shard_rows(tmp_path / "out") == reference_rows(trained_tiny_pipeline, source, tmp_path), \
        "every document once, annotated as without the fault"
    if backend == "local":
        assert "died (killed by SIGKILL) while annotating block 1 (in.jsonl lines 9-16): retrying it" in caplog.text


@pytest.mark.parametrize("backend,message", [
    pytest.param("local", r"died \(killed by SIGKILL\) while annotating block 1 \(in.jsonl lines 9-16\), on each of 3 tries",
                 id="local"),
    pytest.param("ray", r"a Ray actor died more often than its 2 restarts allow", marks=RAY.marks, id="ray")])
def test_a_worker_that_dies_on_every_try_stops_the_job_naming_what_died(trained_tiny_pipeline, tmp_path, crash_env,
                                                                        backend, message):
    source = write_jsonl(tmp_path / "in.jsonl", TEXTS)
    model = crashing_pipeline(trained_tiny_pipeline, tmp_path / "crash-always")
    started = time.monotonic()
    with pytest.raises(WorkerError, match=message + r".*; the finished shards are kept: rerunning"):
        apply(model, source, tmp_path / "out", backend=backend, workers=2)
    assert time.monotonic() - started < 300, "no hang"
    listed = manifest(tmp_path / "out")["shards"]
    assert "shard-000001" not in listed and all(entry["docs"] == 8 for entry in listed.values())
    assert not list((tmp_path / "out").glob("*.part"))
    # the cure (here: the same folder without the crashing component) resumes the same job
    spacy.load(trained_tiny_pipeline).to_disk(model)
    totals = apply(model, source, tmp_path / "out", backend=backend, workers=2)
    assert [row["id"] for row in shard_rows(tmp_path / "out")] == [f"doc{i}" for i in range(len(TEXTS))]
    assert totals["words_this_run"] < totals["words"] or not listed


def broken_pipelines(trained, tmp_path):
    """A pipeline whose code is not installed, and one whose weights were damaged."""
    missing = tmp_path / "missing-package"
    spacy.load(trained).to_disk(missing)
    config = (missing / "config.cfg").read_text()
    (missing / "config.cfg").write_text(config.replace('"spacy-unmask.DecoderTransformer.v1"', '"not_installed.Decoder.v1"'))
    corrupt = tmp_path / "corrupt"
    spacy.load(trained).to_disk(corrupt)
    weights = corrupt / "transformer" / "model"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 3])
    return [(missing, "could not be loaded: .*not_installed.Decoder.v1"), (corrupt, "could not be loaded: ")]


@pytest.mark.parametrize("backend,workers", [("local", 1), ("local", 2), pytest.param("ray", 2, marks=RAY.marks)])
def test_a_pipeline_that_cannot_load_stops_the_job_with_the_loaders_error_on_every_backend(
        trained_tiny_pipeline, tmp_path, backend, workers):
    source = write_jsonl(tmp_path / "in.jsonl", TEXTS[:10])
    for model, message in broken_pipelines(trained_tiny_pipeline, tmp_path):
        started = time.monotonic()
        with pytest.raises(PipelineLoadError, match=message):
            apply(model, source, tmp_path / f"out-{model.name}", backend=backend, workers=workers)
        assert time.monotonic() - started < 180, "no hang"
        assert manifest(tmp_path / f"out-{model.name}")["shards"] == {}


@RAY.marks[0]
def test_a_ray_job_that_ends_early_leaves_no_thread_calling_into_the_ray_it_shut_down(trained_tiny_pipeline, tmp_path,
                                                                                     monkeypatch):
    # Such a thread ends the whole process (status 1) when it next calls Ray: in CI, the test run.
    # Here Ray Data's scheduling thread is slow to end, as on a busy machine: 8 s after its
    # shutdown began, past the 2 s Ray Data's own shutdown waits for it (and Ray's own shutdown).
    import ray
    from ray.data._internal.execution.streaming_executor import StreamingExecutor

    from spacy_unmask.annotate.ray_backend import RAY_DATA_THREADS

    step = StreamingExecutor._scheduling_loop_step

    def slow_to_end(self, topology):
        going_on = step(self, topology)
        if self._shutdown:
            time.sleep(8)
        return going_on

    monkeypatch.setattr(StreamingExecutor, "_scheduling_loop_step", slow_to_end)
    before = set(threading.enumerate())
    (missing, message), _ = broken_pipelines(trained_tiny_pipeline, tmp_path)
    with pytest.raises(PipelineLoadError, match=message):
        apply(missing, write_jsonl(tmp_path / "in.jsonl", TEXTS * 5), tmp_path / "out", backend="ray", workers=2)
    left = [t.name for t in threading.enumerate() if t not in before and t.name.startswith(RAY_DATA_THREADS)]
    assert not left and not ray.is_initialized(), left


@pytest.mark.parametrize("call,code", [("fsync", errno.ENOSPC), ("write", errno.EIO)])
def test_a_failed_write_lists_no_partial_shard_and_the_rerun_redoes_it(trained_tiny_pipeline, tmp_path, monkeypatch,
                                                                       call, code):
    source = write_jsonl(tmp_path / "in.jsonl", TEXTS)
    out = tmp_path / "out"
    failing = "shard-000001.jsonl.part"
    real_fsync, real_open = os.fsync, open

    def fsync(fd):
        if os.readlink(f"/proc/self/fd/{fd}").endswith(failing):
            raise OSError(code, os.strerror(code))
        return real_fsync(fd)

    class FailingFile:
        def __init__(self, handle):
            self.handle = handle

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.handle.close()

        def write(self, data):
            self.handle.write(data[: len(data) // 2])  # part of it reached the disk
            raise OSError(code, os.strerror(code))

    def opener(path, *args, **kwargs):
        handle = real_open(path, *args, **kwargs)
        return FailingFile(handle) if str(path).endswith(failing) else handle

    if call == "fsync":
        monkeypatch.setattr(os, "fsync", fsync)
    else:
        monkeypatch.setattr(shards_module, "open", opener, raising=False)
    with pytest.raises(OutputError, match=rf"writing .*shard-000001.jsonl failed: .*\({errno.errorcode[code]}\); "
                                          r"the shards listed in .*manifest.json are complete.*rerunning"):
        apply(trained_tiny_pipeline, source, out)
    monkeypatch.undo()
    assert list(manifest(out)["shards"]) == ["shard-000000"]
    assert not list(out.glob("*.part")), "no partial file is left"
    totals = apply(trained_tiny_pipeline, source, out)
    assert totals["docs"] == len(TEXTS) and totals["words_this_run"] == totals["words"] - manifest(out)["shards"]["shard-000000"]["words"]
    assert shard_rows(out) == reference_rows(trained_tiny_pipeline, source, tmp_path)


def test_a_shard_damaged_after_it_was_listed_is_redone_on_resume(trained_tiny_pipeline, tmp_path, caplog):
    source = write_jsonl(tmp_path / "in.jsonl", TEXTS)
    out = tmp_path / "out"
    apply(trained_tiny_pipeline, source, out)
    before, listed = shard_rows(out), manifest(out)["shards"]
    jsonl = out / "shard-000001.jsonl"
    jsonl.write_bytes(jsonl.read_bytes()[:-40])  # truncated
    docbin = out / "shard-000003.spacy"
    data = bytearray(docbin.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one byte flipped, same size
    docbin.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING, logger="spacy_unmask.annotate"):
        totals = apply(trained_tiny_pipeline, source, out)
    assert totals["redone"] == ["shard-000001", "shard-000003"]
    assert totals["words_this_run"] == listed["shard-000001"]["words"] + listed["shard-000003"]["words"]
    assert "shard-000001.jsonl has" in caplog.text and "shard-000003.spacy does not match its checksum" in caplog.text
    assert shard_rows(out) == before
    (out / "manifest.json").write_text('{"job": ')
    with pytest.raises(OutputError, match="not a readable manifest.*--force"):
        apply(trained_tiny_pipeline, source, out)


@pytest.mark.parametrize("signum,backend,workers", [(signal.SIGTERM, "local", 2), (signal.SIGINT, "local", 1),
                                                   pytest.param(signal.SIGTERM, "ray", 2, marks=RAY.marks)])
def test_a_signal_stops_the_job_between_blocks_within_seconds_and_the_rerun_resumes(trained_tiny_pipeline, tmp_path,
                                                                                   signum, backend, workers):
    texts = [f"Apple opened store {i} in Berlin ." for i in range(2000)]
    source = write_jsonl(tmp_path / "in.jsonl", texts)
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "spacy", "unmask", "apply", str(trained_tiny_pipeline), str(source), str(out),
           "--block-size", "8", "--batch-size", "4", "--backend", backend, "--workers", str(workers), "--no-progress"]
    job = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 180
    while time.time() < deadline and job.poll() is None:
        if (out / "manifest.json").is_file() and len(json.loads((out / "manifest.json").read_text() or "{}").get("shards", {})) >= 2:
            break
        time.sleep(0.05)
    assert job.poll() is None, "the job finished before the signal: give it more blocks"
    children = psutil.Process(job.pid).children(recursive=True)
    sent = time.monotonic()
    job.send_signal(signum)
    output, _ = job.communicate(timeout=60)
    assert time.monotonic() - sent < 15, "it stops within seconds"
    assert job.returncode == 128 + signum, output[-2000:]
    assert f"stopped by {signal.Signals(signum).name}" in output and "rerunning the same command resumes" in output
    psutil.wait_procs(children, timeout=10)
    assert not [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE], "no worker is left"
    listed = manifest(out)["shards"]
    assert 2 <= len(listed) < 250 and not list(out.glob("*.part"))
    rerun = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    rows = shard_rows(out)
    assert [row["id"] for row in rows] == [f"doc{i}" for i in range(2000)] and [row["text"] for row in rows] == texts


def resident_mb() -> float:
    return psutil.Process().memory_info().rss / 2**20


def test_memory_stays_flat_block_after_block(trained_tiny_pipeline, tmp_path):
    """The short version of `spacy project run soak`: blocks of new words, as a long job meets
    them; neither the vocabulary's strings nor the process's memory grow with the blocks."""
    nlp = load_pipeline(str(trained_tiny_pipeline))
    texts = [f"Firm{i} opened store{i} in Town{i} with {i} people ." for i in range(4000)]
    source = write_jsonl(tmp_path / "in.jsonl", texts)
    store = shards_module.ShardStore(tmp_path / "out", {"job": "soak"})
    strings, memory = [], []
    for block in read_blocks(source, 10):
        store.write(annotate_block(nlp, block, 10))
        if block.index in (50, 399):
            strings.append(len(nlp.vocab.strings))
            memory.append(resident_mb())
    assert strings[1] == strings[0], "each block's new strings are freed with it"
    assert memory[1] - memory[0] < 8, f"memory grew from {memory[0]:.0f} to {memory[1]:.0f} MB over 350 blocks"
