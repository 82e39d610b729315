"""Studies: configuration, checks before any training, the optimisation loop, stopping, progress lines."""
from __future__ import annotations

import hashlib
import itertools
import json
import math
import os
import shlex
import shutil
import signal
import socket
import sys
import threading
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Callable, TextIO

import optuna

from data import Task
from data.files import process_alive
from models import FAMILIES, param_count
from . import defaults
from .objective import STRATEGIES, Objective
from .space import Space, check_fixed, grid_space, grid_suggest, max_epochs
from .tasks import TEXT, TaskEntry, entry_of
from .storage import (StorageError, artifact_dir, check_reachable, describe_error, hide_password, is_memory,
                      open_storage)
from .train import METRICS, TrialSpec, resolve_device
from .util import shown_path, shown_paths

DEFAULT_STORAGE = defaults.STORAGE
PRUNERS = ("median", "percentile", "hyperband", "successive_halving", "patient", "none")
MAX_PARAMS = 100_000_000  # 400 MB of float32 weights per seed: far above the search spaces' largest model
WORKER = "worker"  # trial system attribute: host:pid of the process that created the trial
PROCESS = "process:"  # study system attribute per process that ran the study: process:host:pid -> start time
State = optuna.trial.TrialState


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


def quiet_optuna() -> None:
    """Our progress lines replace Optuna's per-trial log; its experimental-feature warnings are noise here."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


# ---- checks before any training ---------------------------------------------------------------

def check_data(task: Task) -> None:
    """Data a classifier can learn from (the baselines check it too); StudyError, one line."""
    where = f"data {task.info.get('source', task.name)}"
    counts = task.train.class_counts(task.num_classes)
    if task.num_classes < 2:
        raise StudyError(f"{where}: {task.num_classes} class ({', '.join(task.class_names)}); "
                         "a classifier needs at least 2")
    empty = [name for name, n in zip(task.class_names, counts) if n == 0]
    if empty:
        raise StudyError(f"{where}: no training example of class {', '.join(empty)}")
    if len(task.val) == 0:
        raise StudyError(f"{where}: the validation split is empty; the search ranks trials on it")


def check_task(config: StudyConfig, task: Task) -> None:
    """Data a classifier can learn from, and models that fit in memory."""
    check_data(task)
    pinned = [config.fixed.get("ngrams")] + list(config.grid.get("ngrams", []))
    if entry_of(task).kind != TEXT and any(pinned):
        raise StudyError(f"--ngrams needs text (one-hot characters), got task {task.name!r} of numeric series")
    families = [config.fixed["family"]] if "family" in config.fixed else config.grid.get("family", list(FAMILIES))
    values = {name: (config.fixed[name] if name in config.fixed else max(config.grid[name]))
              for name in set(config.fixed) | set(config.grid) if name != "family"}
    for family in families:
        spec = TrialSpec(**{**values, "family": family})
        count = param_count(spec, task.input_size, task.num_classes, task.seq_len)
        if count > MAX_PARAMS:
            shown = ", ".join(f"{k}={v}" for k, v in sorted(values.items()))
            raise StudyError(f"{shown}: a {family} model would have {count:,} parameters, over the limit of "
                             f"{MAX_PARAMS:,} ({MAX_PARAMS * 4 // 10**6} MB of weights per seed)")


def check_artifacts(config: StudyConfig) -> None:
    from .artifacts import check_dir  # imported here: it pulls in matplotlib
    try:
        check_dir(figure_dir(config), create=False)
    except ValueError as exc:
        raise StudyError(str(exc)) from None


def check_before_training(config: StudyConfig, task: Task) -> None:
    """Everything that can be checked without creating anything on disk; one line, StudyError."""
    try:
        check_reachable(config.storage)
        resolve_device(config.device)
    except (StorageError, ValueError) as exc:
        raise StudyError(str(exc)) from None
    check_artifacts(config)
    check_task(config, task)


def figure_dir(config: StudyConfig) -> str:
    return config.artifact_dir or artifact_dir(config.storage)


# ---- storage, sampler, pruner -----------------------------------------------------------------

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
        # Every grid point is queued (queue_grid) and a run takes no more trials than points queued, so
        # the sampler never chooses. Not GridSampler: it fails on a queued trial that lacks its grid_id.
        return optuna.samplers.RandomSampler(seed=config.sampler_seed)
    # multivariate + group: TPE models the conditional (per-family) parameters jointly.
    return optuna.samplers.TPESampler(seed=config.sampler_seed, multivariate=True, group=True,
                                      n_startup_trials=10, constant_liar=True)


def this_worker() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class MarkedSampler(optuna.samplers.BaseSampler):
    """The study's sampler, plus: a new trial gets its worker (host:pid) and a first heartbeat the
    moment it exists. Optuna ignores a RUNNING trial that has no heartbeat yet, so without this a
    run killed between a trial's creation and its first heartbeat left that trial RUNNING forever."""

    def __init__(self, sampler: optuna.samplers.BaseSampler, storage: optuna.storages.RDBStorage):
        self.sampler, self.storage = sampler, storage

    def before_trial(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if trial.state == State.RUNNING:  # not when a finished trial is opened again to read its note
            self.storage.set_trial_system_attr(trial._trial_id, WORKER, this_worker())
            if self.storage.get_heartbeat_interval():
                self.storage.record_heartbeat(trial._trial_id)
        self.sampler.before_trial(study, trial)

    def infer_relative_search_space(self, study, trial):
        return self.sampler.infer_relative_search_space(study, trial)

    def sample_relative(self, study, trial, search_space):
        return self.sampler.sample_relative(study, trial, search_space)

    def sample_independent(self, study, trial, param_name, param_distribution):
        return self.sampler.sample_independent(study, trial, param_name, param_distribution)

    def after_trial(self, study, trial, state, values) -> None:
        self.sampler.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        self.sampler.reseed_rng()


def create_study(config: StudyConfig, space: Space | None = None) -> optuna.Study:
    """Open (or create) the study: no training, no attributes written. StudyError on a bad storage.
    space: the task's, whose longest epoch budget is the pruner's max_resource (None: only reading the study)."""
    try:
        storage = open_storage(config.storage, config.heartbeat)
        epochs = max_epochs(space, config.fixed, config.grid) if space else TrialSpec.epochs
        study = optuna.create_study(storage=storage, study_name=config.study_name, direction="maximize",
                                    sampler=MarkedSampler(make_sampler(config), storage),
                                    pruner=make_pruner(config.pruner, epochs), load_if_exists=True)
    except StorageError as exc:
        raise StudyError(str(exc)) from None
    except Exception as exc:  # e.g. a read-only SQLite file: sqlalchemy's OperationalError
        raise StudyError(describe_error(config.storage, exc)) from None
    check_continuation(study, config)
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


def fingerprint(task: Task) -> str:
    """sha256 of every split's tensors: the same data gives the same string, other data another."""
    digest = hashlib.sha256()
    for split in (task.train, task.val, task.test):
        for tensor in (split.x, split.y, split.lengths):
            digest.update(str(tuple(tensor.shape)).encode())
            digest.update(tensor.contiguous().numpy().tobytes())
    digest.update(json.dumps(task.class_names).encode())
    return digest.hexdigest()


def recorded(config: StudyConfig, task: Task) -> dict:
    """What a study records about its runs; a continuation must match the keys checked in check_same."""
    return {
        "task": config.task,
        "metric": config.metric,
        "seeds": config.seeds,
        "class_names": task.class_names,
        "counts": task.counts(),
        "fingerprint": fingerprint(task),
        "fixed": config.fixed,
        "grid": config.grid,
    }


def _plain(value):
    return json.loads(json.dumps(value))  # as the storage gives it back: tuples become lists


def check_same(study: optuna.Study, config: StudyConfig, now: dict) -> None:
    """Refuse, with one line naming the difference, a continuation on other data, seeds, metric or pins."""
    before, name = study.user_attrs, config.study_name
    fix = "; continue it with the same values or use another --study-name"
    if "task" in before and before["task"] != now["task"]:
        raise StudyError(f"study {name!r} is a {before['task']} study, not {now['task']}; use another --study-name")
    if "metric" in before and before["metric"] != now["metric"]:
        raise StudyError(f"study {name!r} optimises {before['metric']}; --metric {now['metric']} needs another --study-name")
    if "seeds" in before and before["seeds"] != now["seeds"]:
        raise StudyError(f"study {name!r} was run with --seeds {before['seeds']}, got --seeds {now['seeds']}{fix}")
    if "class_names" in before and before["class_names"] != now["class_names"]:
        raise StudyError(f"study {name!r} was run on data with classes {before['class_names']}, got "
                         f"{now['class_names']}; pass the same --data or use another --study-name")
    if "counts" in before and before["counts"] != now["counts"]:
        split, i = next((s, i) for s in now["counts"] for i, (a, b) in
                        enumerate(itertools.zip_longest(before["counts"].get(s, []), now["counts"][s])) if a != b)
        raise StudyError(f"study {name!r} was run on other data: {before['counts'][split][i]} {split} examples of "
                         f"{now['class_names'][i]}, now {now['counts'][split][i]}; pass the same --data or use "
                         "another --study-name")
    if "fingerprint" in before and before["fingerprint"] != now["fingerprint"]:
        raise StudyError(f"study {name!r} was run on other data (same class counts, other values: fingerprint "
                         f"{before['fingerprint'][:12]}, now {now['fingerprint'][:12]}); pass the same --data or "
                         "use another --study-name")
    for kind in ("fixed", "grid"):
        if kind not in before:
            continue
        old, new = before[kind], _plain(now[kind])
        for key in sorted(set(old) | set(new)):
            if old.get(key) == new.get(key):
                continue
            if kind == "fixed":
                option = f"--{key.replace('_', '-')}"
                shown = {side: f"{option} {values[key]}" for side, values in (("old", old), ("new", new)) if key in values}
            else:
                option = f"--grid {key}"
                shown = {side: f"{option}={','.join(map(str, values[key]))}"
                         for side, values in (("old", old), ("new", new)) if key in values}
            if "old" not in shown:
                raise StudyError(f"study {name!r} was started without {option}; this run gives {shown['new']}{fix}")
            if "new" not in shown:
                raise StudyError(f"study {name!r} was started with {shown['old']}; this run does not give it{fix}")
            raise StudyError(f"study {name!r} was started with {shown['old']}, got {shown['new']}{fix}")


def set_study_attrs(study: optuna.Study, config: StudyConfig, task: Task, now: dict) -> None:
    data = {k: v for k, v in task.info.items() if k not in ("standardisation", "cache", "first_load_seconds")}
    attrs = {**now, "strategy": config.strategy, "pruner": config.pruner, "sampler_seed": config.sampler_seed,
             "data": data}
    for key, value in attrs.items():
        study.set_user_attr(key, value)
    study.set_user_attr("commands", study.user_attrs.get("commands", []) + [config.command])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names([f"val {config.metric}, mean of {config.seeds} seed{'s' * (config.seeds > 1)}"])


# ---- trials of runs that died -----------------------------------------------------------------

def register_process(study: optuna.Study) -> None:
    """Record this process in the study, so a later run knows whether any of its processes still live."""
    study._storage.set_study_system_attr(study._study_id, PROCESS + this_worker(), time.time())


def others_alive(study: optuna.Study) -> bool:
    """Whether a process other than this one may still be running the study (another machine: maybe)."""
    host = socket.gethostname()
    for key in study._storage.get_study_system_attrs(study._study_id):
        if key.startswith(PROCESS):
            where, _, pid = key[len(PROCESS):].rpartition(":")
            if where != host or (int(pid) != os.getpid() and process_alive(int(pid))):
                return True
    return False


def fail_dead_trials(study: optuna.Study, heartbeat: int) -> list[int]:
    """Mark FAIL the RUNNING trials whose process is gone; return their numbers.

    On this machine a trial's process is known (its worker attribute), so a killed run's trial is
    failed at once. A trial with no worker attribute was killed within the instant between its start
    and its marking: it is failed at once when no other process of the study lives, else once it is
    4 heartbeats old. Trials of other machines are failed by Optuna once their heartbeat is that old.
    """
    storage = study._storage
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        before = {t.number for t in study.get_trials(deepcopy=False, states=(State.RUNNING,))}
        optuna.storages.fail_stale_trials(study)
    host, now, alone = socket.gethostname(), datetime.now(), None
    failed = []
    for trial in study.get_trials(deepcopy=False, states=(State.RUNNING,)):
        worker = trial.system_attrs.get(WORKER)
        if worker is None:
            alone = (not others_alive(study)) if alone is None else alone
            dead = alone or (trial.datetime_start is not None
                             and (now - trial.datetime_start).total_seconds() > 4 * heartbeat)
        else:
            where, _, pid = worker.rpartition(":")
            dead = where == host and pid.isdigit() and int(pid) != os.getpid() and not process_alive(int(pid))
        if dead:
            try:
                storage.set_trial_state_values(trial._trial_id, state=State.FAIL)
                failed.append(trial.number)
            except optuna.exceptions.UpdateFinishedTrialError:
                pass  # another run failed it first
    stale = before - {t.number for t in study.get_trials(deepcopy=False, states=(State.RUNNING,))} - set(failed)
    return sorted(failed + list(stale))


# ---- grids --------------------------------------------------------------------------------------

def _point(values: dict, names: list[str]) -> tuple:
    return tuple(json.dumps(values.get(name)) for name in names)


def queue_grid(study: optuna.Study, config: StudyConfig) -> int:
    """Queue the grid points that have not run yet (at most config.trials); return this run's trial count.

    A point has run when a trial of it completed, was pruned or diverged; one failed by an interrupt
    or a kill runs again. Queued trials are taken by one worker each, so no point runs twice.
    """
    names = sorted(config.grid)
    space = grid_space(config.fixed, config.grid)
    points = [dict(zip(names, values)) for values in itertools.product(*(config.grid[n] for n in names))]
    done, taken, queued = set(), set(), 0
    for trial in study.get_trials(deepcopy=False):
        key = _point(trial.system_attrs.get("fixed_params") or trial.params, names)
        if trial.state in (State.COMPLETE, State.PRUNED) or (
                trial.state == State.FAIL and str(trial.user_attrs.get("ended", "")).startswith("diverged")):
            done.add(key)
        elif trial.state in (State.WAITING, State.RUNNING):
            taken.add(key)
            queued += trial.state == State.WAITING
    budget = len(points) if config.trials is None else config.trials
    todo = [p for p in points if _point(p, names) not in done | taken][:max(0, budget - queued)]
    for point in todo:
        study.enqueue_trial({**{name: values[0] for name, values in space.items()}, **point})
    return min(budget, queued + len(todo))


# ---- stopping -----------------------------------------------------------------------------------

class StopFlag:
    """Set by Ctrl-C (SIGINT) or SIGTERM. The training loop asks it between batches, the study loop
    between trials: nothing is raised inside a database call, so no SQLite lock stays held and the
    running trial ends FAIL through Optuna like any failed trial."""

    def __init__(self):
        self.requested = False

    def __call__(self) -> bool:
        return self.requested

    def request(self, signum=None, frame=None) -> None:
        self.requested = True

    @contextmanager
    def on_signals(self):
        """While inside, SIGINT and SIGTERM set the flag (main thread only; an ignored SIGINT stays ignored)."""
        previous = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                if signal.getsignal(sig) is not signal.SIG_IGN:  # a background job keeps ignoring Ctrl-C
                    previous[sig] = signal.signal(sig, self.request)
        try:
            yield self
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


class Interrupted(Exception):
    """The running trial was stopped by the StopFlag; Optuna marks it FAIL and the loop ends."""


def raise_interrupt(signum, frame):
    raise KeyboardInterrupt  # before a study runs (loading data), `kill` behaves like Ctrl-C


# ---- progress -----------------------------------------------------------------------------------

def describe_trial(trial: optuna.trial.FrozenTrial) -> str:
    p, a = trial.params, trial.user_attrs
    keys = ["layers", "width", "bidirectional", "kernel_size", "ngrams", "lr", "batch_size", "clipnorm", "imbalance"]
    shown = " ".join(f"{k}={p[k]:.1e}" if k == "lr" else f"{k}={p[k]}" for k in keys if k in p)
    mean, std = a.get("metric_mean"), a.get("metric_std")
    score = f"{mean:.4f}±{std:.4f}" if mean is not None else "n/a"
    return f"{p.get('family', '?'):<7} {shown} | {score} | {a.get('ended', trial.state.name.lower())}"


class Progress:
    """Per-epoch progress of the running trial, then one line per finished trial.

    On a terminal the epoch line is rewritten in place; through a pipe (or with `write`) every
    update is a line of its own, flushed at once, so nothing is lost. `prefix` names the worker.
    """

    def __init__(self, write: Callable[[str], None] | None = None, stream: TextIO | None = None, prefix: str = ""):
        self.stream = stream or sys.stdout
        self.write = write
        self.tty = write is None and self.stream.isatty()
        self.prefix = prefix
        self.best = "no complete trial yet"
        self.partial = False  # an in-place line is on the terminal

    def _emit(self, line: str, final: bool) -> None:
        line = self.prefix + line
        if self.write is not None:
            self.write(line)
            return
        if self.tty:
            width = shutil.get_terminal_size().columns - 1  # a wrapped line could not be rewritten in place
            self.stream.write("\r" + (line if final else line[:width]) + "\x1b[K" + ("\n" if final else ""))
            self.partial = not final
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def update_best(self, study: optuna.Study) -> None:
        try:
            best = study.best_trial
            self.best = f"best {best.value:.4f} (#{best.number})"
        except ValueError:
            self.best = "no complete trial yet"

    def epoch(self, event: dict) -> None:
        """Objective's on_progress: after every seed-epoch."""
        value = event["value"]
        shown = f"{value:.4f}" if isinstance(value, (int, float)) and math.isfinite(value) else "n/a"
        self._emit(f"trial {event['trial']:>4} seed {event['seed']} epoch {event['epoch']}/{event['epochs']} "
                   f"val {event['metric']} {shown} | {self.best}", final=False)

    def trial(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        """Optuna callback: one line per finished trial."""
        self.update_best(study)
        seconds = trial.user_attrs.get("train_seconds", 0)
        self._emit(f"trial {trial.number:>4} {describe_trial(trial)} | {self.best} | {seconds:.0f}s", final=True)


# ---- the loop -----------------------------------------------------------------------------------

def prepare_study(config: StudyConfig, task: Task) -> optuna.Study:
    """Check everything, then create (or continue) the study: it must have been run on the same data,
    seeds, metric and pinned parameters. Records them, fails the trials of runs that died, queues a grid."""
    check_before_training(config, task)
    config.metric = config.metric or entry_of(task).metric
    now = recorded(config, task)
    study = create_study(config, entry_of(task).space)
    check_same(study, config, now)
    try:
        set_study_attrs(study, config, task, now)
    except Exception as exc:  # a read-only database opens fine and fails at the first write
        raise StudyError(describe_error(config.storage, exc)) from None
    register_process(study)
    fail_dead_trials(study, config.heartbeat)
    return study


def queue_warm_start(study: optuna.Study, config: StudyConfig, entry: TaskEntry) -> int:
    """A new default study (no grid, nothing fixed) trains the task's known-good configurations first."""
    if not config.warm_start or config.grid or config.fixed or study.get_trials(deepcopy=False):
        return 0
    for params in entry.warm_starts:
        study.enqueue_trial(params, user_attrs={"warm_start": True})
    return len(entry.warm_starts)


def trials_to_run(study: optuna.Study, config: StudyConfig, task: Task) -> int | None:
    """config.trials, or for a grid the points still to run (queued here); None: until --timeout."""
    if config.grid:
        return queue_grid(study, config)
    queue_warm_start(study, config, entry_of(task))
    return config.trials


def run_study(config: StudyConfig, task: Task, write: Callable[[str], None] | None = None,
              claim: Callable[[], bool] | None = None, setup: bool = True, stop: StopFlag | None = None,
              prefix: str = "", study: optuna.Study | None = None,
              popped: Callable[[], None] = lambda: None) -> optuna.Study:
    """Add config.trials trials to the study (created or continued) and return it.

    With `claim` (search/workers.py), trials run one at a time while claim() grants one, so several
    processes share config.trials; `setup=False` there, since the parent already prepared the study
    and queued its grid (the CLI passes the `study` it prepared: an in-memory database exists once).
    popped() is called once the claimed trial is RUNNING (or never started): the workers hold a lock from
    claim() to then, because SQLite has no SELECT ... FOR UPDATE and two processes could otherwise pop the
    same queued trial (optuna/optuna#4002; the second one's tell fails with "Cannot tell a COMPLETE trial").
    Raises KeyboardInterrupt when stopped by SIGINT/SIGTERM (finished trials are kept; the running one is FAIL).
    """
    if setup:
        study = prepare_study(config, task)
        config_trials = trials_to_run(study, config, task)
    else:
        study, config_trials = study or create_study(config, entry_of(task).space), config.trials
        register_process(study)
    stop = stop or StopFlag()
    progress = Progress(write, prefix=prefix)
    suggest = (lambda trial: grid_suggest(trial, config.fixed, config.grid)) if config.grid else None  # noqa: E731
    space = entry_of(task).space
    objective = Objective(task, space, config.seeds, config.metric, config.strategy,
                          config.device, config.fixed, config.grid, suggest=suggest,
                          max_epochs=max_epochs(space, config.fixed, config.grid),
                          on_progress=progress.epoch, should_stop=stop)
    for hook in trial_end_hooks(config, space):
        objective.on_trial_end.append(hook)

    def guarded(trial: optuna.Trial) -> float:
        popped()
        try:
            if stop.requested:
                raise KeyboardInterrupt
            progress.update_best(trial.study)
            return objective(trial)
        except KeyboardInterrupt:  # should_stop() was True between batches
            if not stop.requested:
                raise
            trial.set_user_attr("ended", "interrupted")
            optuna.logging.set_verbosity(optuna.logging.ERROR)  # Optuna would log the interrupt with a traceback
            raise Interrupted from None

    def between_trials(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if stop.requested:
            study.stop()
        else:
            fail_dead_trials(study, config.heartbeat)

    started = [0]

    def claim_here() -> bool:
        if config_trials is not None and started[0] >= config_trials:
            return False
        started[0] += 1
        return True

    claim = claim or claim_here
    deadline = None if config.timeout is None else time.monotonic() + config.timeout
    with stop.on_signals():
        while not stop.requested and (deadline is None or time.monotonic() < deadline) and claim():
            try:
                study.optimize(guarded, n_trials=1, callbacks=[progress.trial, between_trials],
                               catch=(Interrupted,), gc_after_trial=False)
            finally:
                popped()  # also when the trial failed before its objective ran
    if stop.requested:
        raise KeyboardInterrupt
    return study


def trial_end_hooks(config: StudyConfig, space: Space) -> list:
    """Extra per-trial outputs: figures and notes for optuna-dashboard (search/artifacts.py)."""
    from .artifacts import TrialArtifacts  # imported here: it pulls in matplotlib
    return [TrialArtifacts(figure_dir(config), space, config.grid)]


def count_finished(study: optuna.Study) -> int:
    return sum(t.state.is_finished() for t in study.get_trials(deepcopy=False))


def summary(study: optuna.Study, storage: str) -> str:
    states = [t.state for t in study.trials]
    count = {s.name.lower(): states.count(s) for s in State if states.count(s)}
    lines = [f"study {study.study_name!r}: {len(states)} trials {count}"]
    try:
        best = study.best_trial
        lines.append(f"best trial #{best.number}: {study.user_attrs.get('metric')} = {best.value:.4f} "
                     f"± {best.user_attrs.get('metric_std', math.nan):.4f} over seeds")
        lines.append("  params: " + ", ".join(f"{k}={v}" for k, v in best.params.items()))
    except ValueError:
        lines.append("no complete trial yet")
    shown = hide_password(storage)
    if is_memory(storage):  # nothing is left to browse once this process ends
        lines.append("in-memory storage: the study ends with this run (--storage sqlite:///FILE keeps it)")
    else:
        lines.append(f"browse it: python -m search.dashboard --storage {shown}   (or: optuna-dashboard {shown})")
    return "\n".join(lines)
