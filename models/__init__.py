"""Model zoo: every family is many-to-one and built by create_model(spec, input_size, num_classes, seq_len)."""
# Each module registers its family.
from . import conv1d, dense, fcn, gru, inception, linear, lstm, minirocket, resnet, rnn  # noqa: F401
from .recurrent import recurrent_params
from .registry import FAMILIES, create_model, is_recurrent, module_param_count, param_count, register
from .spec import ModelSpec

RECURRENT = tuple(name for name in FAMILIES if is_recurrent(name))  # ("rnn", "lstm", "gru")
# Families whose convolutions take the searched kernel_size, pool and norm (they say so with `searches_kernel`).
CONVOLUTIONAL = tuple(name for name in FAMILIES if getattr(FAMILIES[name], "searches_kernel", False))

__all__ = ["CONVOLUTIONAL", "FAMILIES", "ModelSpec", "RECURRENT", "create_model", "is_recurrent", "module_param_count", "param_count",
           "recurrent_params", "register"]
