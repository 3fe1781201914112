"""The layer-group specification: which decoder layers see both sides.

Parsed once from the `unmask` config value into a small immutable value; every
other module asks it for layer indices instead of re-reading the string.
"""
import re
from dataclasses import dataclass
from typing import FrozenSet, Tuple, Union

from .errors import ConfigError

NAMED = ("none", "all", "first_half", "second_half")
ACCEPTED = (
    "'none' (plain causal decoder), 'all', 'first_half', 'second_half'; "
    "a group pattern of 0s and 1s such as '1100' (the layers are split into as many "
    "contiguous, equal-as-possible groups as the pattern has characters, the first "
    "character being the group nearest the embeddings); or 0-based layer indices and "
    "inclusive ranges such as '0-7,12' (a lone index made only of 0s and 1s, like '10', "
    "reads as a pattern: write it as the range '10-10')"
)
_PATTERN = re.compile(r"[01]{2,}")
_ITEM = re.compile(r"(\d+)(?:-(\d+))?")


@dataclass(frozen=True)
class LayerGroups:
    """A parsed `unmask` value. `kind` is one of NAMED, 'pattern' or 'indices'."""

    text: str
    kind: str
    pattern: str = ""
    ranges: Tuple[Tuple[int, int], ...] = ()

    @classmethod
    def parse(cls, value: Union[str, int, "LayerGroups"]) -> "LayerGroups":
        """Check the syntax of a specification (the layer count is checked later)."""
        if isinstance(value, LayerGroups):
            return value
        if isinstance(value, int) and not isinstance(value, bool):
            # A number has already lost any leading zeros ("0010" on spaCy's command
            # line arrives as 10), so reading it as a pattern could pick wrong layers.
            raise ConfigError(
                "unmask",
                value,
                "a string, not a number: numbers lose leading zeros (0010 becomes 10). "
                "Quote it: unmask = \"0010\" in a config, or "
                "--components.transformer.model.unmask '\"0010\"' on the command line",
            )
        if not isinstance(value, str):
            raise ConfigError("unmask", value, ACCEPTED)
        text = value.strip().lower().replace(" ", "")
        if text in NAMED:
            return cls(text, text)
        if _PATTERN.fullmatch(text):
            return cls(text, "pattern", pattern=text)
        ranges = []
        for item in text.split(",") if text else [""]:
            match = _ITEM.fullmatch(item)
            if match is None:
                raise ConfigError("unmask", value, ACCEPTED)
            start = int(match.group(1))
            end = int(match.group(2)) if match.group(2) is not None else start
            if end < start:
                raise ConfigError("unmask", value, f"the range {item!r} runs backwards. " + ACCEPTED)
            ranges.append((start, end))
        return cls(text, "indices", ranges=tuple(ranges))

    def layers(self, n_layers: int) -> FrozenSet[int]:
        """The 0-based indices of the unmasked layers in a decoder of `n_layers` layers."""
        if self.kind == "none":
            return frozenset()
        if self.kind == "all":
            return frozenset(range(n_layers))
        if self.kind in ("first_half", "second_half") and n_layers < 2:
            raise ConfigError("unmask", self.text, f"halves need at least 2 layers; the decoder keeps {n_layers}")
        if self.kind == "first_half":
            return frozenset(range(n_layers // 2))
        if self.kind == "second_half":
            return frozenset(range(n_layers // 2, n_layers))
        if self.kind == "pattern":
            if len(self.pattern) > n_layers:
                raise ConfigError(
                    "unmask",
                    self.text,
                    f"the pattern has {len(self.pattern)} groups but the decoder keeps only "
                    f"{n_layers} layers; use at most {n_layers} characters",
                )
            chosen = set()
            for group, (start, end) in enumerate(group_bounds(n_layers, len(self.pattern))):
                if self.pattern[group] == "1":
                    chosen.update(range(start, end))
            return frozenset(chosen)
        chosen = set()
        for start, end in self.ranges:
            if end >= n_layers:
                raise ConfigError(
                    "unmask",
                    self.text,
                    f"the decoder keeps {n_layers} layers, so indices run from 0 to {n_layers - 1}",
                )
            chosen.update(range(start, end + 1))
        return frozenset(chosen)

    def __str__(self) -> str:
        return self.text


def group_bounds(n_layers: int, n_groups: int) -> Tuple[Tuple[int, int], ...]:
    """Split `n_layers` into `n_groups` contiguous groups, sizes differing by at most one.

    The first `n_layers % n_groups` groups get the extra layer (numpy.array_split's rule).
    """
    size, extra = divmod(n_layers, n_groups)
    bounds = []
    start = 0
    for group in range(n_groups):
        end = start + size + (1 if group < extra else 0)
        bounds.append((start, end))
        start = end
    return tuple(bounds)
