"""Words/s of `nlp.pipe` against the bare Hugging Face forward pass on the same texts.

    python scripts/benchmark_inference.py PIPELINE_OR_MODEL [--texts N] [--batch-size B]
        [--n-layers N] [--unmask SPEC] [--repeat K] [--output reports/benchmark_inference.json]

PIPELINE_OR_MODEL is a saved spaCy pipeline (a folder with config.cfg, or an
installed package name) or a model folder; for a model folder a `transformer` +
`ner` pipeline is built around it (untrained heads cost what trained ones do).
Texts are WNUT-16 tweets from the asset cache, in their file order, cut into the
same batches for both measurements. The bare forward tokenizes with the same
tokenizer and runs the same decoder module under `torch.no_grad`; the ratio of
the two shows what tokenizing, aligning and the heads cost on top.
"""
import argparse
import json
import platform
import sys
import time
from pathlib import Path

import spacy
import torch
from thinc.api import Config

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fetch_assets import DATA_FILE, default_cache  # noqa: E402

PIPELINE_CONFIG = """
[nlp]
lang = "en"
pipeline = ["transformer", "ner"]
[components]
[components.transformer]
factory = "transformer"
[components.transformer.model]
@architectures = "spacy-unmask.DecoderTransformer.v1"
name = "{name}"
unmask = "{unmask}"
n_layers = {n_layers}
repeat = {repeat}
[components.ner]
factory = "ner"
[components.ner.model]
@architectures = "spacy.TransitionBasedParser.v2"
state_type = "ner"
extra_state_tokens = false
hidden_width = 64
maxout_pieces = 2
use_upper = false
[components.ner.model.tok2vec]
@architectures = "spacy-transformers.TransformerListener.v1"
grad_factor = 1.0
[components.ner.model.tok2vec.pooling]
@layers = "reduce_mean.v1"
"""


def read_tweets(limit: int):
    path = default_cache() / DATA_FILE
    if not path.is_file():
        raise SystemExit(f"{path} is missing: run `python scripts/fetch_assets.py` first")
    tweets, words = [], []
    for line in path.read_text(encoding="utf8").splitlines():
        if line.strip():
            words.append(line.split("\t")[0])
        elif words:
            tweets.append(" ".join(words))
            words = []
    if words:
        tweets.append(" ".join(words))
    return tweets[:limit]


def load_pipeline(target: str, unmask: str, n_layers, repeat: int):
    path = Path(target)
    if path.is_dir() and (path / "config.json").is_file() and not (path / "config.cfg").is_file():
        config = Config().from_str(
            PIPELINE_CONFIG.format(
                name=path, unmask=unmask, n_layers="null" if n_layers is None else n_layers, repeat=repeat
            )
        )
        nlp = spacy.util.load_model_from_config(config, auto_fill=True)
        nlp.initialize(lambda: [spacy.training.Example.from_dict(nlp.make_doc("Hi Paris"), {})])
        return nlp
    return spacy.load(target)


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("target")
    parser.add_argument("--texts", type=int, default=400)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--n-layers", type=int, default=None)
    parser.add_argument("--unmask", default="second_half")
    parser.add_argument("--repeat", type=int, default=1, help="sequence repetition (model folders only)")
    parser.add_argument("--repeats", type=int, default=2, help="timed passes; the best is kept")
    parser.add_argument("--output", type=Path, default=Path("reports/benchmark_inference.json"))
    args = parser.parse_args()

    torch.manual_seed(0)
    nlp = load_pipeline(args.target, args.unmask, args.n_layers, args.repeat)
    trf = nlp.get_pipe("transformer")
    model = trf.model
    texts = read_tweets(args.texts)
    n_words = sum(1 for doc in nlp.tokenizer.pipe(texts) for t in doc if not t.is_space)
    batches = [texts[i : i + args.batch_size] for i in range(0, len(texts), args.batch_size)]

    tokenizer, module = model.tokenizer, model.transformer
    module.eval()

    def bare():
        with torch.no_grad():
            for batch in batches:
                enc = tokenizer(batch, padding="longest", return_tensors="pt")
                module(input_ids=enc["input_ids"].to(module.device), attention_mask=enc["attention_mask"].to(module.device))

    list(nlp.pipe(texts[: args.batch_size], batch_size=args.batch_size))  # warm-up
    # Alternate the two so that drift in machine load hits both alike; keep the best.
    pipe_times, bare_times = [], []
    for _ in range(args.repeats):
        pipe_times.append(timed(lambda: list(nlp.pipe(texts, batch_size=args.batch_size)))[1])
        bare_times.append(timed(bare)[1])
    pipe_s, bare_s = min(pipe_times), min(bare_times)
    result = {
        "target": args.target,
        "unmask": str(model.attrs["settings"].unmask),
        "repeat": model.attrs["settings"].repeat,
        "layers": module.config.num_hidden_layers,
        "texts": len(texts),
        "words": n_words,
        "batch_size": args.batch_size,
        "nlp_pipe_words_per_s": round(n_words / pipe_s, 1),
        "bare_forward_words_per_s": round(n_words / bare_s, 1),
        "ratio": round(bare_s / pipe_s, 3),
        "device": str(module.device),
        "torch_threads": torch.get_num_threads(),
        "machine": platform.processor() or platform.machine(),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
