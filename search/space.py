"""Search spaces: short declarative functions whose parameter names are TrialSpec's fields.

So `TrialSpec(**trial.params)` rebuilds any trial. Fields a space does not suggest keep
TrialSpec's defaults (e.g. `kernel_size` for a recurrent model).
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields, replace

import optuna

from models import CONVOLUTIONAL, FAMILIES, RECURRENT
from .train import TrialSpec

CLIPNORMS = [0.0, 0.25, 1.0, 4.0]  # 0 = no clipping; else log-spaced max gradient norms


class Suggest:
    """trial.suggest_* that honours values fixed on the command line and a plain grid."""

    def __init__(self, trial: optuna.Trial, fixed: dict | None = None, grid: dict | None = None):
        self.trial, self.fixed, self.grid = trial, fixed or {}, grid or {}
        self.values: dict = {}  # TrialSpec's fields as suggested: TrialSpec(**values) is the trial's spec
        self.names: dict[str, str] = {}  # field -> Optuna parameter name, where they differ (Space.overrides)

    def _pinned(self, name: str):
        if name in self.fixed:
            return self._categorical(name, [self.fixed[name]])
        if name in self.grid:
            return self._categorical(name, list(self.grid[name]))
        return None

    def _categorical(self, name: str, choices: list):
        try:
            return self.trial.suggest_categorical(self.names.get(name, name), choices)
        except ValueError:  # Optuna: a study's categorical choices cannot change between runs
            raise ValueError(f"parameter {name!r}: choices {choices} differ from those this study was started "
                             "with; continue it with the same fixed/grid values or use another --study-name") from None

    def _keep(self, name: str, value):
        self.values[name] = value
        return value

    def categorical(self, name: str, choices: list):
        pinned = self._pinned(name)
        return self._keep(name, pinned if pinned is not None else self._categorical(name, choices))

    def int(self, name: str, low: int, high: int, log: bool = False) -> int:
        pinned = self._pinned(name)
        return self._keep(name, pinned if pinned is not None else
                          self.trial.suggest_int(self.names.get(name, name), low, high, log=log))

    def float(self, name: str, low: float, high: float, log: bool = False) -> float:
        pinned = self._pinned(name)
        return self._keep(name, pinned if pinned is not None else
                          self.trial.suggest_float(self.names.get(name, name), low, high, log=log))


@dataclass(frozen=True)
class Space:
    """A task's search space, declared as data; calling it with a Suggest samples one configuration.

    Width stops at max_width and depth at max_layers so that a 100-trial study stays inside its time
    budget: the sampler must not settle where one trial costs a quarter of it (bench/README.md).
    """

    families: tuple[str, ...]
    max_layers: int = 3
    max_width: int = 64
    frontends: tuple[int, ...] = (0,)  # recurrent families: conv front-end channels (0: none)
    pools: tuple[int, ...] = (1,)
    norms: tuple[bool, ...] = (False,)
    ngrams: tuple[int, ...] = (0,)  # text tasks: the hashed character n-gram part (models/ngrams.py)
    epochs: tuple[int, ...] = (10,)
    batch_sizes: tuple[int, ...] = (32, 64, 128, 256)
    imbalance: tuple[str, ...] = ("none", "class_weights", "oversample")
    decisions: tuple[str, ...] = ("argmax",)
    lrs: tuple[float, float] = (3e-4, 1e-2)  # the learning rate's range, log-uniform
    # Per family, the fields above it sets otherwise: a random-kernel head learns in a few epochs but wide.
    overrides: dict[str, dict] = field(default_factory=dict)

    def __call__(self, s: Suggest) -> None:
        family = s.categorical("family", list(self.families))
        s.names = self.param_names(family)
        replace(self, overrides={}, **self.overrides.get(family, {}))._rest(s, family)

    def param_names(self, family: str) -> dict[str, str]:
        """Optuna's names of the fields a family overrides ("epochs:minirocket"): a study's parameter keeps
        one distribution, so an overridden one gets a name of its own."""
        return {OVERRIDDEN[key]: f"{OVERRIDDEN[key]}:{family}" for key in self.overrides.get(family, {})}

    def as_params(self, values: dict) -> dict:
        """TrialSpec field values (a warm start) under the Optuna names this space suggests them by."""
        names = self.param_names(values.get("family", ""))
        return {names.get(key, key): value for key, value in values.items()}

    def _rest(self, s: Suggest, family: str) -> None:
        if family != "linear":  # linear has no hidden layers
            s.int("layers", 1, self.max_layers)
            s.int("width", 16, self.max_width, log=True)
            s.float("dropout", 0.0, 0.5)
        frontend = 0
        if family in RECURRENT:
            s.categorical("bidirectional", [False, True])
            frontend = s.categorical("frontend", list(self.frontends))  # 0 keeps the plain recurrent models
        if family in CONVOLUTIONAL or frontend:
            s.categorical("kernel_size", [3, 5, 7, 9])
            s.categorical("pool", list(self.pools))
            s.categorical("norm", list(self.norms))
        if self.ngrams != (0,):
            s.categorical("ngrams", list(self.ngrams))
        s.categorical("clipnorm", CLIPNORMS)
        s.float("lr", *self.lrs, log=True)
        s.categorical("batch_size", list(self.batch_sizes))
        s.categorical("epochs", list(self.epochs))
        s.categorical("schedule", ["constant", "cosine"])
        s.float("weight_decay", 1e-6, 1e-2, log=True)
        s.categorical("imbalance", list(self.imbalance))
        s.categorical("decision", list(self.decisions))


FIELDS = {f.name: f for f in fields(TrialSpec)}
# Space fields an override may set -> the TrialSpec field they bound.
OVERRIDDEN = {"max_layers": "layers", "max_width": "width", "frontends": "frontend", "pools": "pool", "norms": "norm",
              "ngrams": "ngrams", "epochs": "epochs", "batch_sizes": "batch_size", "imbalance": "imbalance",
              "decisions": "decision", "lrs": "lr"}


def spec_fields(params: dict) -> dict:
    """A trial's Optuna params under TrialSpec's field names: "epochs:minirocket" (Space.param_names) -> "epochs"."""
    return {name.partition(":")[0]: value for name, value in params.items()}


def max_epochs(space: Space, fixed: dict, grid: dict) -> int:
    """The longest epoch budget a study can sample: the pruner's max_resource."""
    if "epochs" in fixed:
        return fixed["epochs"]
    if "epochs" in grid:
        return max(grid["epochs"])
    if grid:
        return TrialSpec.epochs  # a grid keeps TrialSpec's default
    return max(max(o.get("epochs", space.epochs)) for o in [{}, *space.overrides.values()])


def parse_value(name: str, text: str):
    """A command-line value for TrialSpec field `name`, converted to the field's type."""
    if name not in FIELDS:
        raise ValueError(f"unknown parameter {name!r}; known: {sorted(FIELDS)}")
    kind = FIELDS[name].type
    try:
        if kind in ("bool", bool):
            if text.lower() not in ("true", "false", "1", "0"):
                raise ValueError
            return text.lower() in ("true", "1")
        if kind in ("int", int):
            return int(text)
        if kind in ("float", float):
            return float(text)
    except ValueError:
        raise ValueError(f"--{name.replace('_', '-')} must be a {kind}, got {text!r}") from None
    return text


def check_fixed(fixed: dict, grid: dict) -> None:
    """Fail before any training on a value TrialSpec would reject (unknown family, width 0 ...)."""
    values = {**fixed, **{name: choices[0] for name, choices in grid.items()}}
    for name, choices in grid.items():
        for choice in choices:
            TrialSpec(**{"family": "lstm", **values, name: choice})
    TrialSpec(**{"family": "lstm", **values})
    for family in [fixed.get("family")] + list(grid.get("family", [])):
        if family is not None and family not in FAMILIES:
            raise ValueError(f"family must be one of {sorted(FAMILIES)}, got {family!r}")


def grid_space(fixed: dict, grid: dict) -> dict[str, list]:
    """The GridSampler search space: the grid's values, and one value (fixed or default) for the rest."""
    defaults = {f.name: f.default for f in fields(TrialSpec) if f.name != "family"}
    space = {name: [value] for name, value in {**defaults, **fixed}.items()}
    space.update({name: list(values) for name, values in grid.items()})
    if "family" not in space:
        raise ValueError("a grid needs --family (or family in --grid)")
    return space


def grid_suggest(trial: optuna.Trial, fixed: dict, grid: dict) -> Suggest:
    """In grid mode every field is pinned: grid values, or the fixed/default value."""
    return Suggest(trial, fixed=None, grid=grid_space(fixed, grid))
