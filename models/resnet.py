"""The residual 1-D ResNet of time-series classification (Wang et al. 2017; Fawaz et al. 2019).

`layers` residual blocks (the paper: 3) of width, 2*width, 2*width, ... channels (the paper: width 64).
A block is three bias-free convolutions of kernels 8, 5, 3, each batch-normed, ReLU after the first two;
its shortcut, a 1x1 convolution and batch norm (batch norm alone where the channel count stays), is added
before the block's last ReLU. Global average pooling over the real steps, `dropout`, then the classifier.
Padded steps are zeroed after every layer (see models/fcn.py); `norm` and `kernel_size` are not read.
"""
from __future__ import annotations

import torch
from torch import nn

from .conv1d import step_mask
from .fcn import KERNELS, SameConv1d, conv_norm, global_average
from .registry import register
from .spec import ModelSpec


def block_channels(spec: ModelSpec) -> list[int]:
    return [spec.width if i == 0 else 2 * spec.width for i in range(spec.layers)]


class ResidualBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.convs = nn.ModuleList(SameConv1d(a, c_out, k) for a, k in zip((c_in, c_out, c_out), KERNELS))
        self.norms = nn.ModuleList(nn.BatchNorm1d(c_out) for _ in KERNELS)
        self.expand = SameConv1d(c_in, c_out, 1) if c_in != c_out else nn.Identity()
        self.shortcut_norm = nn.BatchNorm1d(c_out)

    def forward(self, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        out = h
        for i, (conv, norm) in enumerate(zip(self.convs, self.norms)):
            out = conv_norm(conv, norm, out, mask)
            out = torch.relu(out) if i < len(self.convs) - 1 else out
        return torch.relu(out + conv_norm(self.expand, self.shortcut_norm, h, mask))

    @staticmethod
    def param_count(c_in: int, c_out: int) -> int:
        convs = sum(k * a * c_out for a, k in zip((c_in, c_out, c_out), KERNELS))
        expand = c_in * c_out if c_in != c_out else 0
        return convs + expand + 2 * c_out * (len(KERNELS) + 1)  # four batch norms: a scale and a shift each


@register("resnet")
class ResNetClassifier(nn.Module):
    def __init__(self, spec: ModelSpec, input_size: int, num_classes: int, seq_len: int):
        super().__init__()
        channels = [input_size] + block_channels(spec)
        self.blocks = nn.ModuleList(ResidualBlock(a, b) for a, b in zip(channels, channels[1:]))
        self.dropout = nn.Dropout(spec.dropout)
        self.head = nn.Linear(channels[-1], num_classes)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        mask = step_mask(lengths, x.shape[1])
        h = x.transpose(1, 2) * mask
        for block in self.blocks:
            h = block(h, mask)
        return self.head(self.dropout(global_average(h, lengths)))

    @staticmethod
    def param_count(spec: ModelSpec, input_size: int, num_classes: int, seq_len: int) -> int:
        channels = [input_size] + block_channels(spec)
        blocks = sum(ResidualBlock.param_count(a, b) for a, b in zip(channels, channels[1:]))
        return blocks + channels[-1] * num_classes + num_classes
