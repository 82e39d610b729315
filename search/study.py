"""Studies: open (or continue) one and run its trials, with progress, stopping and dead-trial cleanup."""
from __future__ import annotations

import math
import time
import warnings
from typing import Callable

import optuna

from data import Task
from .checks import check_before_training
from .continuation import check_continuation, check_same, recorded, set_study_attrs
from .grid import queue_grid
from .objective import Objective
from .processes import fail_dead_trials, register_process
from .progress import Progress
from .sampling import MarkedSampler, make_pruner, make_sampler
from .space import Space, grid_suggest, max_epochs
from .stopping import Interrupted, StopFlag
from .storage import StorageError, describe_error, hide_password, is_memory, open_storage
from .studyconfig import DEFAULT_STORAGE, StudyConfig, StudyError, figure_dir  # noqa: F401  (DEFAULT_STORAGE: re-exported)
from .tasks import TaskEntry, entry_of
from .train import TrialSpec

State = optuna.trial.TrialState


def quiet_optuna() -> None:
    """Our progress lines replace Optuna's per-trial log; its experimental-feature warnings are noise here."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


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
        study.enqueue_trial(entry.space.as_params(params), user_attrs={"warm_start": True})
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
