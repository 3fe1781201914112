"""The checks of the settings against a model: one function, called once on each path.

`settings` checks each config value on its own; what only a model's config can answer is
here, as in peft's `_check_new_adapter_config`: whether the model type is a supported
family, whether its attention can run as configured, whether the `unmask` layers exist
among the kept ones, and whether `repeat` copies of a window fit its positions. The paths
that call it: a config that names a local model (`architectures`, when the config is
resolved), `initialize` (`transformer_model.load_decoder`, after the layers are cut), and a
pipeline loaded from disk (`decoder.DecoderFactory.from_config`, on the saved config).
"""
from transformers import PretrainedConfig

from .errors import ConfigError
from .families import check_attention, family_of
from .settings import DecoderSettings


def check_model(settings: DecoderSettings, config: PretrainedConfig) -> None:
    """Refuse settings this model (its config, cut to the kept layers) cannot run."""
    family_of(config)
    check_attention(config, settings.attn_implementation)
    settings.unmask.layers(config.num_hidden_layers)
    check_positions(settings.repeat, getattr(config, "max_position_embeddings", None), settings.window)


def check_positions(repeat: int, max_positions, window=None) -> None:
    """A window of pieces (at least one piece; a token is at least one piece) must fit
    `repeat` times in the model's positions."""
    if max_positions is None:
        return
    needed = window or 1
    if max_positions // repeat < needed:
        what = f"windows of {window} tokens" if window else "one piece"
        raise ConfigError(
            "repeat",
            repeat,
            f"the model has {max_positions} positions, so {what} fit at most "
            f"{max_positions // needed} times; lower `repeat` or the `get_spans` window",
        )
