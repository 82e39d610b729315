"""Small helpers shared by the search, the report and the dashboard hooks."""
from __future__ import annotations

import math

import numpy as np


def json_safe(value):
    """JSON (and Optuna's storage) has no NaN: NaN/inf become None, numpy scalars plain numbers, recursively."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value
