"""Dense (MLP) on the flattened sequence; shorter inputs are zero-padded to seq_len."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .registry import register
from .spec import ModelSpec


def flatten_to(x: torch.Tensor, seq_len: int) -> torch.Tensor:
    """(B, T, F) -> (B, seq_len * F), padding with zeros (the padding symbol) or cutting at seq_len."""
    x = F.pad(x, (0, 0, 0, seq_len - x.shape[1])) if x.shape[1] < seq_len else x[:, :seq_len]
    return x.flatten(1)


@register("dense")
class DenseClassifier(nn.Module):
    def __init__(self, spec: ModelSpec, input_size: int, num_classes: int, seq_len: int):
        super().__init__()
        self.seq_len = seq_len
        sizes = [seq_len * input_size] + [spec.width] * spec.layers
        layers: list[nn.Module] = []
        for fan_in, fan_out in zip(sizes, sizes[1:]):
            layers += [nn.Linear(fan_in, fan_out), nn.ReLU(), nn.Dropout(spec.dropout)]
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(sizes[-1], num_classes)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(flatten_to(x, self.seq_len)))

    @staticmethod
    def param_count(spec: ModelSpec, input_size: int, num_classes: int, seq_len: int) -> int:
        sizes = [seq_len * input_size] + [spec.width] * spec.layers + [num_classes]
        return sum(a * b + b for a, b in zip(sizes, sizes[1:]))
