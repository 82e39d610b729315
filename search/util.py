"""Small helpers shared by the search, the report and the dashboard hooks."""
from __future__ import annotations

import math
import os
import re
from pathlib import Path

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


def shown_path(path: str) -> str:
    """A path as notes, reports and recorded commands show it: relative to the working folder (with '..'
    when outside it), so that a recorded command runs again as written from there and no machine's absolute
    path is stored; on another drive than the working folder (Windows), its name only."""
    try:
        return os.path.relpath(path)
    except ValueError:
        return Path(path).name


def shown_paths(text: str) -> str:
    """The text with each absolute SQLite file path in it (sqlite:////abs/path) shown as shown_path shows it."""
    return re.sub(r"sqlite:///(/[^\s'\"]+)", lambda m: "sqlite:///" + shown_path(m[1]), text)
