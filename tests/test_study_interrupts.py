"""Studies that end early: a run stopped by Ctrl-C or SIGKILL in the middle of a study loses no finished trial and
leaves none RUNNING; the trials of a process killed right after creating one are failed by the next run, at once
when no other process of the study lives."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

import optuna
import pytest
import sqlite3

from conftest import foreground
from search.study import StudyConfig, create_study, fail_dead_trials, run_study
from test_study import TINY, cache, har, search_here  # noqa: F401  (cache, har: the studies' fixtures)

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # in-process studies train as the CLI does: 1 thread


def _has_study(db: Path) -> bool:
    """True once the run has created its study (reading earlier would race it creating the schema)."""
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10) as connection:
            return connection.execute("SELECT count(*) FROM studies").fetchone()[0] > 0
    except sqlite3.OperationalError:
        return False  # no file or no tables yet


def _wait_for(db: Path, condition, process: subprocess.Popen, log: Path, timeout: float = 300):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"the study exited ({process.returncode}) first:\n{log.read_text()[-2000:]}")
        if _has_study(db):
            try:
                trials = optuna.load_study(study_name="har", storage=f"sqlite:///{db}").trials
                if condition(trials):
                    return trials
            except KeyError:
                pass  # the study is not created yet
        time.sleep(0.2)
    raise AssertionError(f"no finished trials with one running within {timeout} s:\n{log.read_text()[-2000:]}")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL])
@pytest.mark.slow
def test_interrupted_run_loses_no_finished_trial(tmp_path, cache, sig, monkeypatch, capsys):
    db, log = tmp_path / "studies.db", tmp_path / "stderr.txt"
    # The default heartbeat (30 s): a killed run's trials must be failed by the next run at once, not after 120 s.
    args = [sys.executable, "-m", "search.har", "--data", str(TINY["har"]), "--storage", f"sqlite:///{db}", "--trials", "50",
            "--family", "dense", "--width", "16", "--epochs", "3", "--seeds", "1"]
    with open(log, "w") as stderr:
        process = subprocess.Popen(args, env={**os.environ, "DATA_CACHE": str(cache)},
                                   stdout=subprocess.DEVNULL, stderr=stderr, text=True,
                                   preexec_fn=foreground)
    finished = _wait_for(db, lambda ts: sum(t.state == optuna.trial.TrialState.COMPLETE for t in ts) >= 2
                         and ts[-1].state == optuna.trial.TrialState.RUNNING, process, log)
    process.send_signal(sig)
    try:
        process.wait(timeout=150)  # workers finish or fail their running trial first
    except subprocess.TimeoutExpired:
        process.kill()
        raise AssertionError(f"the study did not stop within 150 s of {sig.name}:\n{log.read_text()[-2000:]}")
    done_before = {t.number for t in finished if t.state == optuna.trial.TrialState.COMPLETE}
    if sig == signal.SIGINT:  # one line, no traceback from any worker
        assert process.returncode == 130, log.read_text()[-2000:]
        assert log.read_text() == "interrupted: finished trials are saved; the running ones are marked FAIL\n"
    else:
        after = search_here(*args[5:7], "--trials", "1", *args[9:], cache=cache, monkeypatch=monkeypatch,
                            capsys=capsys)  # at once: no waiting for a heartbeat
        assert after.returncode == 0, after.stderr
    trials = optuna.load_study(study_name="har", storage=f"sqlite:///{db}").trials
    complete = {t.number for t in trials if t.state == optuna.trial.TrialState.COMPLETE}
    assert done_before <= complete
    running = [(t.number, t.user_attrs.get("worker")) for t in trials if t.state == optuna.trial.TrialState.RUNNING]
    assert not running, f"left RUNNING: {running}\n{log.read_text()[-2000:]}"


@pytest.mark.slow
def test_trials_of_a_killed_process_are_failed_by_the_next_run(tmp_path, har):
    """A run killed right after creating a trial (before any training or heartbeat thread)."""
    config = StudyConfig("har", trials=1, storage=f"sqlite:///{tmp_path / 's.db'}", seeds=1, heartbeat=30,
                         fixed={"family": "linear", "epochs": 1})
    study = create_study(config)
    code = ("import os, signal, sys; from search.study import StudyConfig, create_study; "
            f"create_study(StudyConfig('har', storage={config.storage!r}, fixed={config.fixed!r})).ask(); "
            "os.kill(os.getpid(), signal.SIGKILL)")
    killed = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).parents[1], capture_output=True)
    assert killed.returncode == -signal.SIGKILL
    (trial,) = study.get_trials()
    assert trial.state == optuna.trial.TrialState.RUNNING and trial.system_attrs["worker"].endswith(":" + str(
        int(trial.system_attrs["worker"].rpartition(":")[2])))
    # Killed within the instant between its start and its marking: no worker recorded. While another
    # process of the study lives, it may be that process's new trial: failed only once 4 heartbeats
    # old (here an hour); when none lives, at once.
    for age in (3600, 0):
        template = optuna.trial.FrozenTrial(
            number=0, state=optuna.trial.TrialState.RUNNING, value=None, datetime_complete=None,
            datetime_start=datetime.now() - timedelta(seconds=age), params={}, distributions={}, user_attrs={},
            system_attrs={}, intermediate_values={}, trial_id=0)
        study._storage.create_new_trial(study._study_id, template_trial=template)
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        study._storage.set_study_system_attr(study._study_id, f"process:{socket.gethostname()}:{other.pid}", 0)
        assert fail_dead_trials(study, heartbeat=30) == [0, 1]  # the killed one at once, the old unmarked one
        assert [t.state.name for t in study.get_trials()] == ["FAIL", "FAIL", "RUNNING"]
    finally:
        other.kill()
        other.wait()
    run_study(config, har, write=lambda line: None)  # the next run: no other process lives any more
    assert [t.state.name for t in study.get_trials()] == ["FAIL", "FAIL", "FAIL", "COMPLETE"]
