"""`spacy unmask apply`: every backend gives the same shards, a killed job resumes, bad input is named."""
import json
import signal
import subprocess
import sys
import time

import pytest
import spacy
import spacy_unmask
from spacy.tokens import DocBin

from spacy_unmask.annotate import InputError, OutputError, PipelineLoadError, UsageError
from spacy_unmask.annotate.inputs import read_blocks

from .apply_util import ROOT, TEXTS, apply, shard_rows, write_jsonl


@pytest.mark.parametrize("backend,workers", [("local", 2), pytest.param("ray", 2, marks=pytest.mark.skipif(
    __import__("importlib").util.find_spec("ray") is None, reason="ray[data] not installed"))])
def test_every_backend_writes_the_shards_of_one_process_and_of_nlp_pipe(trained_tiny_pipeline, tmp_path, backend, workers):
    source = write_jsonl(tmp_path / "in.jsonl", TEXTS)
    totals = apply(trained_tiny_pipeline, source, tmp_path / "one")
    assert totals["docs"] == len(TEXTS) and totals["shards"] == 4 and totals["rejects"] == 0
    reference = shard_rows(tmp_path / "one")
    nlp = spacy.load(trained_tiny_pipeline)
    expected = [[{"start": e.start_char, "end": e.end_char, "label": e.label_} for e in doc.ents] for doc in nlp.pipe(TEXTS)]
    assert [row["ents"] for row in reference] == expected and sum(map(len, expected)) > 0
    assert [row["id"] for row in reference] == [f"doc{i}" for i in range(len(TEXTS))]
    assert [row["text"] for row in reference] == TEXTS, "empty and whitespace texts are kept"
    apply(trained_tiny_pipeline, source, tmp_path / backend, backend=backend, workers=workers)
    assert shard_rows(tmp_path / backend) == reference
    docs = [d for shard in sorted((tmp_path / backend).glob("shard-*.spacy"))
            for d in DocBin().from_disk(shard).get_docs(nlp.vocab)]
    assert [d.user_data["id"] for d in docs] == [row["id"] for row in reference]
    assert [[(e.start_char, e.end_char, e.label_) for e in d.ents] for d in docs] == \
        [[(e["start"], e["end"], e["label"]) for e in row["ents"]] for row in reference]


def test_spacys_cli_loads_our_command_without_the_model_libraries():
    """spaCy imports every `spacy_cli` plugin at each `python -m spacy ...` call: ours must not
    bring transformers, peft or bitsandbytes along (seconds on every command)."""
    probe = ("import sys; from spacy.cli._util import setup_cli; import spacy_unmask.cli, spacy_unmask; "
             "heavy = sorted({'transformers', 'peft', 'bitsandbytes', 'spacy_unmask.decoder'} & set(sys.modules)); "
             "assert not heavy, heavy; "
             "assert spacy_unmask.DecoderSettings.__module__ == 'spacy_unmask.settings'; "
             "assert spacy_unmask.DecoderEncoder.__module__ == 'spacy_unmask.decoder'; "
             "assert 'transformers' in sys.modules")
    result = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    with pytest.raises(AttributeError, match="no attribute 'Nothing'"):
        spacy_unmask.Nothing


def test_the_command_is_in_spacys_cli_a_second_job_is_refused_and_a_killed_job_resumes_with_every_document_once(trained_tiny_pipeline, tmp_path):
    texts = [f"Apple opened store {i} in Berlin ." for i in range(600)]
    source = write_jsonl(tmp_path / "in.jsonl", texts)
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "spacy", "unmask", "apply", str(trained_tiny_pipeline), str(source), str(out),
           "--block-size", "4", "--batch-size", "4", "--no-progress"]
    job = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while time.time() < deadline and job.poll() is None:
        manifest = out / "manifest.json"
        if manifest.is_file() and len(json.loads(manifest.read_text() or "{}").get("shards", {})) >= 2:
            break
        time.sleep(0.05)
    assert job.poll() is None, "the job finished before it could be killed: give it more blocks"
    # a second job on the same OUTPUT is refused at once, naming the one that holds it
    with pytest.raises(OutputError, match=rf"in use by another `spacy unmask apply` job \(pid {job.pid} on .*unmask apply"):
        apply(trained_tiny_pipeline, source, out, block_size=4, batch_size=4)
    job.send_signal(signal.SIGKILL)
    job.wait()
    killed_at = len(json.loads((out / "manifest.json").read_text())["shards"])
    assert 2 <= killed_at < 150
    rerun = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert "600 documents (4200 words)" in rerun.stdout.replace("\n", " ")
    this_run = int(rerun.stdout.replace("\n", " ").split("this run: ")[1].split(" words")[0])
    assert this_run == 4200 - 7 * 4 * killed_at, "the rerun annotates exactly the blocks the killed job left"
    rows = shard_rows(out)
    assert [row["id"] for row in rows] == [f"doc{i}" for i in range(600)]
    assert [row["text"] for row in rows] == texts


def test_a_malformed_line_stops_the_job_naming_file_and_line_before_its_block_is_done(trained_tiny_pipeline, tmp_path):
    source = write_jsonl(tmp_path / "in.jsonl", TEXTS[:12])
    lines = source.read_text().splitlines()
    lines[10] = '{"id": "doc10", "text": "unterminated'
    source.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out"
    with pytest.raises(InputError, match=rf"{source}:11: not valid JSON"):
        apply(trained_tiny_pipeline, source, out)
    shards = json.loads((out / "manifest.json").read_text())["shards"]
    assert list(shards) == ["shard-000000"], "the block before is done, the bad line's block is not"
    # the remedy the error names works on the same OUTPUT, keeping the finished shard
    totals = apply(trained_tiny_pipeline, source, out, skip_bad=True)
    assert totals["docs"] == 11 and totals["rejects"] == 1 and totals["words_this_run"] < sum(len(t.split()) for t in TEXTS[:12])


def test_a_changed_input_is_another_job_and_a_byte_order_mark_is_not_text(trained_tiny_pipeline, tmp_path):
    source = write_jsonl(tmp_path / "in.jsonl", TEXTS[:5])
    apply(trained_tiny_pipeline, source, tmp_path / "out")
    with source.open("a") as handle:
        handle.write(json.dumps({"id": "late", "text": "Apple in Paris ."}) + "\n")
    with pytest.raises(OutputError, match="another job.*different input.*changed input"):
        apply(trained_tiny_pipeline, source, tmp_path / "out")
    bom = tmp_path / "bom.jsonl"
    bom.write_bytes("\ufeff".encode("utf8") + b'{"id": "x", "text": "Apple ."}\n')
    (tmp_path / "bom.txt").write_bytes("\ufeffApple .\n".encode("utf8"))
    assert [r.text for b in read_blocks(bom, 4) for r in b.records] == ["Apple ."]
    assert [r.text for b in read_blocks(tmp_path / "bom.txt", 4) for r in b.records] == ["Apple ."]


@pytest.mark.parametrize("content,reason", [
    (b'{"id": 1, "body": "no text key"}\n', "line 1.*no 'text' key \\(keys: id, body\\)"),
    (b'{"text": 12}\n', "'text' is a int, not a string"),
    (b'["a list"]\n', "a JSON list, not an object"),
    (b'{"text": "caf\xe9"}\n', "not UTF-8"),
])
def test_each_kind_of_bad_line_is_named(tmp_path, content, reason):
    source = tmp_path / "bad.jsonl"
    source.write_bytes(b'{"text": "fine"}\n' + content)
    with pytest.raises(InputError, match=f"{source}:2: " + reason.replace("line 1.*", "")):
        list(read_blocks(source, 10))


def test_skip_bad_writes_the_rejects_and_counts_them(trained_tiny_pipeline, tmp_path):
    source = tmp_path / "in.jsonl"
    source.write_bytes(b'{"id": "a", "text": "Apple in Berlin ."}\n{"oops"\n{"id": "b", "text": "   "}\n\xff\xfe\n{"id": "c", "body": 1}\n')
    totals = apply(trained_tiny_pipeline, source, tmp_path / "out", skip_bad=True)
    assert totals["docs"] == 2 and totals["rejects"] == 3
    rejects = [json.loads(line) for line in (tmp_path / "out" / "rejects.jsonl").read_text().splitlines()]
    assert [(r["line"], r["reason"].split(" (")[0]) for r in rejects] == [(2, "not valid JSON"), (4, "not UTF-8"), (5, "no 'text' key")]
    assert [row["id"] for row in shard_rows(tmp_path / "out")] == ["a", "b"]


def test_txt_spacy_and_parquet_inputs_and_a_folder_of_them_keep_input_order(trained_tiny_pipeline, tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")

    folder = tmp_path / "corpus"
    folder.mkdir()
    (folder / "a.txt").write_text("Apple in Berlin .\n\nObama in Paris !\n")
    nlp = spacy.blank("en")
    DocBin(docs=[nlp.make_doc("Microsoft and Google .")]).to_disk(folder / "b.spacy")
    pq.write_table(pa.table({"id": ["p1", "p2"], "text": ["I love New York .", ""]}), folder / "c.parquet")
    (folder / "notes.md").write_text("ignored: not an input kind")
    apply(trained_tiny_pipeline, folder, tmp_path / "out")
    rows = shard_rows(tmp_path / "out")
    assert [(r["id"], r["text"]) for r in rows] == [
        ("a.txt:1", "Apple in Berlin ."), ("a.txt:2", ""), ("a.txt:3", "Obama in Paris !"),
        ("b.spacy:1", "Microsoft and Google ."), ("p1", "I love New York ."), ("p2", "")]


def test_another_jobs_output_is_refused_unless_forced_and_a_bad_model_is_named(trained_tiny_pipeline, tmp_path):
    first = write_jsonl(tmp_path / "first.jsonl", TEXTS[:5])
    second = write_jsonl(tmp_path / "second.jsonl", TEXTS[5:9])
    apply(trained_tiny_pipeline, first, tmp_path / "out")
    with pytest.raises(OutputError, match="another job.*different input.*--force"):
        apply(trained_tiny_pipeline, second, tmp_path / "out")
    apply(trained_tiny_pipeline, second, tmp_path / "out", force=True)
    assert [row["text"] for row in shard_rows(tmp_path / "out")] == TEXTS[5:9]
    with pytest.raises(PipelineLoadError, match="'no_such_pipeline' is neither an installed pipeline"):
        apply("no_such_pipeline", first, tmp_path / "other")
    with pytest.raises(InputError, match="no such file"):
        list(read_blocks(tmp_path / "missing.jsonl", 4))
    with pytest.raises(UsageError, match="--workers 0"):
        apply(trained_tiny_pipeline, first, tmp_path / "zero", workers=0)
