"""Reading what `spacy unmask apply` annotates: documents in blocks, each line accounted for.

INPUT is a `.jsonl` file (one JSON object a line, the text under `text_key`), a `.txt` file
(one document a line), a `.spacy` DocBin, a `.parquet` file (a `text_key` column), or a folder
of these (read in name order). Every document becomes a `Record` with an id (the `id_key`
value where there is one, else `file:line`) and the place it came from. A line that cannot be
read (bad JSON, no text, not UTF-8) raises `InputError` naming the file and the line, or, with
`skip_bad`, becomes a `Reject` with the reason. Empty and whitespace-only texts are records.
"""
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, List, Union

SUFFIXES = (".jsonl", ".txt", ".spacy", ".parquet")


class InputError(ValueError):
    """A document that cannot be read, named by file and line."""


@dataclass(frozen=True)
class Record:
    id: str
    text: str
    source: str
    line: int


@dataclass(frozen=True)
class Reject:
    source: str
    line: int
    reason: str

    def to_dict(self) -> dict:
        return {"source": self.source, "line": self.line, "reason": self.reason}


@dataclass(frozen=True)
class Block:
    """Up to `block_size` consecutive documents of one file: what one output shard holds."""

    index: int
    records: List[Record]
    rejects: List[Reject]


def input_files(path: Union[str, Path]) -> List[Path]:
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix in SUFFIXES)
        if not files:
            raise InputError(f"{path}: the folder holds no {', '.join(SUFFIXES)} files")
        return files
    if not path.is_file():
        raise InputError(f"{path}: no such file or folder")
    if path.suffix not in SUFFIXES:
        raise InputError(f"{path}: not one of {', '.join(SUFFIXES)} (or a folder of them)")
    return [path]


def _items(path: Path, text_key: str, id_key: str) -> Iterator[Union[Record, Reject]]:
    """Every document of one file, or a `Reject` for a line that cannot be one."""
    source = str(path)
    if path.suffix == ".spacy":
        yield from _docbin_items(path)
        return
    if path.suffix == ".parquet":
        yield from _parquet_items(path, text_key, id_key)
        return
    try:
        handle = path.open("rb")
    except OSError as err:
        raise InputError(f"{source}: cannot be read ({err.strerror})") from err
    with handle:
        for number, raw in enumerate(handle, start=1):
            try:
                line = raw.decode("utf8")
            except UnicodeDecodeError as err:
                yield Reject(source, number, f"not UTF-8 (byte {err.start})")
                continue
            line = line.rstrip("\r\n")
            if number == 1:
                line = line.removeprefix("\ufeff")  # a byte-order mark is not text
            if path.suffix == ".txt":
                yield Record(f"{path.name}:{number}", line, source, number)
                continue
            if not line.strip():
                continue  # a blank line in JSONL holds no object
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as err:
                yield Reject(source, number, f"not valid JSON ({err.msg} at column {err.colno})")
                continue
            if not isinstance(obj, dict):
                yield Reject(source, number, f"a JSON {type(obj).__name__}, not an object")
            elif text_key not in obj:
                yield Reject(source, number, f"no {text_key!r} key (keys: {', '.join(map(str, obj)) or 'none'})")
            elif not isinstance(obj[text_key], str):
                yield Reject(source, number, f"{text_key!r} is a {type(obj[text_key]).__name__}, not a string")
            else:
                doc_id = obj.get(id_key)
                yield Record(str(doc_id) if doc_id is not None else f"{path.name}:{number}", obj[text_key], source, number)


def _docbin_items(path: Path) -> Iterator[Record]:
    import spacy
    from spacy.tokens import DocBin

    try:
        docs = DocBin().from_disk(path).get_docs(spacy.blank("xx").vocab)
        for number, doc in enumerate(docs, start=1):
            yield Record(f"{path.name}:{number}", doc.text, str(path), number)
    except (ValueError, KeyError, OSError) as err:  # srsly / msgpack errors on a damaged file
        raise InputError(f"{path}: not a readable DocBin ({err})") from err


def _parquet_items(path: Path, text_key: str, id_key: str) -> Iterator[Union[Record, Reject]]:
    try:
        import pyarrow.parquet as pq
    except ImportError as err:
        raise InputError(f"{path}: reading Parquet needs pyarrow (pip install pyarrow)") from err
    try:
        table = pq.read_table(path)
    except Exception as err:  # pyarrow's ArrowInvalid, OSError...
        raise InputError(f"{path}: not a readable Parquet file ({err})") from err
    if text_key not in table.column_names:
        raise InputError(f"{path}: no {text_key!r} column (columns: {', '.join(table.column_names)})")
    texts = table.column(text_key).to_pylist()
    ids = table.column(id_key).to_pylist() if id_key in table.column_names else [None] * len(texts)
    for number, (text, doc_id) in enumerate(zip(texts, ids), start=1):
        if not isinstance(text, str):
            yield Reject(str(path), number, f"{text_key!r} is {'null' if text is None else type(text).__name__}, not a string")
        else:
            yield Record(str(doc_id) if doc_id is not None else f"{path.name}:{number}", text, str(path), number)


def read_blocks(path: Union[str, Path], block_size: int, text_key: str = "text", id_key: str = "id",
                skip_bad: bool = False) -> Iterator[Block]:
    """The input's documents in blocks of `block_size` (a block never spans two files).

    A bad line raises `InputError` (file and line) as its block is read, before the block is
    handed out, unless `skip_bad`: then the block carries it as a `Reject`.
    """
    if not isinstance(block_size, int) or block_size < 1:
        raise InputError(f"block size {block_size!r}: must be a positive integer")
    index = 0
    for path in input_files(path):
        records, rejects = [], []
        for item in _items(path, text_key, id_key):
            if isinstance(item, Reject):
                if not skip_bad:
                    raise InputError(f"{item.source}:{item.line}: {item.reason} (--skip-bad skips such lines)")
                rejects.append(item)
                continue
            records.append(item)
            if len(records) == block_size:
                yield Block(index, records, rejects)
                index, records, rejects = index + 1, [], []
        if records or rejects:
            yield Block(index, records, rejects)
            index += 1


def count_documents(path: Union[str, Path]) -> int:
    """About how many documents the input holds (for the progress bar's ETA): a quick pass."""
    total = 0
    for file in input_files(path):
        if file.suffix in (".txt", ".jsonl"):
            with file.open("rb") as handle:
                total += sum(1 for line in handle if file.suffix == ".txt" or line.strip())
        elif file.suffix == ".parquet":
            try:
                import pyarrow.parquet as pq

                total += pq.ParquetFile(file).metadata.num_rows
            except Exception:  # unreadable: read_blocks names the problem
                pass
        else:
            try:
                from spacy.tokens import DocBin

                total += len(DocBin().from_disk(file))
            except Exception:
                pass
    return total
