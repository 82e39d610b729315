"""Linear (multinomial logistic regression) on the flattened sequence: the baseline."""
from __future__ import annotations

import torch
from torch import nn

from .dense import flatten_to
from .registry import register
from .spec import ModelSpec


@register("linear")
class LinearClassifier(nn.Module):
    def __init__(self, spec: ModelSpec, input_size: int, num_classes: int, seq_len: int):
        super().__init__()
        self.seq_len = seq_len
        self.head = nn.Linear(seq_len * input_size, num_classes)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self.head(flatten_to(x, self.seq_len))

    @staticmethod
    def param_count(spec: ModelSpec, input_size: int, num_classes: int, seq_len: int) -> int:
        return seq_len * input_size * num_classes + num_classes
