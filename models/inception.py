"""InceptionTime's network (Fawaz et al. 2020): multi-scale convolutions behind a bottleneck, a residual
connection every three modules, global average pooling.

`layers` modules (the paper's depth: 6). A module: a 1x1 bottleneck to `width` channels (the paper: 32;
skipped for one input channel), three convolutions of `width` filters with odd kernels of about
kernel_size, kernel_size/2, kernel_size/4 ('same' padding; kernel_size 40 gives the paper's 39, 19, 9),
and a 3-step max-pool followed by a 1x1 convolution, concatenated (4 * width channels), batch-normed,
ReLU. After every third module, a shortcut from the last residual point (1x1 convolution and batch norm)
is added before the ReLU. `dropout` applies before the classifier; `norm` and `pool` are not read.
Padded steps are zeroed after every layer and are -inf inside the max-pool (see models/fcn.py).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .conv1d import step_mask
from .fcn import SameConv1d, conv_norm, global_average
from .registry import register
from .spec import ModelSpec


def odd_kernels(kernel_size: int) -> list[int]:
    """kernel_size, kernel_size // 2, kernel_size // 4, each made odd (one less when even) and at least 1."""
    return [max(1, k - 1 + k % 2) for k in (kernel_size, kernel_size // 2, kernel_size // 4)]


class InceptionModule(nn.Module):
    def __init__(self, c_in: int, width: int, kernel_size: int):
        super().__init__()
        self.bottleneck = SameConv1d(c_in, width, 1) if c_in > 1 else nn.Identity()
        inner = width if c_in > 1 else c_in
        self.convs = nn.ModuleList(SameConv1d(inner, width, k) for k in odd_kernels(kernel_size))
        self.pooled = SameConv1d(c_in, width, 1)
        self.norm = nn.BatchNorm1d(4 * width)

    def forward(self, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        inner = self.bottleneck(h)
        pooled = F.max_pool1d(h.masked_fill(~mask, float("-inf")), 3, stride=1, padding=1)
        branches = [conv(inner) for conv in self.convs] + [self.pooled(pooled.masked_fill(~mask, 0.0))]
        return torch.relu(self.norm(torch.cat(branches, 1) * mask)) * mask

    @staticmethod
    def param_count(c_in: int, width: int, kernel_size: int) -> int:
        bottleneck = c_in * width if c_in > 1 else 0
        inner = width if c_in > 1 else c_in
        convs = sum(k * inner * width for k in odd_kernels(kernel_size))
        return bottleneck + convs + c_in * width + 2 * 4 * width


@register("inception")
class InceptionClassifier(nn.Module):
    def __init__(self, spec: ModelSpec, input_size: int, num_classes: int, seq_len: int):
        super().__init__()
        out = 4 * spec.width
        self.blocks = nn.ModuleList(InceptionModule(input_size if d == 0 else out, spec.width, spec.kernel_size)
                                      for d in range(spec.layers))
        # Shortcut d // 3 joins after module d (d % 3 == 2), from the input or the previous shortcut's output.
        self.shortcuts = nn.ModuleList(SameConv1d(input_size if i == 0 else out, out, 1)
                                       for i in range(spec.layers // 3))
        self.shortcut_norms = nn.ModuleList(nn.BatchNorm1d(out) for _ in range(spec.layers // 3))
        self.dropout = nn.Dropout(spec.dropout)
        self.head = nn.Linear(out, num_classes)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        mask = step_mask(lengths, x.shape[1])
        h = residual = x.transpose(1, 2) * mask
        for d, block in enumerate(self.blocks):
            h = block(h, mask)
            if d % 3 == 2:
                shortcut = conv_norm(self.shortcuts[d // 3], self.shortcut_norms[d // 3], residual, mask)
                h = residual = torch.relu(h + shortcut)
        return self.head(self.dropout(global_average(h, lengths)))

    @staticmethod
    def param_count(spec: ModelSpec, input_size: int, num_classes: int, seq_len: int) -> int:
        out = 4 * spec.width
        modules = sum(InceptionModule.param_count(input_size if d == 0 else out, spec.width, spec.kernel_size)
                      for d in range(spec.layers))
        shortcuts = sum((input_size if i == 0 else out) * out + 2 * out for i in range(spec.layers // 3))
        return modules + shortcuts + out * num_classes + num_classes
