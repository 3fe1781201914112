"""`python -m spacy unmask ...`: spacy-unmask's commands in spaCy's CLI (the `spacy_cli` entry point)."""
from pathlib import Path
from typing import Optional

import typer
from spacy.cli._util import Arg, Opt, app
from wasabi import msg

unmask_cli = typer.Typer(name="unmask", help="spacy-unmask's commands", no_args_is_help=True)
app.add_typer(unmask_cli)


@unmask_cli.command("apply")
def apply_cli(
    model: str = Arg(..., help="Installed pipeline package (e.g. en_unmask_llama) or pipeline folder"),
    input_path: Path = Arg(..., help="A .jsonl, .txt (a document a line), .spacy or .parquet file, or a folder of them", exists=True),
    output: Path = Arg(..., help="Folder for the shards (a .spacy DocBin and a .jsonl each) and manifest.json"),
    backend: str = Opt("local", "--backend", "-b", help="local (this machine) or ray (Ray Data: a local Ray, or the cluster at --address)"),
    workers: int = Opt(1, "--workers", "-w", help="Processes (local) or actors (ray), each with its own copy of the pipeline"),
    batch_size: int = Opt(64, "--batch-size", "-B", help="Documents a batch in nlp.pipe (sorted by length within a block)"),
    block_size: int = Opt(1000, "--block-size", help="Documents a shard: the unit of work, output and resuming"),
    text_key: str = Opt("text", "--text-key", help="Key of the text in .jsonl objects and .parquet columns"),
    id_key: str = Opt("id", "--id-key", help="Key of the document id (kept in the output; default file:line)"),
    gpu_id: int = Opt(-1, "--gpu-id", "-g", help="GPU to use (-1: CPU); with ray, each actor takes one GPU"),
    address: Optional[str] = Opt(None, "--address", help="Ray cluster to join (default: start a local Ray for the job)"),
    force: bool = Opt(False, "--force", "-F", help="Delete the shards of another job in OUTPUT and start over"),
    skip_bad: bool = Opt(False, "--skip-bad", help="Skip unreadable lines (listed in OUTPUT/rejects.jsonl) instead of stopping"),
    progress: bool = Opt(True, "--progress/--no-progress", help="Show a progress bar"),
):
    """Annotate a corpus with a spaCy pipeline into resumable shards: a rerun with the same
    arguments skips the shards already written, so a killed job continues where it stopped."""
    from .annotate import InputError, JobInterrupted, OutputError, PipelineLoadError, UsageError, WorkerError, apply_pipeline

    try:
        totals = apply_pipeline(model, input_path, output, backend=backend, workers=workers, batch_size=batch_size,
                                block_size=block_size, text_key=text_key, id_key=id_key, gpu_id=gpu_id,
                                address=address, force=force, skip_bad=skip_bad, progress=progress)
    except JobInterrupted as err:
        msg.warn(str(err))
        raise SystemExit(err.exit_code)
    except (InputError, OutputError, PipelineLoadError, UsageError, WorkerError) as err:
        msg.fail(str(err), exits=1)
    msg.good(f"{totals['docs']} documents ({totals['words']} words) in {totals['shards']} shards in {output}; "
             f"this run: {totals['words_this_run']} words at {totals['words_per_s']:.0f} words/s")
    if totals["rejects"]:
        msg.warn(f"{totals['rejects']} lines skipped: see {output / 'rejects.jsonl'}")
