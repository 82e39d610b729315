"""Conv1d over time: same-padded convolutions, then mean and max pooling over the real steps."""
from __future__ import annotations

import torch
from torch import nn

from .registry import register
from .spec import ModelSpec


@register("conv1d")
class Conv1dClassifier(nn.Module):
    def __init__(self, spec: ModelSpec, input_size: int, num_classes: int, seq_len: int):
        super().__init__()
        channels = [input_size] + [spec.width] * spec.layers
        self.convs = nn.ModuleList(
            nn.Conv1d(c_in, c_out, spec.kernel_size, padding="same") for c_in, c_out in zip(channels, channels[1:]))
        self.dropout = nn.Dropout(spec.dropout)
        self.head = nn.Linear(2 * spec.width, num_classes)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        # Zero every step past a sequence's length after each layer, so padding never leaks into real steps.
        mask = (torch.arange(x.shape[1], device=x.device)[None, :] < lengths[:, None]).unsqueeze(1)
        h = x.transpose(1, 2)
        for conv in self.convs:
            h = self.dropout(torch.relu(conv(h))) * mask
        mean = h.sum(2) / lengths[:, None].clamp(min=1)
        peak = h.masked_fill(~mask, float("-inf")).amax(2)
        return self.head(torch.cat([mean, peak], 1))

    @staticmethod
    def param_count(spec: ModelSpec, input_size: int, num_classes: int, seq_len: int) -> int:
        channels = [input_size] + [spec.width] * spec.layers
        convs = sum(spec.kernel_size * c_in * c_out + c_out for c_in, c_out in zip(channels, channels[1:]))
        return convs + 2 * spec.width * num_classes + num_classes
