"""Final evaluation: the only code that touches the test split.

The search chooses configurations on validation metrics alone. A report then picks some of them
(`select`), retrains each on more seeds with `train_seeds(..., test=True)` and keeps the results
in a JSON cache, so regenerating a report trains nothing it has already evaluated.

Cache file (evaluations.json), one entry per (spec, seeds, data):
    {"format": 1,
     "evaluations": {"<key>": {"spec": {...TrialSpec fields...}, "seeds": [0, 1, ...],
                               "data": {"task", "split", "counts"}, "params": int,
                               "runs": [{"seed", "status", "seconds", "history": {...per epoch...},
                                         "val_confusion": [[...]], "test": {metrics, per class, confusion} | null}]}}}
key = the first 16 hex digits of sha256(JSON of spec, seeds and data). NaN is stored as null.
A new TrialSpec field changes every key, so code that may train differently is evaluated afresh.
Entries are never removed; the file is rewritten (atomically) only when something new was trained.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Callable

import optuna

from data import Task
from .train import TrialSpec, parameter_count, train_seeds

FORMAT = 1


def spec_of(trial: optuna.trial.FrozenTrial) -> TrialSpec:
    """The full configuration a trial trained (the objective stores it; a bare trial has only its params)."""
    return TrialSpec(**trial.user_attrs.get("spec", trial.params))


def ranked(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """COMPLETE trials with a finite value, best validation value first (ties: lower trial number)."""
    done = [t for t in study.get_trials(deepcopy=False, states=[optuna.trial.TrialState.COMPLETE])
            if t.value is not None and math.isfinite(t.value)]
    return sorted(done, key=lambda t: (-t.value, t.number))


def search_value(trial: optuna.trial.FrozenTrial) -> float:
    """A trial's validation value: its objective if COMPLETE, else the last value it reported (pruned)."""
    if trial.state == optuna.trial.TrialState.COMPLETE:
        return trial.value
    return trial.intermediate_values[max(trial.intermediate_values)]


def select(study: optuna.Study, top: int) -> tuple[dict[str, optuna.trial.FrozenTrial], list[optuna.trial.FrozenTrial]]:
    """The best trial of each family and the `top` best distinct configurations, by validation value only.

    A family none of whose trials completed (the pruner stopped them all) is represented by its
    pruned trial with the best last reported value, so that every family searched is evaluated."""
    best: dict[str, optuna.trial.FrozenTrial] = {}
    leaders, seen = [], set()
    for trial in ranked(study):
        spec = spec_of(trial)
        best.setdefault(spec.family, trial)
        if len(leaders) < top and spec not in seen:  # a repeated configuration is evaluated once
            seen.add(spec)
            leaders.append(trial)
    pruned = [t for t in study.get_trials(deepcopy=False, states=[optuna.trial.TrialState.PRUNED])
              if t.intermediate_values and math.isfinite(search_value(t))]
    for trial in sorted(pruned, key=lambda t: (-search_value(t), t.number)):
        best.setdefault(spec_of(trial).family, trial)
    return best, leaders


def finite(value):
    """JSON has no NaN: NaN/inf become null, recursively."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value


def cache_key(spec: TrialSpec, seeds: list[int], data: dict) -> str:
    text = json.dumps({"spec": asdict(spec), "seeds": list(seeds), "data": data}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def write_text(path: Path, text: str) -> None:
    """Write through a temporary file, so an interrupted run never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


class Evaluations:
    """Test-split evaluations of configurations, cached in `path`; `get` trains only what is missing.

    data: what identifies the data (task, split rule, class counts per split); part of every key.
    load_task: called once, on the first evaluation that needs training.
    """

    def __init__(self, path: Path, data: dict, seeds: list[int], load_task: Callable[[], Task],
                 device: str = "cpu", write: Callable[[str], None] = lambda line: print(line, file=sys.stderr)):
        self.path, self.data, self.seeds, self.device, self.write = Path(path), data, list(seeds), device, write
        self._load_task, self._task = load_task, None
        self.used: set[str] = set()  # keys this run asked for
        self.new: set[str] = set()  # keys this run had to train
        self.entries: dict[str, dict] = {}
        if self.path.exists():
            try:
                saved = json.loads(self.path.read_text())
            except (OSError, json.JSONDecodeError) as exc:
                raise ValueError(f"{self.path}: unreadable evaluation cache ({exc}); delete it to retrain") from None
            if not isinstance(saved, dict) or saved.get("format") != FORMAT:
                raise ValueError(f"{self.path}: not an evaluation cache of format {FORMAT}; delete it to retrain")
            self.entries = saved["evaluations"]

    @property
    def trained(self) -> int:
        return len(self.new)

    @property
    def reused(self) -> int:
        return len(self.used - self.new)

    @property
    def task(self) -> Task:
        if self._task is None:
            self._task = self._load_task()
        return self._task

    def get(self, spec: TrialSpec, label: str = "") -> dict:
        key = cache_key(spec, self.seeds, self.data)
        self.used.add(key)
        if key in self.entries:
            return self.entries[key]
        self.write(f"evaluating {label or spec.family} on seeds {self.seeds} (validation and test split)")
        results = train_seeds(spec, self.task, self.seeds, self.device, test=True)
        entry = finite({
            "spec": asdict(spec),
            "seeds": self.seeds,
            "data": self.data,
            "params": parameter_count(spec, self.task),
            "runs": [{"seed": r.seed, "status": r.status, "seconds": round(r.seconds, 2), "history": r.history,
                      "val_confusion": r.confusion, "test": r.test} for r in results],
        })
        self.entries[key] = entry
        self.new.add(key)
        # Saved after each evaluation, so an interrupted report keeps what it has trained.
        write_text(self.path, json.dumps({"format": FORMAT, "evaluations": self.entries}, sort_keys=True, indent=1) + "\n")
        return entry
