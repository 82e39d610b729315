"""Shared body of the Elman RNN, LSTM and GRU families: stacked layers, final state -> classifier."""
from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from .conv1d import conv_block
from .spec import ModelSpec


def recurrent_params(gates: int, input_size: int, hidden_sizes: list[int], num_classes: int,
                     bidirectional: bool = False, biases: int = 2) -> int:
    """Closed form: per layer and direction gates * (h*in + h*h + biases*h), then a dense softmax layer.

    biases=2 is PyTorch (b_ih and b_hh); biases=1 is the textbook/Keras single bias.
    Sequence length does not enter: the same weights are applied at every step.
    """
    directions = 2 if bidirectional else 1
    total, fan_in = 0, input_size
    for h in hidden_sizes:
        total += directions * gates * (h * fan_in + h * h + biases * h)
        fan_in = directions * h
    return total + fan_in * num_classes + num_classes


class Recurrent(nn.Module):
    cell: type[nn.RNNBase]
    gates: int

    def __init__(self, spec: ModelSpec, input_size: int, num_classes: int, seq_len: int):
        super().__init__()
        # Optional conv front-end: local features, and with pool > 1 a shorter sequence for the recurrence.
        self.frontend = nn.Conv1d(input_size, spec.frontend, spec.kernel_size, padding="same") if spec.frontend else None
        self.norm = nn.BatchNorm1d(spec.frontend) if spec.frontend and spec.norm else None
        self.pool = spec.pool
        self.rnn = self.cell(spec.frontend or input_size, spec.width, num_layers=spec.layers, batch_first=True,
                             dropout=spec.dropout if spec.layers > 1 else 0.0,
                             bidirectional=spec.bidirectional)
        self.dropout = nn.Dropout(spec.dropout)
        self.head = nn.Linear(spec.width * (2 if spec.bidirectional else 1), num_classes)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        if self.frontend is not None:
            h, lengths, _ = conv_block(self.frontend, x.transpose(1, 2), lengths, self.pool, self.dropout, self.norm)
            x = h.transpose(1, 2)
        if bool((lengths < x.shape[1]).any()):
            # Packing makes the final state that of each sequence's last real step, whatever the padding.
            x = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        _, state = self.rnn(x)
        hidden = state[0] if isinstance(state, tuple) else state  # LSTM returns (h, c)
        last = hidden[-2:].transpose(0, 1).flatten(1) if self.rnn.bidirectional else hidden[-1]
        return self.head(self.dropout(last))

    @classmethod
    def param_count(cls, spec: ModelSpec, input_size: int, num_classes: int, seq_len: int) -> int:
        frontend = spec.kernel_size * input_size * spec.frontend + spec.frontend
        frontend += 2 * spec.frontend if spec.norm else 0
        return frontend + recurrent_params(cls.gates, spec.frontend or input_size, [spec.width] * spec.layers,
                                           num_classes, spec.bidirectional)
