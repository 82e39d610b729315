"""The plain description of a model; create_model(spec, ...) builds it."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ModelSpec:
    family: str
    layers: int = 1  # recurrent/conv/dense layers before the classifier (ignored by `linear`)
    width: int = 64  # hidden units or channels per layer
    dropout: float = 0.0  # between layers and before the classifier
    bidirectional: bool = False  # recurrent families only
    kernel_size: int = 5  # conv1d, and the recurrent families' conv front-end
    pool: int = 1  # max-pool size after each conv layer (1 = none): shortens long sequences
    frontend: int = 0  # recurrent only: channels of a Conv1d front-end before the recurrent layers (0 = none)
    norm: bool = False  # batch norm after each convolution (conv1d, and the recurrent families' front-end)
    ngrams: int = 0  # one-hot characters only: add a linear model over hashed 1..ngrams-grams (0 = none)

    def __post_init__(self):
        check_int("layers", self.layers, 1)
        check_int("width", self.width, 1)
        check_int("kernel_size", self.kernel_size, 1)
        check_int("pool", self.pool, 1)
        check_int("frontend", self.frontend, 0)
        check_int("ngrams", self.ngrams, 0)
        if not isinstance(self.dropout, (int, float)) or not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be a float in [0, 1), got {self.dropout!r}")
        for name in ("bidirectional", "norm"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be a bool, got {getattr(self, name)!r}")


def check_int(name: str, value, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
