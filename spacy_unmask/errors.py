"""One shape for configuration errors: the key, the value given, what is accepted."""
from typing import Any


class ConfigError(ValueError):
    """A config value spacy-unmask cannot use. Names the key, the value and the remedy."""

    def __init__(self, key: str, value: Any, accepted: str):
        self.key = key
        self.value = value
        super().__init__(f"{key}={value!r} is not accepted: {accepted}")
