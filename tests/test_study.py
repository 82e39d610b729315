"""Studies on the real data: persistence, resume, fixed parameters, divergence, pruning, reproducibility."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import sqlite3

from search.study import StudyConfig, create_study, run_study

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
HAR = DATA / "UCI_HAR_Dataset.zip"
NAMES = DATA / "names"
REQUIRED_ATTRS = {"spec", "seeds", "seed_metrics", "metric", "metric_mean", "metric_std", "curves", "confusion",
                  "params", "train_seconds", "seed_epochs", "strategy", "ended"}
pytestmark = pytest.mark.usefixtures("one_torch_thread")  # in-process studies train as the CLI does: 1 thread
CURVE_KEYS = {"train_loss", "val_loss", "val_accuracy", "val_balanced_accuracy", "val_macro_f1", "grad_norm"}


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cache")
    os.environ["DATA_CACHE"] = str(folder)
    yield folder
    os.environ.pop("DATA_CACHE", None)


@pytest.fixture(scope="module")
def har(small_har):
    """600 real training windows, 200 validation: enough to learn, fast enough for several studies."""
    return small_har


def search(*args: str, cache: Path, task: str = "har", check: bool = True, **kwargs) -> subprocess.CompletedProcess:
    """Run `python -m search.<task>` the way a user does."""
    data = HAR if task == "har" else NAMES
    env = {**os.environ, "DATA_CACHE": str(cache)}
    result = subprocess.run([sys.executable, "-m", f"search.{task}", "--data", str(data), *args],
                            capture_output=True, text=True, env=env, timeout=600, **kwargs)
    if check:
        assert result.returncode == 0, result.stderr
    return result


def test_study_file_keeps_complete_trials_and_a_second_run_continues(tmp_path, cache):
    db = tmp_path / "studies.db"
    common = ["--storage", f"sqlite:///{db}", "--seeds", "2", "--epochs", "2", "--width", "16", "--pruner", "none",
              "--grid", "family=dense,linear"]
    first = search("--trials", "2", *common, cache=cache)
    assert "trial    0" in first.stdout and "best trial #" in first.stdout and "optuna-dashboard" in first.stdout
    study = optuna.load_study(study_name="har", storage=f"sqlite:///{db}")
    assert len(study.trials) == 2
    for trial in study.trials:
        assert trial.state == optuna.trial.TrialState.COMPLETE
        assert REQUIRED_ATTRS <= set(trial.user_attrs)
        attrs = trial.user_attrs
        assert len(attrs["seed_metrics"]["accuracy"]) == 2 and attrs["seeds"] == [0, 1]
        assert attrs["metric_mean"] == pytest.approx(trial.value)
        assert all(CURVE_KEYS <= set(curve) and len(curve["val_loss"]) == 2 for curve in attrs["curves"])
        assert sum(map(sum, attrs["confusion"])) == 2 * sum(study.user_attrs["counts"]["val"])
        assert attrs["ended"] == "finished" and attrs["params"] > 0 and attrs["seed_epochs"] == 4
        assert set(trial.intermediate_values) == {1, 2}  # per-epoch mean validation metric
    assert {t.params["family"] for t in study.trials} == {"dense", "linear"}
    first_trials = study.trials

    search("--trials", "1", *common, cache=cache)
    again = optuna.load_study(study_name="har", storage=f"sqlite:///{db}")
    assert len(again.trials) == 3 and again._study_id == study._study_id
    assert again.trials[:2] == first_trials  # the first run's trials are kept as they were
    assert len(again.user_attrs["commands"]) == 2

    changed = search("--trials", "1", *common[:-1], "family=dense,conv1d", cache=cache, check=False)
    assert changed.returncode == 2 and "was started with family in ['dense', 'linear']" in changed.stderr
    assert changed.stderr.count("\n") == 1


def test_workers_share_one_study_and_its_trial_count(tmp_path, cache):
    db = tmp_path / "studies.db"
    result = search("--storage", f"sqlite:///{db}", "--trials", "8", "--workers", "2", "--family", "dense",
                    "--width", "16", "--epochs", "3", "--seeds", "1", "--pruner", "none", cache=cache)
    assert result.stdout.startswith("2 workers x 1 torch thread(s)")
    trials = optuna.load_study(study_name="har", storage=f"sqlite:///{db}").trials
    assert [t.state for t in trials] == [optuna.trial.TrialState.COMPLETE] * 8  # --trials 8 in all, not per worker
    assert len({t.user_attrs["worker"] for t in trials}) == 2
    numbers = sorted(int(line.split()[1]) for line in result.stdout.splitlines() if line.startswith("trial "))
    assert numbers == list(range(8))  # one progress line per trial


def test_fixed_family_restricts_the_sampled_space(tmp_path, har):
    config = StudyConfig("har", trials=3, storage=f"sqlite:///{tmp_path / 's.db'}", seeds=1, sampler_seed=3,
                         fixed={"family": "dense", "epochs": 1, "width": 16})
    study = run_study(config, har, write=lambda line: None)
    assert [t.params["family"] for t in study.trials] == ["dense"] * 3
    assert all(t.params["width"] == 16 for t in study.trials)
    assert len({t.params["lr"] for t in study.trials}) == 3  # the rest is still searched
    assert all("kernel_size" not in t.params for t in study.trials)  # conditional: conv1d only


def test_imbalance_strategies_leave_validation_untouched(tmp_path, har):
    config = StudyConfig("har", trials=3, storage=f"sqlite:///{tmp_path / 's.db'}", seeds=1,
                         fixed={"family": "linear", "epochs": 1}, grid={"imbalance": ["none", "class_weights", "oversample"]})
    study = run_study(config, har, write=lambda line: None)
    assert sorted(t.params["imbalance"] for t in study.trials) == ["class_weights", "none", "oversample"]
    val_counts = har.val.class_counts(har.num_classes)
    for trial in study.trials:
        assert [sum(row) for row in trial.user_attrs["confusion"]] == val_counts


def test_nan_loss_ends_one_trial_not_the_study(tmp_path, har):
    config = StudyConfig("har", trials=2, storage=f"sqlite:///{tmp_path / 's.db'}", seeds=2,
                         fixed={"family": "dense", "epochs": 2, "width": 16}, grid={"lr": [1e30, 1e-3]})
    study = run_study(config, har, write=lambda line: None)
    by_lr = {t.params["lr"]: t for t in study.trials}
    assert by_lr[1e30].state == optuna.trial.TrialState.FAIL
    assert by_lr[1e30].user_attrs["ended"].startswith("diverged at epoch 1")
    assert by_lr[1e-3].state == optuna.trial.TrialState.COMPLETE


def test_same_seed_and_parameters_give_the_same_metrics(tmp_path, har):
    values = []
    for run in range(2):
        config = StudyConfig("har", trials=2, storage=f"sqlite:///{tmp_path / f'{run}.db'}", seeds=2, sampler_seed=7,
                             fixed={"family": "conv1d", "epochs": 1, "width": 8, "layers": 1, "pool": 2})
        study = run_study(config, har, write=lambda line: None)
        values.append([(t.params, t.user_attrs["seed_metrics"]) for t in study.trials])
    assert values[0] == values[1]


def test_pruning_prunes_hopeless_trials(tmp_path, har):
    config = StudyConfig("har", trials=8, storage=f"sqlite:///{tmp_path / 's.db'}", seeds=1, pruner="median",
                         fixed={"family": "linear", "epochs": 5, "batch_size": 256, "schedule": "constant"})
    study = create_study(config)
    for lr in [3e-3, 2e-3, 5e-3, 1e-2, 4e-3, 6e-3]:
        study.enqueue_trial({"lr": lr})
    for lr in [1e-7, 2e-7]:  # barely moves from its initialisation: below the median after warm-up
        study.enqueue_trial({"lr": lr})
    study = run_study(config, har, write=lambda line: None)
    pruned = [t for t in study.trials if t.state == optuna.trial.TrialState.PRUNED]
    assert {t.params["lr"] for t in pruned} == {1e-7, 2e-7}
    assert all(t.user_attrs["ended"].startswith("pruned at epoch") for t in pruned)
    assert all(t.user_attrs["seed_epochs"] < 5 for t in pruned)


def test_racing_strategy_trains_all_seeds_of_a_competitive_trial(tmp_path, har):
    config = StudyConfig("har", trials=2, storage=f"sqlite:///{tmp_path / 's.db'}", seeds=3, strategy="racing",
                         fixed={"family": "linear", "epochs": 1})
    study = run_study(config, har, write=lambda line: None)
    assert all(t.user_attrs["seeds"] == [0, 1, 2] for t in study.trials)


@pytest.mark.parametrize("args, message", [
    (["--family", "transformer"], "family must be one of"),
    (["--trials", "-3"], "--trials must be an int >= 1, got -3"),
    (["--storage", "notaurl"], "--storage 'notaurl'"),
    (["--storage", "postgresql://postgres@127.0.0.1:1/test"], "cannot reach the database"),
    (["--width", "0"], "width must be an int >= 1, got 0"),
    (["--grid", "width"], "--grid takes NAME=V1,V2"),
    (["--lr", "fast"], "--lr must be a float"),
])
def test_bad_arguments_get_one_line_and_exit_2(tmp_path, cache, args, message):
    result = search("--storage", f"sqlite:///{tmp_path / 's.db'}", *args, cache=cache, check=False, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and message in result.stderr
    assert "Traceback" not in result.stderr


def test_postgresql_storage(har):
    url = "postgresql://postgres@127.0.0.1:5432/test"
    name = f"pytest-{os.getpid()}-{time.time_ns()}"
    config = StudyConfig("har", trials=1, storage=url, study_name=name, seeds=1, fixed={"family": "linear", "epochs": 1})
    try:
        run_study(config, har, write=lambda line: None)
        study = optuna.load_study(study_name=name, storage=url)
        assert study.trials[0].state == optuna.trial.TrialState.COMPLETE
        assert study.trials[0].user_attrs["seed_epochs"] == 1
    finally:
        optuna.delete_study(study_name=name, storage=url)


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
def test_interrupted_run_loses_no_finished_trial(tmp_path, cache, sig):
    db, log = tmp_path / "studies.db", tmp_path / "stderr.txt"
    args = [sys.executable, "-m", "search.har", "--data", str(HAR), "--storage", f"sqlite:///{db}", "--trials", "50",
            "--family", "dense", "--width", "16", "--epochs", "3", "--seeds", "1", "--heartbeat", "1"]
    with open(log, "w") as stderr:
        # As from a terminal: a shell's background job (`pytest &`) would otherwise pass SIGINT on as ignored.
        process = subprocess.Popen(args, env={**os.environ, "DATA_CACHE": str(cache)},
                                   stdout=subprocess.DEVNULL, stderr=stderr, text=True,
                                   preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    finished = _wait_for(db, lambda ts: sum(t.state == optuna.trial.TrialState.COMPLETE for t in ts) >= 2
                         and ts[-1].state == optuna.trial.TrialState.RUNNING, process, log)
    process.send_signal(sig)
    try:
        process.wait(timeout=150)  # workers finish or fail their running trial first
    except subprocess.TimeoutExpired:
        process.kill()
        raise AssertionError(f"the study did not stop within 150 s of {sig.name}:\n{log.read_text()[-2000:]}")
    done_before = {t.number for t in finished if t.state == optuna.trial.TrialState.COMPLETE}
    if sig == signal.SIGINT:
        assert process.returncode == 130 and "finished trials are saved" in log.read_text(), log.read_text()[-2000:]
    else:
        time.sleep(5)  # let the killed run's heartbeat go stale (4 x 1 s)
        search(*args[5:7], "--trials", "1", *args[9:], cache=cache)
    trials = optuna.load_study(study_name="har", storage=f"sqlite:///{db}").trials
    complete = {t.number for t in trials if t.state == optuna.trial.TrialState.COMPLETE}
    assert done_before <= complete
    running = [(t.number, t.user_attrs.get("worker")) for t in trials if t.state == optuna.trial.TrialState.RUNNING]
    assert not running, f"left RUNNING: {running}\n{log.read_text()[-2000:]}"
