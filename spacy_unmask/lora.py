"""LoRA adapters through peft: the one call that applies `settings.LoraSettings`."""
from peft import LoraConfig, get_peft_model
from torch import nn

from .errors import ConfigError
from .families import family_of
from .settings import LoraSettings


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
