"""Continuing a study: what it records about its runs, and the one-line refusal of a run that differs."""
from __future__ import annotations

import hashlib
import itertools
import json
import warnings

import optuna

from data import Task
from .studyconfig import StudyConfig, StudyError


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
