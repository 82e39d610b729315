"""Elman RNN: h_t = tanh(W x_t + U h_{t-1} + b)."""
from torch import nn

from .recurrent import Recurrent
from .registry import register


@register("rnn")
class RNNClassifier(Recurrent):
    cell = nn.RNN
    gates = 1
