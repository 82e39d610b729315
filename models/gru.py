"""GRU: reset, update and candidate gates."""
from torch import nn

from .recurrent import Recurrent
from .registry import register


@register("gru")
class GRUClassifier(Recurrent):
    cell = nn.GRU
    gates = 3
