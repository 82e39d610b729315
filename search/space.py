"""Search spaces: short declarative functions whose parameter names are TrialSpec's fields.

So `TrialSpec(**trial.params)` rebuilds any trial. Fields a space does not suggest keep
TrialSpec's defaults (e.g. `kernel_size` for a recurrent model).
"""
from __future__ import annotations

from dataclasses import fields

import optuna

from models import FAMILIES, RECURRENT
from .train import TrialSpec

EPOCHS = {"har": [10, 20], "names": [10]}  # epoch budgets each space samples from
IMBALANCE = {"har": ["none", "class_weights", "oversample"],  # HAR's classes are near balanced
             "names": ["none", "class_weights", "oversample", "logit_adjust"]}
CLIPNORMS = [0.0, 0.25, 1.0, 4.0]  # 0 = no clipping; else log-spaced max gradient norms
NGRAM_TASKS = ("names",)  # tasks whose inputs are one-hot characters, which a model's n-gram part reads


class Suggest:
    """trial.suggest_* that honours values fixed on the command line and a plain grid."""

    def __init__(self, trial: optuna.Trial, fixed: dict | None = None, grid: dict | None = None):
        self.trial, self.fixed, self.grid = trial, fixed or {}, grid or {}

    def _pinned(self, name: str):
        if name in self.fixed:
            return self._categorical(name, [self.fixed[name]])
        if name in self.grid:
            return self._categorical(name, list(self.grid[name]))
        return None

    def _categorical(self, name: str, choices: list):
        try:
            return self.trial.suggest_categorical(name, choices)
        except ValueError:  # Optuna: a study's categorical choices cannot change between runs
            raise ValueError(f"parameter {name!r}: choices {choices} differ from those this study was started "
                             "with; continue it with the same fixed/grid values or use another --study-name") from None

    def categorical(self, name: str, choices: list):
        pinned = self._pinned(name)
        return pinned if pinned is not None else self._categorical(name, choices)

    def int(self, name: str, low: int, high: int, log: bool = False) -> int:
        pinned = self._pinned(name)
        return pinned if pinned is not None else self.trial.suggest_int(name, low, high, log=log)

    def float(self, name: str, low: float, high: float, log: bool = False) -> float:
        pinned = self._pinned(name)
        return pinned if pinned is not None else self.trial.suggest_float(name, low, high, log=log)


def _model(s: Suggest, families: list[str], max_layers: int, max_width: int, frontends: list[int], pools: list[int],
           norms: list[bool]) -> str:
    family = s.categorical("family", families)
    if family != "linear":  # linear has no hidden layers
        s.int("layers", 1, max_layers)
        s.int("width", 16, max_width, log=True)
        s.float("dropout", 0.0, 0.5)
    frontend = 0
    if family in RECURRENT:
        s.categorical("bidirectional", [False, True])
        frontend = s.categorical("frontend", frontends)  # 0 keeps the exercises' plain recurrent models
    if family == "conv1d" or frontend:
        s.categorical("kernel_size", [3, 5, 7, 9])
        s.categorical("pool", pools)
        s.categorical("norm", norms)
    return family


def _training(s: Suggest, epochs: list[int], imbalance: list[str], decisions: list[str]) -> None:
    s.categorical("clipnorm", CLIPNORMS)
    s.float("lr", 3e-4, 1e-2, log=True)
    s.categorical("batch_size", [32, 64, 128, 256])
    s.categorical("epochs", epochs)
    s.categorical("schedule", ["constant", "cosine"])
    s.float("weight_decay", 1e-6, 1e-2, log=True)
    s.categorical("imbalance", imbalance)
    s.categorical("decision", decisions)


def har_space(s: Suggest) -> None:
    # Width stops at 64 on HAR, for every family: the 100-trial budget (45 min on 2 cores) holds only if
    # TPE cannot settle where a trial costs a quarter of it. A 2-layer bidirectional LSTM of width 117
    # took 24 min for 3 seeds x 10 epochs on one core; a 3x128 kernel-7 batch-norm conv1d 14 s per epoch
    # (3x64: 5 s) and reached the same validation accuracy after 20 epochs (0.954 vs 0.954, one seed,
    # bench by hand), and a study that allowed 128 took 82 min.
    _model(s, ["rnn", "lstm", "gru", "conv1d", "dense", "linear"], max_layers=3, max_width=64, frontends=[0, 32, 64],
           pools=[1, 2, 4], norms=[False, True])
    # 20 epochs: with batch norm, the best conv1d of the first study reached 0.945 validation accuracy
    # after 20 epochs and 0.939 after 10 (3 seeds); without it, 30 epochs did no better than 10.
    _training(s, epochs=EPOCHS["har"], imbalance=IMBALANCE["har"], decisions=["argmax"])


def names_space(s: Suggest) -> None:
    # Two layers and width 96 at most, for the 30 min budget: with 256 allowed, TPE kept sampling wide
    # bidirectional models (up to 12 min of a core each) and the study was on course for 65 min; at 128 (and
    # 3 layers) it took 48 min, 78 of 100 trials GRUs. One epoch of a bidirectional GRU: 2x128 4.6 s, 2x96
    # 2.7 s, 3x128 6.7 s; over 10 epochs (2 seeds) 2x96 scored 0.614 validation acc_bal_hmean, 2x128 0.617,
    # 2x64 0.582 (bench by hand, 2026-11-28). No batch norm yet.
    _model(s, ["rnn", "lstm", "gru", "conv1d"], max_layers=2, max_width=96, frontends=[0, 64], pools=[1],
           norms=[False])
    # A hashed character n-gram part beside any family (models/ngrams.py): one seed, 10 epochs, validation
    # acc_bal_hmean at the best tau, a 1x64 conv1d 0.626 alone, 0.698 with 1-3-grams, 0.687 with 1-5-grams; a
    # bidirectional 2x82 GRU 0.675 alone, 0.686 with 1-5-grams (`python bench/ngrams.py`, 2026-11-30).
    s.categorical("ngrams", [0, 3, 5])
    # Logit adjustment both ways: in the loss (imbalance) and as a decision rule with tau chosen on validation.
    _training(s, epochs=EPOCHS["names"], imbalance=IMBALANCE["names"],
              decisions=["argmax", "logit_adjust"])


SPACES = {"har": har_space, "names": names_space}

# Known-good configurations a new default study trains first (queued as its first trials, counted in
# --trials). They were chosen on validation only, and they keep the answer from depending on whether
# the sampler happens to reach that corner (issue 10: three runs of one command disagreed by 1.2 points).
WARM_START = {
    "har": [
        # conv1d #95 of an earlier 100-trial study: validation 0.953 +/- 0.002 over 3 seeds.
        dict(family="conv1d", layers=3, width=64, dropout=0.09, kernel_size=3, pool=2, norm=True, clipnorm=1.0,
             lr=1.4e-3, batch_size=32, epochs=10, schedule="constant", weight_decay=2e-3,
             imbalance="class_weights", decision="argmax"),
        # Longer, kernel 7, batch norm: validation 0.954 after 20 epochs (one seed, bench run by hand), as
        # much as the same model at width 128 in 2.5 times the time.
        dict(family="conv1d", layers=3, width=64, dropout=0.3, kernel_size=7, pool=2, norm=True, clipnorm=0.0,
             lr=2e-3, batch_size=64, epochs=20, schedule="cosine", weight_decay=1e-4,
             imbalance="none", decision="argmax"),
        # conv1d #35 of the 2026-11-29/30 example study: the best validation mean of its report's final
        # evaluation, 0.953 +/- 0.004 over seeds 100-104, the smallest spread; narrower, kernel 5 (values rounded).
        dict(family="conv1d", layers=3, width=41, dropout=0.27, kernel_size=5, pool=2, norm=True, clipnorm=0.0,
             lr=2.9e-3, batch_size=64, epochs=20, schedule="cosine", weight_decay=8e-3,
             imbalance="none", decision="argmax"),
    ],
    "names": [
        # Bidirectional 2-layer GRU, plain loss, logit adjustment as the decision: at width 256 validation
        # accuracy 0.83 and balanced accuracy 0.50 at tau 0, 0.81 / 0.59 at tau 0.75 (one seed), above every
        # earlier trial; 96 is the space's widest (acc_bal_hmean 0.614 against 0.617 at 128, 2 seeds). Batch 32:
        # acc_bal_hmean 0.638 +/- 0.009 against 0.612 at 64 and 0.568 at 128 (3 seeds, 10 epochs; `python -m
        # search.names --grid batch_size=32,64,128 --pruner none` with these values, 2026-11-29), at 1.7x the time.
        dict(family="gru", layers=2, width=96, dropout=0.2, bidirectional=True, frontend=0, ngrams=0, clipnorm=0.0,
             lr=2e-3, batch_size=32, epochs=10, schedule="cosine", weight_decay=1e-6,
             imbalance="none", decision="logit_adjust"),
        # One conv layer beside 1-3-grams: validation acc_bal_hmean 0.698 (0.807 / 0.615 at tau 0.75, one seed;
        # `python bench/ngrams.py`, "conv1d+3"), above the GRU alone (0.675) in a fifth of its time.
        dict(family="conv1d", layers=1, width=64, dropout=0.02, kernel_size=5, pool=1, norm=False, ngrams=3,
             clipnorm=4.0, lr=5e-3, batch_size=64, epochs=10, schedule="cosine", weight_decay=2e-6,
             imbalance="none", decision="logit_adjust"),
    ],
}
FIELDS = {f.name: f for f in fields(TrialSpec)}


def max_epochs(task: str, fixed: dict, grid: dict) -> int:
    """The longest epoch budget a study can sample: the pruner's max_resource."""
    if "epochs" in fixed:
        return fixed["epochs"]
    if "epochs" in grid:
        return max(grid["epochs"])
    return TrialSpec.epochs if grid else max(EPOCHS[task])  # a grid keeps TrialSpec's default


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
