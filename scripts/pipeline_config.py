"""The config of a `transformer` + `ner` pipeline around a decoder folder, as text.

`scripts/benchmark_inference.py` builds one around a bare model folder (untrained heads cost
what trained ones do); the tests build theirs on the tiny decoders (`tests/pipelines.py`).
"""


def decoder_ner_config(name, unmask: str, hidden_width: int = 64, decoder_lines: str = "", top: str = "") -> str:
    """The config text: `ner` listening to a `spacy-unmask.DecoderTransformer.v1` on the folder `name`
    with `unmask` as its spec; `hidden_width` is the ner model's; `decoder_lines` go into the
    decoder's block (e.g. `n_layers = 2`, or sub-blocks such as its `lora`), `top` after `[nlp]`."""
    return f"""
[nlp]
lang = "en"
pipeline = ["transformer", "ner"]

{top}
[components]

[components.transformer]
factory = "transformer"

[components.transformer.model]
@architectures = "spacy-unmask.DecoderTransformer.v1"
name = "{name}"
unmask = "{unmask}"
{decoder_lines}
[components.ner]
factory = "ner"

[components.ner.model]
@architectures = "spacy.TransitionBasedParser.v2"
state_type = "ner"
extra_state_tokens = false
hidden_width = {hidden_width}
maxout_pieces = 2
use_upper = false

[components.ner.model.tok2vec]
@architectures = "spacy-transformers.TransformerListener.v1"
grad_factor = 1.0

[components.ner.model.tok2vec.pooling]
@layers = "reduce_mean.v1"
"""
