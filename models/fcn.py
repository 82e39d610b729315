"""Fully convolutional network (Wang et al. 2017): conv-BN-ReLU blocks, then global average pooling.

`layers` blocks with kernels 8, 5, 3 (3 for any further block) and channels width, 2*width, ..., width
(the paper: 3 blocks, width 128). Batch norm is part of the architecture (`norm` is not read); `dropout`
applies before the classifier. Padded steps are zeroed after every block and the pooling averages each
sequence's real steps only, so a batch gives each sequence the logits it gets alone (in eval mode).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .conv1d import step_mask
from .registry import register
from .spec import ModelSpec

KERNELS = (8, 5, 3)


class SameConv1d(nn.Conv1d):
    """A bias-free 'same' convolution (batch norm follows) that pads even kernels explicitly, one more step on
    the right as padding='same' does, without its warning and its copy of the input."""

    def __init__(self, c_in: int, c_out: int, kernel_size: int):
        super().__init__(c_in, c_out, kernel_size, bias=False)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        k = self.kernel_size[0]
        return super().forward(F.pad(h, ((k - 1) // 2, k // 2)))


def conv_norm(conv: nn.Module, norm: nn.Module, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """norm(conv(h)) with padded steps zeroed before the norm (its training statistics count them as zeros,
    as conv1d's do) and after it (its shift would reach the next convolution's real steps)."""
    return norm(conv(h) * mask) * mask


def global_average(h: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """(B, C, T) zero past each length -> (B, C): the mean over each sequence's real steps."""
    return h.sum(2) / lengths[:, None].clamp(min=1)


def fcn_channels(spec: ModelSpec) -> list[int]:
    """width for the first and last block, 2 * width between them."""
    return [spec.width if i in (0, spec.layers - 1) else 2 * spec.width for i in range(spec.layers)]


@register("fcn")
class FCNClassifier(nn.Module):
    def __init__(self, spec: ModelSpec, input_size: int, num_classes: int, seq_len: int):
        super().__init__()
        channels = [input_size] + fcn_channels(spec)
        self.convs = nn.ModuleList(SameConv1d(c_in, c_out, KERNELS[min(i, 2)])
                                   for i, (c_in, c_out) in enumerate(zip(channels, channels[1:])))
        self.norms = nn.ModuleList(nn.BatchNorm1d(c) for c in channels[1:])
        self.dropout = nn.Dropout(spec.dropout)
        self.head = nn.Linear(channels[-1], num_classes)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        mask = step_mask(lengths, x.shape[1])
        h = x.transpose(1, 2) * mask
        for conv, norm in zip(self.convs, self.norms):
            h = torch.relu(conv_norm(conv, norm, h, mask))
        return self.head(self.dropout(global_average(h, lengths)))

    @staticmethod
    def param_count(spec: ModelSpec, input_size: int, num_classes: int, seq_len: int) -> int:
        channels = [input_size] + fcn_channels(spec)
        convs = sum(KERNELS[min(i, 2)] * c_in * c_out + 2 * c_out  # weights, then batch norm's scale and shift
                    for i, (c_in, c_out) in enumerate(zip(channels, channels[1:])))
        return convs + channels[-1] * num_classes + num_classes
