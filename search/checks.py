"""Checks before any training: storage, device, data a classifier can learn from, models that fit, figure folder."""
from __future__ import annotations

from data import Task
from models import FAMILIES, param_count
from .storage import StorageError, check_reachable
from .studyconfig import StudyConfig, StudyError, figure_dir
from .tasks import TEXT, entry_of
from .train import TrialSpec, resolve_device

MAX_PARAMS = 100_000_000  # 400 MB of float32 weights per seed: far above the search spaces' largest model


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
