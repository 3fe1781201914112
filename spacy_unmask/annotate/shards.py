"""The output folder of `spacy unmask apply`: one shard per input block, and a manifest.

A shard is `shard-NNNNNN.spacy` (a DocBin, each doc's id in `doc.user_data["id"]`) plus
`shard-NNNNNN.jsonl` (one object a document: `id`, `text`, `ents` and `spans` with character
offsets), named by block index, so reading shards in name order gives the input order.
`manifest.json` names the job (model, input and reading options) and every finished shard with
its counts and rejected lines; a shard is listed only after both its files are in place, so a
job killed at any moment is resumed by rerunning it: listed shards are skipped, the rest are
written again. `rejects.jsonl` gathers the skipped lines of every shard when the job ends.
"""
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List

MANIFEST = "manifest.json"
REJECTS = "rejects.jsonl"


class OutputError(ValueError):
    """An output folder that holds another job's shards."""


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


def _write_atomic(path: Path, data: bytes) -> None:
    partial = path.with_name(path.name + ".part")
    with partial.open("wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())  # on disk before the manifest names it
    os.replace(partial, path)


class ShardStore:
    """Finished shards of one job in one folder; `job` is what makes two runs the same job."""

    def __init__(self, folder: Path, job: Dict, force: bool = False):
        self.folder = Path(folder)
        self.job = job
        self.folder.mkdir(parents=True, exist_ok=True)
        manifest = self.folder / MANIFEST
        previous = json.loads(manifest.read_text()) if manifest.is_file() else None
        if previous is not None and not previous.get("shards"):
            previous = None  # nothing finished yet: nothing to keep consistent with
        if previous is not None and previous.get("job") != job and not force:
            changed = sorted(k for k in set(job) | set(previous.get("job", {})) if job.get(k) != previous["job"].get(k))
            raise OutputError(
                f"{self.folder} holds the shards of another job (different {', '.join(changed)}; a changed input "
                "file counts): choose another OUTPUT, or --force to delete them and start over"
            )
        if force:
            for path in self.folder.iterdir():
                if path.name.startswith("shard-") or path.name in (MANIFEST, REJECTS):
                    path.unlink()
            previous = None
        self.shards: Dict[str, dict] = dict(previous["shards"]) if previous else {}
        self._save()

    def done(self, index: int) -> bool:
        name = shard_name(index)
        return name in self.shards and all((self.folder / f"{name}{suffix}").is_file() for suffix in (".spacy", ".jsonl"))

    def finished_items(self) -> int:
        """Documents and rejected lines of the shards already finished (where a rerun's progress starts)."""
        return sum(s["docs"] + len(s["rejects"]) for s in self.shards.values())

    def write(self, result: ShardResult) -> None:
        name = shard_name(result.index)
        _write_atomic(self.folder / f"{name}.spacy", result.docbin)
        lines = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in result.rows)
        _write_atomic(self.folder / f"{name}.jsonl", lines.encode("utf8"))
        self.shards[name] = {"docs": result.docs, "words": result.words, "rejects": result.rejects}
        self._save()

    def _save(self) -> None:
        record = {"job": self.job, "shards": dict(sorted(self.shards.items()))}
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
