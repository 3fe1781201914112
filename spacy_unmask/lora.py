"""LoRA adapters through peft: a validated settings value and the one call that applies it."""
from dataclasses import asdict, dataclass, field
from typing import List

from peft import LoraConfig, get_peft_model
from torch import nn

from .errors import ConfigError


@dataclass(frozen=True)
class LoraSettings:
    """What `spacy-unmask.LoRA.v1` sets; checked when the config is loaded."""

    r: int = 8
    alpha: int = 16
    dropout: float = 0.1
    target_modules: List[str] = field(default_factory=lambda: ["q_proj", "v_proj"])

    def __post_init__(self):
        if not isinstance(self.r, int) or self.r < 1:
            raise ConfigError("lora.r", self.r, "a positive integer rank such as 8 or 64")
        if not isinstance(self.alpha, (int, float)) or self.alpha <= 0:
            raise ConfigError("lora.alpha", self.alpha, "a positive scaling such as 16")
        if not 0.0 <= float(self.dropout) < 1.0:
            raise ConfigError("lora.dropout", self.dropout, "a probability in [0, 1)")
        if not self.target_modules or not all(isinstance(m, str) and m for m in self.target_modules):
            raise ConfigError(
                "lora.target_modules",
                self.target_modules,
                "a non-empty list of module names such as ['q_proj', 'v_proj']",
            )
        object.__setattr__(self, "target_modules", list(self.target_modules))

    def to_dict(self) -> dict:
        return asdict(self)


def apply_lora(model: nn.Module, settings: LoraSettings) -> nn.Module:
    """Wrap `model` with peft LoRA adapters; only the adapters stay trainable."""
    linear = sorted({n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, nn.Linear)})
    missing = [m for m in settings.target_modules if m not in linear]
    if missing:
        raise ConfigError(
            "lora.target_modules",
            settings.target_modules,
            f"{missing} are not linear layers of this model; its linear layers are named {linear}",
        )
    config = LoraConfig(
        r=settings.r,
        lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        target_modules=list(settings.target_modules),
        bias="none",
    )
    return get_peft_model(model, config)
