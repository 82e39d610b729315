"""The processes that run a study: each trial's worker, the process registry, failing the trials of dead ones."""
from __future__ import annotations

import os
import socket
import time
import warnings
from datetime import datetime

import optuna

from data.files import process_alive

WORKER = "worker"  # trial system attribute: host:pid of the process that created the trial
PROCESS = "process:"  # study system attribute per process that ran the study: process:host:pid -> start time

State = optuna.trial.TrialState


def this_worker() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


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
