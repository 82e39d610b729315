"""One registry: a family name -> a module class with a closed-form parameter count."""
from __future__ import annotations

from torch import nn

from .ngrams import WithNgrams
from .spec import ModelSpec

FAMILIES: dict[str, type] = {}


def register(name: str):
    def add(cls):
        FAMILIES[name] = cls
        return cls
    return add


def is_recurrent(family: str) -> bool:
    """Whether a family is a recurrence over time (its modules say so with a `gates` count)."""
    return hasattr(FAMILIES.get(family), "gates")


def _family(spec: ModelSpec) -> type:
    if spec.family not in FAMILIES:
        raise ValueError(f"family must be one of {sorted(FAMILIES)}, got {spec.family!r}")
    return FAMILIES[spec.family]


def create_model(spec: ModelSpec, input_size: int, num_classes: int, seq_len: int) -> nn.Module:
    """A many-to-one classifier: forward(x (B, T, input_size), lengths (B,)) -> logits (B, num_classes)."""
    model = _family(spec)(spec, input_size, num_classes, seq_len)
    return WithNgrams(model, spec.ngrams, num_classes) if spec.ngrams else model


def param_count(spec: ModelSpec, input_size: int, num_classes: int, seq_len: int) -> int:
    """Trainable parameters from the family's closed-form formula (tests compare it with the module)."""
    ngrams = WithNgrams.param_count(num_classes) if spec.ngrams else 0
    return _family(spec).param_count(spec, input_size, num_classes, seq_len) + ngrams


def module_param_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
