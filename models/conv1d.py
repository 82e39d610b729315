"""Conv1d over time: same-padded convolutions (optionally batch-normed and max-pooled), then mean and
max pooling over the real steps."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .registry import register
from .spec import ModelSpec


def step_mask(lengths: torch.Tensor, steps: int) -> torch.Tensor:
    """(B, 1, steps) True on each sequence's real steps."""
    return (torch.arange(steps, device=lengths.device)[None, :] < lengths[:, None]).unsqueeze(1)


def conv_block(conv: nn.Conv1d, h: torch.Tensor, lengths: torch.Tensor, pool: int, dropout: nn.Module,
               norm: nn.Module | None = None):
    """relu(norm(conv(h))) then an optional max-pool, on (B, C, T) with lengths; returns (h, lengths, mask).

    Steps past a sequence's length are zeroed after the layer (and -inf inside the max-pool), so
    padding never reaches a real step: a batch gives each sequence the values it gets alone (in
    training, batch norm's statistics also count the zeroed padding steps; evaluation uses its
    running statistics, the same for every batch).
    """
    mask = step_mask(lengths, h.shape[2])
    h = conv(h)
    if norm is not None:
        h = norm(h * mask)
    h = dropout(torch.relu(h)) * mask
    if pool > 1 and h.shape[2] > 1:
        h = F.max_pool1d(h.masked_fill(~mask, float("-inf")), pool, ceil_mode=True)
        lengths = (lengths + pool - 1) // pool
        mask = step_mask(lengths, h.shape[2])
        h = h.masked_fill(~mask, 0.0)
    return h, lengths, mask


@register("conv1d")
class Conv1dClassifier(nn.Module):
    searches_kernel = True  # the space samples kernel_size, pool and norm for it

    def __init__(self, spec: ModelSpec, input_size: int, num_classes: int, seq_len: int):
        super().__init__()
        channels = [input_size] + [spec.width] * spec.layers
        self.convs = nn.ModuleList(
            nn.Conv1d(c_in, c_out, spec.kernel_size, padding="same") for c_in, c_out in zip(channels, channels[1:]))
        # Batch norm is searched (spec.norm): it helped the deeper HAR conv1ds (bench/README.md, "Search space").
        self.norms = nn.ModuleList(nn.BatchNorm1d(c) for c in channels[1:]) if spec.norm else [None] * spec.layers
        self.pool = spec.pool
        self.dropout = nn.Dropout(spec.dropout)
        self.head = nn.Linear(2 * spec.width, num_classes)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        h = x.transpose(1, 2)
        for conv, norm in zip(self.convs, self.norms):
            h, lengths, mask = conv_block(conv, h, lengths, self.pool, self.dropout, norm)
        mean = h.sum(2) / lengths[:, None].clamp(min=1)
        peak = h.masked_fill(~mask, float("-inf")).amax(2)
        return self.head(torch.cat([mean, peak], 1))

    @staticmethod
    def param_count(spec: ModelSpec, input_size: int, num_classes: int, seq_len: int) -> int:
        channels = [input_size] + [spec.width] * spec.layers
        convs = sum(spec.kernel_size * c_in * c_out + c_out for c_in, c_out in zip(channels, channels[1:]))
        norms = 2 * spec.width * spec.layers if spec.norm else 0  # a scale and a shift per channel
        return convs + norms + 2 * spec.width * num_classes + num_classes
