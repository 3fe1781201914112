"""LoRA adapters through peft: a validated settings value and the one call that applies it."""
from dataclasses import asdict, dataclass
from typing import List, Optional

from peft import LoraConfig, get_peft_model
from torch import nn

from .errors import ConfigError
from .families import family_of


@dataclass(frozen=True)
class LoraSettings:
    """What `spacy-unmask.LoRA.v1` sets; checked when the config is loaded."""

    r: int = 8
    alpha: int = 16
    dropout: float = 0.1
    # None: the family's own (`families.Family.lora_targets`), decided when applied
    target_modules: Optional[List[str]] = None

    def __post_init__(self):
        if not isinstance(self.r, int) or self.r < 1:
            raise ConfigError("lora.r", self.r, "a positive integer rank such as 8 or 64")
        if not isinstance(self.alpha, (int, float)) or self.alpha <= 0:
            raise ConfigError("lora.alpha", self.alpha, "a positive scaling such as 16")
        if not 0.0 <= float(self.dropout) < 1.0:
            raise ConfigError("lora.dropout", self.dropout, "a probability in [0, 1)")
        if self.target_modules is None:
            return
        if (isinstance(self.target_modules, str) or not self.target_modules
                or not all(isinstance(m, str) and m for m in self.target_modules)):
            raise ConfigError(
                "lora.target_modules",
                self.target_modules,
                "null (the model family's default) or a non-empty list of module names such as ['q_proj', 'v_proj']",
            )
        object.__setattr__(self, "target_modules", list(self.target_modules))

    def to_dict(self) -> dict:
        return asdict(self)


def apply_lora(model: nn.Module, settings: LoraSettings) -> nn.Module:
    """Wrap `model` with peft LoRA adapters; only the adapters stay trainable."""
    family = family_of(model.config)
    targets = list(settings.target_modules or family.lora_targets)
    linear = sorted({n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, nn.Linear)})
    missing = [m for m in targets if m not in linear]
    if missing:
        raise ConfigError(
            "lora.target_modules",
            settings.target_modules,
            f"{missing} are not linear layers of this {model.config.model_type} model; its linear layers are named "
            f"{linear} (null takes the family's default, {list(family.lora_targets)})",
        )
    config = LoraConfig(
        r=settings.r,
        lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        target_modules=targets,
        bias="none",
    )
    return get_peft_model(model, config)
