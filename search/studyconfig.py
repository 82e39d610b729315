"""What a study is asked to do: StudyConfig, its argument checks, and StudyError for one-line refusals."""
from __future__ import annotations

import math
import os
import shlex
import sys
from dataclasses import dataclass, field

from . import defaults
from .objective import STRATEGIES
from .space import check_fixed, grid_space
from .storage import artifact_dir, hide_password
from .train import METRICS
from .util import shown_path, shown_paths

DEFAULT_STORAGE = defaults.STORAGE
PRUNERS = ("median", "percentile", "hyperband", "successive_halving", "patient", "none")


class StudyError(Exception):
    """A bad argument, storage or data problem, reported as one line before any training starts."""


@dataclass
class StudyConfig:
    task: str
    trials: int | None = 100
    storage: str = defaults.STORAGE
    study_name: str | None = None
    seeds: int = defaults.SEEDS
    metric: str | None = None
    strategy: str = defaults.STRATEGY
    pruner: str = defaults.PRUNER
    sampler_seed: int | None = None
    timeout: float | None = None
    device: str = defaults.DEVICE
    fixed: dict = field(default_factory=dict)
    grid: dict = field(default_factory=dict)
    command: str = ""
    heartbeat: int = defaults.HEARTBEAT  # seconds; a trial silent for 4 heartbeats (killed on another machine) is failed
    artifact_dir: str | None = None  # dashboard figures; None: artifacts/ beside a SQLite file, else ./artifacts
    warm_start: bool = True  # a new default study trains its task entry's warm starts first (search/tasks.py)

    def __post_init__(self):
        if not isinstance(self.task, str) or not self.task.strip():
            raise StudyError(f"task must be a non-empty name, got {self.task!r}")
        if self.study_name is None:
            self.study_name = self.task
        self.timeout = None if self.timeout == 0 else self.timeout  # 0: no limit, as on the command line
        # The command is recorded in the study and shown in notes and reports: never with a password,
        # nor with an absolute path of this machine (paths relative to the working folder: it runs again from there).
        self.command = hide_password(self.command or " ".join(
            [f"python -m {running_module() or 'search.' + self.task}"]
            + [shlex.quote(shown_path(a) if os.path.isabs(a) else shown_paths(a)) for a in sys.argv[1:]]))
        checks = [
            (isinstance(self.study_name, str) and self.study_name.strip() != "", "--study-name must not be empty",
             self.study_name),
            (self.trials is None or (isinstance(self.trials, int) and self.trials >= 1), "--trials must be an int >= 1", self.trials),
            (isinstance(self.seeds, int) and 1 <= self.seeds <= defaults.RERANK_SEED_BASE,
             f"--seeds must be an int from 1 to {defaults.RERANK_SEED_BASE} (seeds {defaults.RERANK_SEED_BASE} "
             "and up are the report's re-ranking and final seeds)", self.seeds),
            (self.metric is None or self.metric in METRICS, f"--metric must be one of {list(METRICS)}", self.metric),
            (self.strategy in STRATEGIES, f"--strategy must be one of {list(STRATEGIES)}", self.strategy),
            (self.pruner in PRUNERS, f"--pruner must be one of {list(PRUNERS)}", self.pruner),
            (self.timeout is None or (math.isfinite(self.timeout) and self.timeout > 0),
             "--timeout must be a finite number of seconds >= 0 (0: no limit)", self.timeout),
            (isinstance(self.heartbeat, int) and self.heartbeat >= 1, "--heartbeat must be an int >= 1", self.heartbeat),
        ]
        for ok, rule, value in checks:
            if not ok:
                raise StudyError(f"{rule}, got {value!r}")
        pinned = [(name, value) for name, value in self.fixed.items()]
        pinned += [(name, value) for name, values in self.grid.items() for value in values]
        for name, value in pinned:
            if isinstance(value, float) and not math.isfinite(value):
                raise StudyError(f"--{name.replace('_', '-')} must be a finite number, got {value!r}")
        try:
            check_fixed(self.fixed, self.grid)
            if self.grid:
                grid_space(self.fixed, self.grid)
        except ValueError as exc:
            raise StudyError(str(exc)) from None


def running_module() -> str | None:
    """The module `python -m` runs (search.har, search.fit ...), for the command a study records."""
    name = getattr(getattr(sys.modules.get("__main__"), "__spec__", None), "name", None) or ""
    return name if name.startswith("search.") else None


def figure_dir(config: StudyConfig) -> str:
    return config.artifact_dir or artifact_dir(config.storage)
