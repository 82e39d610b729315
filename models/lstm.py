"""LSTM: input, forget, cell and output gates."""
from torch import nn

from .recurrent import Recurrent
from .registry import register


@register("lstm")
class LSTMClassifier(Recurrent):
    cell = nn.LSTM
    gates = 4
