"""Studies: storage, sampler, pruner, the optimisation loop and its progress lines."""
from __future__ import annotations

import math
import os
import shlex
import signal
import sys
import threading
import time
import warnings
from dataclasses import dataclass, field
from typing import Callable

import optuna
import sqlalchemy.exc

from data import Task
from .objective import STRATEGIES, Objective
from .train import METRICS
from .space import SPACES, check_fixed, grid_space, grid_suggest, max_epochs

DEFAULT_STORAGE = "sqlite:///studies.db"
DEFAULT_METRIC = {"har": "accuracy", "names": "balanced_accuracy"}
PRUNERS = ("median", "percentile", "hyperband", "successive_halving", "patient", "none")


class StudyError(Exception):
    """A bad argument or storage problem, reported as one line before any training starts."""


@dataclass
class StudyConfig:
    task: str
    trials: int | None = 100
    storage: str = DEFAULT_STORAGE
    study_name: str | None = None
    seeds: int = 3
    metric: str | None = None
    strategy: str = "racing"
    pruner: str = "hyperband"
    sampler_seed: int | None = None
    timeout: float | None = None
    device: str = "cpu"
    fixed: dict = field(default_factory=dict)
    grid: dict = field(default_factory=dict)
    command: str = ""
    heartbeat: int = 30  # seconds; a trial silent for 4 heartbeats (a killed run) is marked FAIL
    artifact_dir: str | None = None  # dashboard figures; None: artifacts/ beside a SQLite file, else ./artifacts

    def __post_init__(self):
        if self.task not in SPACES:
            raise StudyError(f"task must be one of {sorted(SPACES)}, got {self.task!r}")
        self.study_name = self.study_name or self.task
        self.metric = self.metric or DEFAULT_METRIC[self.task]
        self.command = self.command or " ".join([f"python -m search.{self.task}"] + [shlex.quote(a) for a in sys.argv[1:]])
        checks = [
            (self.trials is None or (isinstance(self.trials, int) and self.trials >= 1), "--trials must be an int >= 1", self.trials),
            (isinstance(self.seeds, int) and self.seeds >= 1, "--seeds must be an int >= 1", self.seeds),
            (self.metric in METRICS, f"--metric must be one of {list(METRICS)}", self.metric),
            (self.strategy in STRATEGIES, f"--strategy must be one of {list(STRATEGIES)}", self.strategy),
            (self.pruner in PRUNERS, f"--pruner must be one of {list(PRUNERS)}", self.pruner),
            (self.timeout is None or self.timeout > 0, "--timeout must be > 0 seconds", self.timeout),
            (isinstance(self.heartbeat, int) and self.heartbeat >= 1, "--heartbeat must be an int >= 1", self.heartbeat),
        ]
        for ok, rule, value in checks:
            if not ok:
                raise StudyError(f"{rule}, got {value!r}")
        try:
            check_fixed(self.fixed, self.grid)
            if self.grid:
                grid_space(self.fixed, self.grid)
        except ValueError as exc:
            raise StudyError(str(exc)) from None


def quiet_optuna() -> None:
    """Our progress line replaces Optuna's per-trial log; its experimental-feature warnings are noise here."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


def engine_options(url: str) -> dict:
    # SQLite: wait for a lock (the dashboard or a second worker reading) instead of failing at once.
    return {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {"pool_pre_ping": True}


def open_storage(url: str, heartbeat: int = 30) -> optuna.storages.BaseStorage:
    """An RDB storage with heartbeats, so a killed run's RUNNING trial is marked FAIL by the next run."""
    try:
        return optuna.storages.RDBStorage(url, heartbeat_interval=heartbeat, grace_period=4 * heartbeat,
                                          engine_kwargs=engine_options(url))
    except (sqlalchemy.exc.ArgumentError, sqlalchemy.exc.NoSuchModuleError, ValueError) as exc:
        raise StudyError(f"--storage {url!r} is not a valid SQLAlchemy URL ({str(exc).splitlines()[0]})") from None
    except sqlalchemy.exc.OperationalError as exc:
        raise StudyError(f"--storage {url!r}: cannot reach the database ({str(exc.orig).strip().splitlines()[0]})") from None
    except Exception as exc:  # driver errors differ by backend; all mean the same to the user
        raise StudyError(f"--storage {url!r}: {type(exc).__name__}: {str(exc).strip().splitlines()[0]}") from None


def make_pruner(name: str, max_epochs: int) -> optuna.pruners.BasePruner:
    median = optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=3)
    return {
        "median": median,
        "percentile": optuna.pruners.PercentilePruner(33.0, n_startup_trials=5, n_warmup_steps=3),
        # Steps are epochs of the longest budget (search/objective.py): the first rung is at a fifth of it.
        "hyperband": optuna.pruners.HyperbandPruner(min_resource=max(1, max_epochs // 5), max_resource=max_epochs,
                                                    reduction_factor=3),
        "successive_halving": optuna.pruners.SuccessiveHalvingPruner(min_resource=2, reduction_factor=3),
        "patient": optuna.pruners.PatientPruner(median, patience=2),
        "none": optuna.pruners.NopPruner(),
    }[name]


def make_sampler(config: StudyConfig) -> optuna.samplers.BaseSampler:
    if config.grid:
        return optuna.samplers.GridSampler(grid_space(config.fixed, config.grid), seed=config.sampler_seed)
    # multivariate + group: TPE models the conditional (per-family) parameters jointly.
    return optuna.samplers.TPESampler(seed=config.sampler_seed, multivariate=True, group=True,
                                      n_startup_trials=10, constant_liar=True)


def create_study(config: StudyConfig) -> optuna.Study:
    storage = open_storage(config.storage, config.heartbeat)
    epochs = max_epochs(config.task, config.fixed, config.grid)
    study = optuna.create_study(storage=storage, study_name=config.study_name, direction="maximize",
                                sampler=make_sampler(config), pruner=make_pruner(config.pruner, epochs),
                                load_if_exists=True)
    check_continuation(study, config)
    existing = study.user_attrs.get("metric")
    if existing is not None and existing != config.metric:
        raise StudyError(f"study {config.study_name!r} optimises {existing}; --metric {config.metric} needs another --study-name")
    return study


def check_continuation(study: optuna.Study, config: StudyConfig) -> None:
    """A continued study must pin the same parameters to the same values (Optuna cannot change choices)."""
    trials = study.get_trials(deepcopy=False)
    if not trials:
        return
    for name, dist in trials[-1].distributions.items():
        if not isinstance(dist, optuna.distributions.CategoricalDistribution):
            continue
        wanted = (config.fixed[name],) if name in config.fixed else tuple(config.grid[name]) if name in config.grid else None
        if wanted is not None and wanted != dist.choices:
            raise StudyError(f"study {config.study_name!r} was started with {name} in {list(dist.choices)}, got "
                             f"{list(wanted)}; continue it with the same values or use another --study-name")


def describe_trial(trial: optuna.trial.FrozenTrial) -> str:
    p, a = trial.params, trial.user_attrs
    keys = ["layers", "width", "bidirectional", "kernel_size", "lr", "batch_size", "clipnorm", "imbalance"]
    shown = " ".join(f"{k}={p[k]:.1e}" if k == "lr" else f"{k}={p[k]}" for k in keys if k in p)
    mean, std = a.get("metric_mean"), a.get("metric_std")
    score = f"{mean:.4f}±{std:.4f}" if mean is not None else "n/a"
    return f"{p.get('family', '?'):<7} {shown} | {score} | {a.get('ended', trial.state.name.lower())}"


def progress(config: StudyConfig, write: Callable[[str], None]):
    def callback(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        try:
            best = f"best {study.best_value:.4f} (#{study.best_trial.number})"
        except ValueError:
            best = "no complete trial yet"
        seconds = trial.user_attrs.get("train_seconds", 0)
        write(f"trial {trial.number:>4} {describe_trial(trial)} | {best} | {seconds:.0f}s")
    return callback


def raise_interrupt(signum, frame):
    raise KeyboardInterrupt  # `kill` behaves like Ctrl-C: Optuna fails the running trial, keeps the rest


def in_storage(frame) -> bool:
    """Whether the interrupted code is inside SQLAlchemy or Optuna's storage layer."""
    while frame is not None:
        if frame.f_globals.get("__name__", "").startswith(("sqlalchemy", "optuna.storages", "sqlite3")):
            return True
        frame = frame.f_back
    return False


class Interrupts:
    """Ctrl-C and SIGTERM during a study, without leaving a trial RUNNING forever.

    Inside the objective they raise KeyboardInterrupt: Optuna marks that trial FAIL and keeps the
    finished ones (never inside a database call: there it is retried every 50 ms). Between trials
    (while Optuna creates the next one, before its heartbeat starts) an exception would leave the new
    trial RUNNING with nothing to fail it later, so there they only ask the loop to stop; the next
    trial, if already created, fails at once.
    """

    def __init__(self):
        self.in_trial = False
        self.requested = False
        self.previous: dict = {}

    def __enter__(self) -> "Interrupts":
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                if signal.getsignal(sig) is not signal.SIG_IGN:  # a background job keeps ignoring Ctrl-C
                    self.previous[sig] = signal.signal(sig, self._handle)
            self.previous[signal.SIGALRM] = signal.signal(signal.SIGALRM, self._retry)
        return self

    def __exit__(self, *exc) -> None:
        if signal.SIGALRM in self.previous:
            signal.setitimer(signal.ITIMER_REAL, 0)
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)

    def _handle(self, signum, frame) -> None:
        self.requested = True
        self._retry(signum, frame)

    def _retry(self, signum, frame) -> None:
        if not (self.requested and self.in_trial):
            return
        if in_storage(frame):
            # An exception inside a database call can leave its SQLite write lock held, so the other
            # workers (and this one, failing the trial) wait 60 s and fail: retry 50 ms later.
            signal.setitimer(signal.ITIMER_REAL, 0.05)
            return
        raise KeyboardInterrupt

    def guard(self, objective: Callable) -> Callable:
        def run(trial: optuna.Trial):
            if self.requested:
                raise KeyboardInterrupt
            self.in_trial = True
            try:
                return objective(trial)
            finally:
                self.in_trial = False
        return run

    def stop_between_trials(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if self.requested:
            study.stop()


def prepare_study(config: StudyConfig, task: Task) -> optuna.Study:
    """Create (or continue) the study and record the task, data and command in its attributes."""
    study = create_study(config)
    set_study_attrs(study, config, task)
    return study


def run_study(config: StudyConfig, task: Task, write: Callable[[str], None] | None = None,
              claim: Callable[[], bool] | None = None, setup: bool = True) -> optuna.Study:
    """Add config.trials trials to the study (created or continued) and return it.

    With `claim` (search/workers.py), trials run one at a time while claim() grants one, so several
    processes share config.trials; `setup=False` there, since the parent already prepared the study.
    """
    write = write or (lambda line: print(line, flush=True))  # one line per trial, visible through a pipe
    study = prepare_study(config, task) if setup else create_study(config)
    if config.grid:
        suggest = lambda trial: grid_suggest(trial, config.fixed, config.grid)  # noqa: E731
    else:
        suggest = None
    objective = Objective(task, SPACES[config.task], config.seeds, config.metric, config.strategy,
                          config.device, config.fixed, config.grid, suggest=suggest,
                          max_epochs=max_epochs(config.task, config.fixed, config.grid))
    for hook in trial_end_hooks(config, study):
        objective.on_trial_end.append(hook)
    with Interrupts() as interrupts:
        callbacks = [progress(config, write), interrupts.stop_between_trials]
        guarded = interrupts.guard(objective)
        if claim is None:
            study.optimize(guarded, n_trials=config.trials, timeout=config.timeout, callbacks=callbacks,
                           gc_after_trial=False)
        else:
            deadline = None if config.timeout is None else time.monotonic() + config.timeout
            while (not interrupts.requested and (deadline is None or time.monotonic() < deadline)
                   and claim()):
                study.optimize(guarded, n_trials=1, callbacks=callbacks, gc_after_trial=False)
    if interrupts.requested:
        raise KeyboardInterrupt
    return study


def trial_end_hooks(config: StudyConfig, study: optuna.Study) -> list:
    """Extra per-trial outputs: figures and notes for optuna-dashboard (search/artifacts.py)."""
    from .artifacts import TrialArtifacts, default_dir  # imported here: it pulls in matplotlib
    return [TrialArtifacts(config.artifact_dir or default_dir(config.storage), SPACES[config.task], config.grid)]


def set_study_attrs(study: optuna.Study, config: StudyConfig, task: Task) -> None:
    attrs = {
        "task": config.task,
        "metric": config.metric,
        "seeds": config.seeds,
        "strategy": config.strategy,
        "pruner": config.pruner,
        "sampler_seed": config.sampler_seed,
        "data": {k: v for k, v in task.info.items() if k != "standardisation"},
        "counts": task.counts(),
        "class_names": task.class_names,
        "fixed": config.fixed,
        "grid": config.grid,
    }
    for key, value in attrs.items():
        study.set_user_attr(key, value)
    commands = study.user_attrs.get("commands", [])
    study.set_user_attr("commands", commands + [config.command])


def summary(study: optuna.Study, storage: str) -> str:
    states = [t.state for t in study.trials]
    count = {s.name.lower(): states.count(s) for s in optuna.trial.TrialState if states.count(s)}
    lines = [f"study {study.study_name!r}: {len(states)} trials {count}"]
    try:
        best = study.best_trial
        lines.append(f"best trial #{best.number}: {study.user_attrs.get('metric')} = {best.value:.4f} "
                     f"± {best.user_attrs.get('metric_std', math.nan):.4f} over seeds")
        lines.append("  params: " + ", ".join(f"{k}={v}" for k, v in best.params.items()))
    except ValueError:
        lines.append("no complete trial yet")
    lines.append(f"browse it: python -m search.dashboard --storage {storage}   (or: optuna-dashboard {storage})")
    return "\n".join(lines)
