"""The output folder of `spacy unmask apply`: one shard per input block, and a manifest.

A shard is `shard-NNNNNN.spacy` (a DocBin, each doc's id in `doc.user_data["id"]`) plus
`shard-NNNNNN.jsonl` (one object a document: `id`, `text`, `ents` and `spans` with character
offsets), named by block index, so reading shards in name order gives the input order.
`manifest.json` names the job (model, input and reading options) and every finished shard with
its counts, rejected lines and each file's size and SHA-256; a shard is listed only after both
its files are written, flushed to disk (`fsync`, the folder too) and renamed into place, so a
job killed at any moment is resumed by rerunning it: listed shards are skipped, the rest are
written again. On resume every listed shard is checked against its checksums, and one that was
damaged since (truncated, bytes changed, deleted) is redone rather than kept. A write that fails
(a full disk, an I/O error) removes its partial file and stops the job with `OutputError`.
`rejects.jsonl` gathers the skipped lines of every shard when the job ends.
"""
import errno
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List

MANIFEST = "manifest.json"
REJECTS = "rejects.jsonl"
SUFFIXES = (".spacy", ".jsonl")
FORMAT = 2  # 2: shards carry their files' sizes and checksums


class OutputError(ValueError):
    """An output folder that cannot take this job: another job's shards or lock, a failed write."""


@dataclass
class ShardResult:
    """What annotating one block produced (built in a worker, written by the driver)."""

    index: int
    docbin: bytes
    rows: List[dict]
    words: int
    rejects: List[dict] = field(default_factory=list)

    @property
    def docs(self) -> int:
        return len(self.rows)


def shard_name(index: int) -> str:
    return f"shard-{index:06d}"


def _fsync_folder(folder: Path) -> None:
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)  # the rename itself is on disk
    finally:
        os.close(descriptor)


def write_atomic(path: Path, data: bytes) -> None:
    """`path` holds `data` in full, or keeps what it held: written to `path.part`, flushed, renamed.

    The one atomic write of the project (the shards here, the sweep's and the study's run
    records, the asset cache): an `OSError` leaves no partial file behind and is raised as is."""
    partial = path.with_name(path.name + ".part")
    try:
        with open(partial, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())  # on disk before the manifest names it
        os.replace(partial, path)
        _fsync_folder(path.parent)
    except OSError:
        partial.unlink(missing_ok=True)
        raise


def _write_atomic(path: Path, data: bytes) -> None:
    """`write_atomic`, a failure named as the job's `OutputError` (what is kept, how to resume)."""
    try:
        write_atomic(path, data)
    except OSError as err:
        code = errno.errorcode.get(err.errno, "?") if err.errno else "?"
        raise OutputError(f"writing {path} failed: {err.strerror or err} ({code}); the shards listed in "
                          f"{path.parent / MANIFEST} are complete and kept, and rerunning the same command "
                          "redoes the rest") from err


def fingerprint(data: bytes) -> dict:
    return {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def _damage(folder: Path, name: str, entry: dict) -> str:
    """Why a listed shard's files do not match the manifest ('' when they do)."""
    files = entry.get("files")
    if not files:
        return "listed without checksums (an older spacy-unmask wrote it)"
    for suffix in SUFFIXES:
        path = folder / f"{name}{suffix}"
        expected = files.get(suffix, {})
        if not path.is_file():
            return f"{path.name} is missing"
        if path.stat().st_size != expected.get("bytes"):
            return f"{path.name} has {path.stat().st_size} bytes, not {expected.get('bytes')}"
        if fingerprint(path.read_bytes())["sha256"] != expected.get("sha256"):
            return f"{path.name} does not match its checksum"
    return ""


def _read_manifest(path: Path) -> dict:
    try:
        record = json.loads(path.read_text(encoding="utf8"))
    except (ValueError, UnicodeDecodeError) as err:
        raise OutputError(f"{path} is not a readable manifest ({err}): choose another OUTPUT, or --force to "
                          "delete its shards and start over") from err
    if not isinstance(record, dict) or not isinstance(record.get("shards", {}), dict):
        raise OutputError(f"{path} is not a manifest of `spacy unmask apply`: choose another OUTPUT, or --force")
    return record


class ShardStore:
    """Finished shards of one job in one folder; `job` is what makes two runs the same job."""

    def __init__(self, folder: Path, job: Dict, force: bool = False):
        self.folder = Path(folder)
        self.job = job
        self.folder.mkdir(parents=True, exist_ok=True)
        manifest = self.folder / MANIFEST
        previous = _read_manifest(manifest) if manifest.is_file() and not force else None
        if previous is not None and not previous.get("shards"):
            previous = None  # nothing finished yet: nothing to keep consistent with
        if previous is not None and previous.get("job") != job:
            changed = sorted(k for k in set(job) | set(previous.get("job", {})) if job.get(k) != previous["job"].get(k))
            raise OutputError(
                f"{self.folder} holds the shards of another job (different {', '.join(changed)}; a changed input "
                "file counts): choose another OUTPUT, or --force to delete them and start over"
            )
        for path in self.folder.iterdir():
            if path.name.endswith(".part") or force and (path.name.startswith("shard-") or path.name in (MANIFEST, REJECTS)):
                path.unlink()  # a .part file is a write that a killed job left unfinished
        self.shards: Dict[str, dict] = dict(previous["shards"]) if previous else {}
        # shards damaged since they were listed: {name: why}; they are redone by this run
        self.damaged: Dict[str, str] = {}
        for name, entry in sorted(self.shards.items()):
            why = _damage(self.folder, name, entry)
            if why:
                self.damaged[name] = why
                del self.shards[name]
        self._save()

    def done(self, index: int) -> bool:
        return shard_name(index) in self.shards

    def finished_items(self) -> int:
        """Documents and rejected lines of the shards already finished (where a rerun's progress starts)."""
        return sum(s["docs"] + len(s["rejects"]) for s in self.shards.values())

    def write(self, result: ShardResult) -> None:
        name = shard_name(result.index)
        lines = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in result.rows).encode("utf8")
        files = {}
        for suffix, data in zip(SUFFIXES, (result.docbin, lines)):
            _write_atomic(self.folder / f"{name}{suffix}", data)
            files[suffix] = fingerprint(data)
        self.shards[name] = {"docs": result.docs, "words": result.words, "rejects": result.rejects, "files": files}
        self._save()

    def _save(self) -> None:
        record = {"format": FORMAT, "job": self.job, "shards": dict(sorted(self.shards.items()))}
        _write_atomic(self.folder / MANIFEST, (json.dumps(record, indent=1) + "\n").encode("utf8"))

    def finish(self) -> Dict[str, int]:
        """Write `rejects.jsonl` (every shard's skipped lines) and return the job's totals."""
        rejects = [r for shard in self.shards.values() for r in shard["rejects"]]
        lines = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rejects)
        _write_atomic(self.folder / REJECTS, lines.encode("utf8"))
        return {
            "shards": len(self.shards),
            "docs": sum(s["docs"] for s in self.shards.values()),
            "words": sum(s["words"] for s in self.shards.values()),
            "rejects": len(rejects),
        }
