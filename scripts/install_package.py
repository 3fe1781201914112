"""Install a packaged pipeline into a fresh venv from local wheels only, then use it.

    python scripts/install_package.py PACKAGE_DIR VENV [--wheelhouse DIR] [--demo FILE]

The wheelhouse (default: the asset cache's `wheelhouse/`) is filled once with the
pipeline's dependencies, at the versions requirements.txt pins, and spacy-unmask itself;
the install then runs with `--no-index`, so it needs no network. In the new venv the script
loads the pipeline by name, runs `nlp.pipe` over new texts (a tweet, emoji, an empty and a
blank one), writes what came back as a markdown table to FILE (default reports/demo.md, which
the README shows as is) and renders the first doc with displaCy to VENV/../displacy.html.
"""
import argparse
import re
import subprocess
import sys
from pathlib import Path

from fetch_assets import default_cache

ROOT = Path(__file__).resolve().parent.parent
SMOKE = r"""
import sys, spacy
from spacy import displacy
nlp = spacy.load(sys.argv[1])
texts = ["Just landed in New York , heading to Madison Square Garden tonight !",
         "Watching The Walking Dead with @mike and Apple pie 😀", "", "   "]
docs = list(nlp.pipe(texts))
model = nlp.config["components"]["transformer"]["model"]
rows = [f"pipeline `{nlp.meta['name']}` {nlp.meta['version']}, unmask = `{model.get('unmask')}`, "
        f"repeat = {model.get('repeat', 1)}, components {nlp.pipe_names}:", "",
        "| text | `doc.ents` | `doc.spans['sc']` |", "|---|---|---|"]
def shown(spans):
    return ", ".join(f"{s.text} ({s.label_})" for s in spans) or "none"
for doc in docs:
    cells = [repr(doc.text), shown(doc.ents), shown(doc.spans.get("sc", []))]
    rows.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
print("\n".join(rows))
open(sys.argv[3], "w", encoding="utf8").write("\n".join(rows) + "\n")
html = displacy.render(docs[0], style="ent", page=True)
open(sys.argv[2], "w", encoding="utf8").write(html)
print("displacy", len(html), "chars")
"""


def pins_file(requirements: Path, target: Path) -> Path:
    """requirements.txt as pip constraints: its pins hold for the pipeline's dependencies, and
    what the pipeline does not need (pytest, ray, bitsandbytes) is not downloaded. pip refuses
    extras in a constraints file, so `ray[data]==X` becomes `ray==X`."""
    target.write_text("".join(re.sub(r"\[[^\]]*\]", "", line) + "\n" for line in requirements.read_text().splitlines()))
    return target


def run(cmd, quiet: bool = False):
    """Run `cmd`, echoed; `quiet` keeps its output to itself (a check whose failure is expected)."""
    shown = ["<script>" if c is SMOKE else str(c) for c in cmd]
    print("+", " ".join(shown), flush=True)
    return subprocess.run([str(c) for c in cmd], capture_output=quiet).returncode


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("package_dir", type=Path, help="the folder `spacy package` wrote (holds dist/)")
    parser.add_argument("venv", type=Path)
    parser.add_argument("--wheelhouse", type=Path, default=default_cache() / "wheelhouse")
    parser.add_argument("--demo", type=Path, default=ROOT / "reports" / "demo.md",
                        help="where the table of what the installed pipeline returned goes")
    args = parser.parse_args()
    wheels = sorted((args.package_dir / "dist").glob("*.whl"))
    if not wheels:
        print(f"error: no wheel in {args.package_dir / 'dist'}: run `spacy project run package` first", file=sys.stderr)
        return 1
    house = args.wheelhouse
    house.mkdir(parents=True, exist_ok=True)
    py = sys.executable
    if run([py, "-m", "pip", "wheel", "-q", "--no-deps", "-w", house, ROOT]) != 0:
        return 1
    # Fill the wheelhouse once (network) with what the pipeline needs, at our pins; later runs
    # find everything there.
    pins = pins_file(ROOT / "requirements.txt", house / "constraints.txt")
    fill = [py, "-m", "pip", "download", "-q", "--find-links", house, "-d", house, "-c", pins, wheels[-1]]
    if run([*fill, "--no-index"], quiet=True) == 0:
        print(f"wheelhouse {house} holds every requirement: installing offline", flush=True)
    else:
        print(f"wheelhouse {house} lacks some requirements (a first run, or new pins): downloading them from PyPI, once", flush=True)
        if run(fill) != 0:
            return 1
    if not (args.venv / "bin" / "python").exists():
        if run([py, "-m", "venv", args.venv]) != 0:
            return 1
    vpy = args.venv / "bin" / "python"
    if run([vpy, "-m", "pip", "install", "-q", "--no-index", "--find-links", house, "-c", pins, wheels[-1]]) != 0:
        return 1
    # Same version numbers on a rebuild: force the fresh pipeline and spacy-unmask wheels in.
    ours = sorted(house.glob("spacy_unmask-*.whl"))[-1:]
    if run([vpy, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--force-reinstall", wheels[-1], *ours]) != 0:
        return 1
    name = wheels[-1].name.split("-")[0]
    args.demo.parent.mkdir(parents=True, exist_ok=True)
    return run([vpy, "-c", SMOKE, name, args.venv.parent / "displacy.html", args.demo])


if __name__ == "__main__":
    sys.exit(main())
