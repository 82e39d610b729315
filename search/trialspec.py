"""What one trial trains (TrainSpec with the model's ModelSpec: TrialSpec), and what one seed's training gives."""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from models import ModelSpec

from .augment import check_strength

IMBALANCE = ("none", "class_weights", "oversample", "logit_adjust")
DECISIONS = ("argmax", "logit_adjust")
SCHEDULES = ("constant", "cosine")


@dataclass(frozen=True)
class TrainSpec:
    lr: float = 1e-3
    batch_size: int = 64
    epochs: int = 10
    clipnorm: float = 0.0  # 0: no clipping; else the max global L2 norm of the gradient
    imbalance: str = "none"
    weight_decay: float = 0.0
    schedule: str = "constant"
    decision: str = "argmax"  # logit_adjust: argmax of logits - tau * log(prior), tau chosen on validation
    augment: float = 0.0  # training batches only: random shift, scaling and jitter of this strength (search/augment.py)

    def __post_init__(self):
        for name, minimum in (("batch_size", 1), ("epochs", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
        if not isinstance(self.lr, (int, float)) or not 0 < self.lr < math.inf:
            raise ValueError(f"lr must be a finite float > 0, got {self.lr!r}")
        for name in ("clipnorm", "weight_decay"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not 0 <= value < math.inf:
                raise ValueError(f"{name} must be a finite float >= 0, got {value!r}")
        for name, choices in (("imbalance", IMBALANCE), ("schedule", SCHEDULES), ("decision", DECISIONS)):
            if getattr(self, name) not in choices:
                raise ValueError(f"{name} must be one of {list(choices)}, got {getattr(self, name)!r}")
        check_strength(self.augment)


@dataclass(frozen=True)
class TrialSpec(TrainSpec, ModelSpec):
    """Everything one trial needs; the search spaces' parameter names are these fields."""

    def __post_init__(self):
        ModelSpec.__post_init__(self)
        TrainSpec.__post_init__(self)


@dataclass
class SeedResult:
    seed: int
    history: dict[str, list[float]] = field(default_factory=dict)
    confusion: list[list[int]] = field(default_factory=list)  # validation, after the last epoch trained
    status: str = "running"  # finished | stopped at epoch N | diverged at epoch N
    seconds: float = 0.0
    test: dict | None = None  # metrics and confusion on the test split, only when asked for
    # Validation logits after the last epoch (and test logits with test=True): decisions and ensembles.
    logits: dict[str, torch.Tensor] = field(default_factory=dict, repr=False, compare=False)
    # With keep_models=True: the trained model (in eval mode); from a search.pool worker, its CPU state dict.
    model: torch.nn.Module | dict | None = field(default=None, repr=False, compare=False)

    @property
    def diverged(self) -> bool:
        return self.status.startswith("diverged")

    @property
    def final(self) -> dict[str, float]:
        return {key[4:]: values[-1] for key, values in self.history.items() if key.startswith("val_") and values}
