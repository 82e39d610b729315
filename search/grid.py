"""Grid studies: queue the grid points that have not run yet, each taken by one worker."""
from __future__ import annotations

import itertools
import json

import optuna

from .space import grid_space
from .studyconfig import StudyConfig

State = optuna.trial.TrialState


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
