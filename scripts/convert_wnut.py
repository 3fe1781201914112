"""WNUT-16 (token<TAB>BIO per line, a blank line between tweets) to train/dev/test .spacy files.

    python scripts/convert_wnut.py INPUT OUTPUT_DIR [--n-dev 240] [--n-test 480] [--seed 13]

Only the shared task's training split ships offline, so dev and test are carved
from it: the tweets are shuffled with a fixed seed, the first n_test form the test
split, the next n_dev the dev split, the rest train. Gold entities go into both
`doc.ents` (for `ner`) and `doc.spans["sc"]` (for `spancat`).
"""
import argparse
import json
import random
import sys
from pathlib import Path
from typing import List, Tuple

from spacy.tokens import Doc, DocBin
from spacy.training.iob_utils import biluo_tags_to_spans, iob_to_biluo
from spacy.vocab import Vocab

SPANS_KEY = "sc"


class DataError(ValueError):
    pass


def read_conll(path: Path) -> List[Tuple[List[str], List[str]]]:
    """(words, BIO tags) per tweet; every malformed line is reported with its number."""
    if not path.is_file():
        raise DataError(f"{path} does not exist: run `python scripts/fetch_assets.py --link assets` first")
    tweets, words, tags = [], [], []
    for number, line in enumerate(path.read_text(encoding="utf8").splitlines(), start=1):
        if not line.strip():
            if words:
                tweets.append((words, tags))
                words, tags = [], []
            continue
        parts = line.split("\t")
        if len(parts) != 2 or not parts[0] or not (parts[1] == "O" or parts[1][:2] in ("B-", "I-")):
            raise DataError(f"{path}:{number}: expected 'token<TAB>BIO-tag', got {line!r}")
        words.append(parts[0])
        tags.append(parts[1])
    if words:
        tweets.append((words, tags))
    if not tweets:
        raise DataError(f"{path} holds no tweets")
    return tweets


def to_doc(vocab: Vocab, words: List[str], tags: List[str]) -> Doc:
    doc = Doc(vocab, words=words, spaces=[True] * (len(words) - 1) + [False])
    # Repair stray I- tags that follow O (as conlleval does): they open an entity.
    fixed, previous = [], "O"
    for tag in tags:
        if tag.startswith("I-") and previous[2:] != tag[2:]:
            tag = "B-" + tag[2:]
        fixed.append(tag)
        previous = tag
    doc.ents = biluo_tags_to_spans(doc, iob_to_biluo(fixed))
    doc.spans[SPANS_KEY] = list(doc.ents)
    return doc


def split(n: int, n_dev: int, n_test: int, seed: int):
    if n_dev < 1 or n_test < 1 or n_dev + n_test >= n:
        raise DataError(f"n_dev={n_dev} and n_test={n_test} must be positive and leave training tweets of {n}")
    order = list(range(n))
    random.Random(seed).shuffle(order)
    return {"test": order[:n_test], "dev": order[n_test : n_test + n_dev], "train": order[n_test + n_dev :]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("input", type=Path)
    parser.add_argument("output_dir", type=Path)
    parser.add_argument("--n-dev", type=int, default=240)
    parser.add_argument("--n-test", type=int, default=480)
    parser.add_argument("--seed", type=int, default=13)
    args = parser.parse_args()
    try:
        tweets = read_conll(args.input)
        parts = split(len(tweets), args.n_dev, args.n_test, args.seed)
    except DataError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    vocab = Vocab()
    docs = [to_doc(vocab, words, tags) for words, tags in tweets]
    args.output_dir.mkdir(parents=True, exist_ok=True)
    stats = {"tweets": len(docs), "tokens": sum(len(d) for d in docs), "entities": sum(len(d.ents) for d in docs)}
    for name, indices in parts.items():
        # Gold lives in ents and spans; no user data, so reading a doc costs one msgpack
        # decode fewer (srsly scans its whole registry on every decode).
        DocBin(docs=[docs[i] for i in indices], store_user_data=False).to_disk(args.output_dir / f"{name}.spacy")
        stats[name] = len(indices)
    labels = {}
    for doc in docs:
        for ent in doc.ents:
            labels[ent.label_] = labels.get(ent.label_, 0) + 1
    stats["labels"] = dict(sorted(labels.items(), key=lambda kv: -kv[1]))
    (args.output_dir / "stats.json").write_text(json.dumps(stats, indent=2) + "\n")
    print(json.dumps(stats))
    return 0


if __name__ == "__main__":
    sys.exit(main())
