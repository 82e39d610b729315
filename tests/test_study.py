"""Studies on the real data: persistence, resume, fixed parameters, divergence, pruning, reproducibility."""
from __future__ import annotations

import json
import os
import pty
import re
import signal
import socket
import subprocess
import sys
import time
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

import optuna
import pytest
import sqlite3
import torch

from conftest import foreground, head
from data import Split, Task
from search.study import StudyConfig, StudyError, create_study, fail_dead_trials, run_study

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
HAR = DATA / "UCI_HAR_Dataset.zip"
NAMES = DATA / "names"
REQUIRED_ATTRS = {"spec", "seeds", "seed_metrics", "metric", "metric_mean", "metric_std", "curves", "confusion",
                  "params", "train_seconds", "seed_epochs", "strategy", "ended"}
pytestmark = pytest.mark.usefixtures("one_torch_thread")  # in-process studies train as the CLI does: 1 thread
CURVE_KEYS = {"train_loss", "val_loss", "val_accuracy", "val_balanced_accuracy", "val_macro_f1", "grad_norm"}


TINY = {}  # the tiny HAR folder of the module's command-line studies, whose subject is the study, not the model


@pytest.fixture(scope="module")
def cache(tmp_path_factory, tiny_har_dir):
    folder = tmp_path_factory.mktemp("cache")
    os.environ["DATA_CACHE"] = str(folder)
    TINY["har"] = tiny_har_dir
    yield folder
    os.environ.pop("DATA_CACHE", None)


@pytest.fixture(scope="module")
def har(small_har):
    """600 real training windows, 200 validation: enough to learn, fast enough for several studies."""
    return small_har


def search(*args: str, cache: Path, task: str = "har", data: Path | None = None, check: bool = True, **kwargs
           ) -> subprocess.CompletedProcess:
    """Run `python -m search.<task>` the way a user does."""
    data = data or (TINY["har"] if task == "har" else NAMES)
    env = {**os.environ, "DATA_CACHE": str(cache)}
    result = subprocess.run([sys.executable, "-m", f"search.{task}", "--data", str(data), *args],
                            capture_output=True, text=True, env=env, timeout=600, **kwargs)
    if check:
        assert result.returncode == 0, result.stderr
    return result


@pytest.mark.slow
def test_study_file_keeps_complete_trials_and_a_second_run_continues(tmp_path, cache, monkeypatch, capsys):
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

    assert study.metric_names == ["val accuracy, mean of 2 seeds"]  # the dashboard's name for the objective

    here = dict(cache=cache, monkeypatch=monkeypatch, capsys=capsys)  # the runs after the first: in this process
    second = search_here("--trials", "1", *common, **here)  # the grid has run every point: nothing more
    assert "has run every point; nothing to do" in second.stdout
    again = optuna.load_study(study_name="har", storage=f"sqlite:///{db}")
    assert len(again.trials) == 2 and again._study_id == study._study_id
    assert again.trials == first_trials  # the first run's trials are kept as they were
    assert len(again.user_attrs["commands"]) == 2

    changed = search_here("--trials", "1", *common[:-1], "family=dense,conv1d", **here)
    assert changed.returncode == 2 and "was started with family in ['dense', 'linear']" in changed.stderr
    assert changed.stderr.count("\n") == 1


@pytest.mark.slow
def test_workers_share_one_study_and_its_trial_count(tmp_path, cache):
    db = tmp_path / "studies.db"
    result = search("--storage", f"sqlite:///{db}", "--trials", "8", "--workers", "2", "--family", "dense",
                    "--width", "16", "--epochs", "3", "--seeds", "1", "--pruner", "none", cache=cache)
    assert result.stdout.startswith("2 workers x 1 torch thread(s)")
    trials = optuna.load_study(study_name="har", storage=f"sqlite:///{db}").trials
    assert [t.state for t in trials] == [optuna.trial.TrialState.COMPLETE] * 8  # --trials 8 in all, not per worker
    assert len({t.user_attrs["worker"] for t in trials}) == 2
    lines = result.stdout.splitlines()
    ended = [re.match(r"\[w[01]\] trial +(\d+) dense ", line) for line in lines]
    assert sorted(int(m[1]) for m in ended if m) == list(range(8))  # one line per trial, prefixed by its worker
    epochs = [re.match(r"\[w[01]\] trial +(\d+) seed 0 epoch (\d)/3 val accuracy 0\.\d{4} \| ", line) for line in lines]
    assert sorted((int(m[1]), int(m[2])) for m in epochs if m) == [(n, e) for n in range(8) for e in (1, 2, 3)]


@pytest.mark.slow
def test_a_search_stops_starting_trials_at_its_time_limit(tmp_path, cache, small_names_dir):
    # By default a search keeps to its task's budget whatever path the sampler takes (names with sampler
    # seed 1 once took 105 min for 100 trials); a trial that has started still finishes.
    from search.cli import config_from_args, parser
    from search.tasks import NAMES

    def config(*args: str) -> StudyConfig:
        return config_from_args("names", parser("names").parse_args(list(args)), NAMES.time_limit)

    assert config().timeout == NAMES.time_limit
    assert config().command.endswith(f" --timeout {NAMES.time_limit}")  # the report shows the limit
    assert config("--timeout", "0").timeout is None and config("--timeout", "90").timeout == 90
    assert config("--family", "linear", "--grid", "lr=0.01,0.1").timeout is None  # a grid runs every point
    db = tmp_path / "studies.db"
    result = search("--storage", f"sqlite:///{db}", "--trials", "5", "--timeout", "0.2", "--workers", "1",
                    "--family", "linear", "--epochs", "3", "--seeds", "2", task="names", data=small_names_dir,
                    cache=cache)
    assert "new trials stop after 0.2 s" in result.stdout
    assert "time limit: 1 of 5 trials ran before --timeout 0.2 s stopped new ones" in result.stdout
    trials = optuna.load_study(study_name="names", storage=f"sqlite:///{db}").trials
    assert [t.state for t in trials] == [optuna.trial.TrialState.COMPLETE]


@pytest.mark.slow
def test_grid_with_two_workers_runs_every_point_once(tmp_path, cache, monkeypatch, capsys):
    # Queued trials popped by two processes at once from SQLite (no SELECT ... FOR UPDATE) once ran twice and
    # the second tell failed ("Cannot tell a COMPLETE trial"); short trials make such collisions likely.
    db = tmp_path / "studies.db"
    lrs = [0.001, 0.002, 0.003, 0.004, 0.005, 0.006, 0.007, 0.008]
    args = ["--storage", f"sqlite:///{db}", "--workers", "2", "--family", "linear", "--epochs", "1", "--seeds", "1",
            "--grid", "lr=" + ",".join(map(str, lrs))]  # default --trials 100: the grid's 8 points are all it runs
    search(*args, cache=cache)
    trials = optuna.load_study(study_name="har", storage=f"sqlite:///{db}").trials
    assert sorted(t.params["lr"] for t in trials) == lrs
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    again = search_here(*args, cache=cache, monkeypatch=monkeypatch, capsys=capsys)
    assert "nothing to do" in again.stdout
    assert len(optuna.load_study(study_name="har", storage=f"sqlite:///{db}").trials) == 8


def test_a_new_default_study_trains_the_known_good_configurations_first(tmp_path):
    from search.space import TrialSpec
    from search.study import queue_warm_start
    from search.tasks import REGISTRY
    names = REGISTRY["names"]
    config = StudyConfig("names", trials=5, storage=f"sqlite:///{tmp_path / 's.db'}")
    study = create_study(config)
    assert queue_warm_start(study, config, names) == len(names.warm_starts)
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.WAITING] * len(names.warm_starts)
    assert [t.system_attrs["fixed_params"] for t in study.trials] == list(names.warm_starts)
    assert queue_warm_start(study, config, names) == 0  # a continued study is not queued again
    for entry in REGISTRY.values():  # every configuration is a valid spec
        for params in entry.warm_starts:
            TrialSpec(**params)
    for other in (replace(config, study_name="fixed", fixed={"family": "lstm"}),
                  replace(config, study_name="off", warm_start=False)):
        assert queue_warm_start(create_study(other), other, names) == 0


def inside(distribution, value) -> bool:
    if isinstance(distribution, optuna.distributions.CategoricalDistribution):
        return value in distribution.choices
    return distribution.low <= value <= distribution.high


def test_every_warm_start_configuration_lies_inside_its_task_space():
    # A cap lowered in search/space.py must not leave a warm start outside it (the report would compare a
    # configuration the sampler could never propose).
    from search.space import Suggest
    from search.tasks import REGISTRY
    for task, entry in REGISTRY.items():
        for warm in entry.warm_starts:
            params = entry.space.as_params(warm)  # a family's overridden fields have names of their own
            study = optuna.create_study()
            study.enqueue_trial(params)
            trial = study.ask()
            suggest = Suggest(trial)
            entry.space(suggest)
            assert suggest.values == warm, f"{task} warm start {warm} becomes {suggest.values}"
            assert set(trial.params) <= set(params), f"{task} warm start leaves {set(trial.params) - set(params)} to the sampler"
            outside = {name: params[name] for name, d in trial.distributions.items() if not inside(d, params[name])}
            assert not outside, f"{task} warm start outside its space: {outside}"
    # And the check can fail: width 128 is outside names' cap.
    study = optuna.create_study()
    study.enqueue_trial({**REGISTRY["names"].warm_starts[0], "width": 128})
    trial = study.ask()
    REGISTRY["names"].space(Suggest(trial))
    assert not inside(trial.distributions["width"], 128)


@pytest.mark.slow
def test_fixed_family_restricts_the_sampled_space(tmp_path, har):
    config = StudyConfig("har", trials=3, storage=f"sqlite:///{tmp_path / 's.db'}", seeds=1, sampler_seed=3,
                         fixed={"family": "dense", "epochs": 1, "width": 16})
    study = run_study(config, har, write=lambda line: None)
    assert [t.params["family"] for t in study.trials] == ["dense"] * 3
    assert all(t.params["width"] == 16 for t in study.trials)
    assert len({t.params["lr"] for t in study.trials}) == 3  # the rest is still searched
    assert all("kernel_size" not in t.params for t in study.trials)  # conditional: conv1d only


@pytest.mark.slow
def test_imbalance_strategies_leave_validation_untouched(tmp_path, har):
    config = StudyConfig("har", trials=3, storage=f"sqlite:///{tmp_path / 's.db'}", seeds=1,
                         fixed={"family": "linear", "epochs": 1}, grid={"imbalance": ["none", "class_weights", "oversample"]})
    study = run_study(config, har, write=lambda line: None)
    assert sorted(t.params["imbalance"] for t in study.trials) == ["class_weights", "none", "oversample"]
    val_counts = har.val.class_counts(har.num_classes)
    for trial in study.trials:
        assert [sum(row) for row in trial.user_attrs["confusion"]] == val_counts


@pytest.mark.slow
def test_nan_loss_ends_one_trial_not_the_study(tmp_path, har):
    config = StudyConfig("har", trials=2, storage=f"sqlite:///{tmp_path / 's.db'}", seeds=2,
                         fixed={"family": "dense", "epochs": 2, "width": 16}, grid={"lr": [1e30, 1e-3]})
    study = run_study(config, har, write=lambda line: None)
    by_lr = {t.params["lr"]: t for t in study.trials}
    assert by_lr[1e30].state == optuna.trial.TrialState.FAIL
    assert by_lr[1e30].user_attrs["ended"].startswith("diverged at epoch 1")
    assert by_lr[1e-3].state == optuna.trial.TrialState.COMPLETE


@pytest.mark.slow
def test_same_seed_and_parameters_give_the_same_metrics(tmp_path, har):
    values = []
    for run in range(2):
        config = StudyConfig("har", trials=2, storage=f"sqlite:///{tmp_path / f'{run}.db'}", seeds=2, sampler_seed=7,
                             fixed={"family": "conv1d", "epochs": 1, "width": 8, "layers": 1, "pool": 2})
        study = run_study(config, har, write=lambda line: None)
        values.append([(t.params, t.user_attrs["seed_metrics"]) for t in study.trials])
    assert values[0] == values[1]


@pytest.mark.slow
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


@pytest.mark.slow
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
    (["--ngrams", "3"], "--ngrams needs text (one-hot characters), got task 'har' of numeric series"),
    (["--seeds", "51"], "--seeds must be an int from 1 to 50 (seeds 50 and up are the report's re-ranking and "
                        "final seeds), got 51"),
    (["--timeout", "-1"], "--timeout must be a finite number of seconds >= 0 (0: no limit), got -1.0"),
    (["--grid", "width"], "--grid takes NAME=V1,V2"),
    (["--lr", "fast"], "--lr must be a float"),
    (["--lr", "inf"], "--lr must be a finite number, got inf"),
    (["--study-name", ""], "--study-name must not be empty"),
    (["--grid", "lr=0.1", "--grid", "lr=0.2", "--family", "dense"], "--grid lr is given twice"),
    (["--width", "1000000000"], "parameters, over the limit of 100,000,000"),
    (["--device", "cuda"], "no CUDA device is available"),
    (["--storage", "postgresql://postgres:secret@127.0.0.1:{closed}/test"], "postgres:***@127.0.0.1"),
    (["--storage", "sqlite:///{tmp}/no/such/folder/s.db"], "does not exist"),
    (["--artifacts", "{tmp}/cache"], "--artifacts"),
])
@pytest.mark.slow
def test_bad_arguments_get_one_line_and_exit_2(tmp_path, cache, args, message, monkeypatch, capsys):
    """The command's main() in this process (the checks, without a subprocess's imports); the last case also runs
    as a user runs it, in its own process."""
    if "cuda" in args and torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device")
    (tmp_path / "cache").write_text("a file where a folder should be")
    args = ["--storage", f"sqlite:///{tmp_path / 's.db'}"] + [a.format(tmp=tmp_path, closed=closed_port())
                                                             for a in args]
    if args[-2:] == ["--artifacts", str(tmp_path / "cache")]:
        result = search(*args, cache=cache, check=False, cwd=tmp_path)
    else:
        result = search_here(*args, cache=cache, monkeypatch=monkeypatch, capsys=capsys, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and message in result.stderr
    assert "Traceback" not in result.stderr and "secret" not in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache"]  # nothing created: no database, no folder


def search_here(*args: str, cache: Path, monkeypatch, capsys, cwd: Path | None = None, task: str = "har",
                data: Path | None = None) -> subprocess.CompletedProcess:
    """search.<task>'s main() in this process (no interpreter start): returncode, stdout and stderr; its signal
    handlers are restored."""
    from search.cli import main
    if cwd is not None:
        monkeypatch.chdir(cwd)
    monkeypatch.setenv("DATA_CACHE", str(cache))
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        main(task, ["--data", str(data or TINY["har"]), *args])
        code = 0
    except SystemExit as exc:
        code = exc.code
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
    captured = capsys.readouterr()
    return subprocess.CompletedProcess(args, code, captured.out, captured.err)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
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
def test_continuation_on_other_data_seeds_or_pins_is_refused(tmp_path, har):
    config = StudyConfig("har", trials=1, storage=f"sqlite:///{tmp_path / 's.db'}", seeds=1, pruner="none",
                         fixed={"family": "linear", "epochs": 1})
    study = run_study(config, har, write=lambda line: None)
    before = dict(study.user_attrs)
    assert before["seeds"] == 1 and before["counts"] == har.counts() and len(before["fingerprint"]) == 64
    fewer = Task("har", head(har.train, 500), har.val, har.test, har.class_names, dict(har.info))
    shifted = Task("har", Split(har.train.x + 0.5, har.train.y, har.train.lengths), har.val, har.test,
                   har.class_names, dict(har.info))
    cases = [
        (replace(config, seeds=2), har, "was run with --seeds 1, got --seeds 2"),
        (config, fewer, "was run on other data: "),
        (config, shifted, "same class counts, other values"),
        (replace(config, fixed={"epochs": 1}), har, "was started with --family linear; this run does not give it"),
        (replace(config, fixed={**config.fixed, "lr": 0.01}), har, "was started without --lr"),
        (replace(config, metric="macro_f1"), har, "optimises accuracy"),
    ]
    for changed, task, message in cases:
        with pytest.raises(StudyError) as error:
            run_study(changed, task, write=lambda line: None)
        assert message in str(error.value) and "\n" not in str(error.value)
    again = optuna.load_study(study_name="har", storage=config.storage)
    assert again.user_attrs == before and len(again.trials) == 1  # nothing overwritten, nothing run


@pytest.mark.parametrize("files, message", [
    ({"English.txt": None}, "1 class (English); a classifier needs at least 2"),
    # Two surnames a language: one for training, one for the test split, none for validation.
    ({"English.txt": "Smith\nJones\n", "German.txt": "Muller\nSchmidt\n"}, "the validation split is empty"),
    ({"English.txt": None, "Czech.txt": "Novak\nSvoboda\nDvorak\n"}, "no test example of class Czech"),
])
@pytest.mark.slow
def test_too_little_data_is_refused_before_anything_is_created(tmp_path, cache, files, message, monkeypatch, capsys):
    folder = tmp_path / "names"
    folder.mkdir()
    for name, text in files.items():
        (folder / name).write_text(text if text is not None else (NAMES / name).read_text())
    work = tmp_path / "work"
    work.mkdir()
    result = search_here("--trials", "1", task="names", data=folder, cache=cache, monkeypatch=monkeypatch,
                         capsys=capsys, cwd=work)
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and message in result.stderr, result.stderr
    assert list(work.iterdir()) == []  # no studies.db, no artifacts/


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


@pytest.mark.slow
def test_in_memory_storage_runs_quietly_in_one_process_and_leaves_nothing_behind(tmp_path, cache, monkeypatch,
                                                                                 capsys):
    args = ["--storage", "sqlite://", "--trials", "2", "--family", "linear", "--epochs", "1", "--seeds", "1"]
    result = search(*args, cache=cache, cwd=tmp_path)  # the default --workers: one per core, here 1
    assert result.stderr == ""  # no heartbeat tracebacks ("no such table: trial_heartbeats")
    assert "study 'har': 2 trials {'complete': 2}" in result.stdout and "workers x" not in result.stdout
    # No figures in ./artifacts that no kept study references, and no dashboard suggested on an empty database.
    assert list(tmp_path.iterdir()) == []
    assert result.stdout.splitlines()[-1] == \
        "in-memory storage: the study ends with this run (--storage sqlite:///FILE keeps it)"
    assert "dashboard" not in result.stdout
    two = search_here(*args, "--workers", "2", cache=cache, monkeypatch=monkeypatch, capsys=capsys,
                      cwd=tmp_path)  # asked for: refused, not ignored
    assert two.returncode == 2 and two.stdout == "" and two.stderr == (
        "error: --workers 2: the in-memory storage 'sqlite://' exists in one process only; use --workers 1, or a "
        "SQLite file (--storage sqlite:///studies.db) for several\n")


PROGRESS_ARGS = ["--trials", "2", "--workers", "1", "--family", "linear", "--epochs", "2", "--seeds", "2",
                 "--strategy", "lockstep", "--pruner", "none"]


@pytest.mark.slow
def test_progress_through_a_pipe_is_plain_lines(tmp_path, cache):
    result = search("--storage", f"sqlite:///{tmp_path / 's.db'}", *PROGRESS_ARGS, cache=cache)
    assert "\r" not in result.stdout and "\x1b" not in result.stdout
    lines = result.stdout.splitlines()
    epochs = [re.fullmatch(r"trial +(\d) seed (\d) epoch (\d)/2 val accuracy 0\.\d{4} \| (no complete trial yet|"
                           r"best 0\.\d{4} \(#\d\))", line) for line in lines]
    assert sorted((int(m[1]), int(m[2]), int(m[3])) for m in epochs if m) == [
        (t, s, e) for t in range(2) for s in range(2) for e in (1, 2)]  # every seed-epoch: nothing lost
    assert sum(bool(re.match(r"trial +\d linear ", line)) for line in lines) == 2
    assert "best 0." in next(line for line in lines if line.startswith("trial    1 seed"))  # trial 0's value


@pytest.mark.slow
def test_progress_on_a_terminal_updates_one_line_in_place(tmp_path, cache):
    controller, terminal = pty.openpty()
    process = subprocess.Popen([sys.executable, "-m", "search.har", "--data", str(TINY["har"]), "--storage",
                                f"sqlite:///{tmp_path / 's.db'}", *PROGRESS_ARGS],
                               stdout=terminal, stderr=subprocess.PIPE, env={**os.environ, "DATA_CACHE": str(cache)})
    os.close(terminal)
    output = b""
    while True:
        try:
            chunk = os.read(controller, 65536)
        except OSError:  # EIO: the process closed the terminal
            break
        if not chunk:
            break
        output += chunk
    os.close(controller)
    assert process.wait(timeout=300) == 0, process.stderr.read()
    text = output.decode()
    updates = re.findall(r"\r(trial +\d seed \d epoch \d/2 val accuracy 0\.\d{4} \| [^\r\n]*?)\x1b\[K", text)
    assert len(updates) == 8  # rewritten in place: no newline between the seed-epochs of a trial
    assert all("\n" not in update for update in updates)
    ended = re.findall(r"\r(trial +\d linear [^\r\n]*)\x1b\[K\r?\n", text)  # each trial's line replaces it and stays
    assert len(ended) == 2


@pytest.mark.slow
def test_password_never_leaves_the_url(tmp_path, cache):
    """PostgreSQL with a password (trust auth accepts any): no output, attribute, note, figure or report shows it."""
    url = "postgresql://postgres:secret@127.0.0.1:5432/test"
    name = f"pytest-masked-{os.getpid()}-{time.time_ns()}"
    figures = tmp_path / "figures"
    outputs = []
    try:
        run = search("--storage", url, "--study-name", name, "--artifacts", str(figures), "--trials", "2",
                     "--workers", "2", "--family", "linear", "--epochs", "1", "--seeds", "1", cache=cache)
        outputs += [run.stdout, run.stderr]
        assert "postgres:***@127.0.0.1" in run.stdout
        report = subprocess.run([sys.executable, "-m", "search.report", "har", "--storage", url, "--study-name", name,
                                 "--seeds", "1", "--top", "1", "--out", str(tmp_path / "reports"), "--data", str(TINY["har"]),
                                 "--baselines", "none"],
                                capture_output=True, text=True, env={**os.environ, "DATA_CACHE": str(cache)},
                                timeout=600)
        outputs += [report.stdout, report.stderr]
        assert report.returncode == 0, report.stderr
        study = optuna.load_study(study_name=name, storage=url.replace(":secret", ""))
        outputs.append(json.dumps([study.user_attrs, study._storage.get_study_system_attrs(study._study_id)],
                                  default=str))  # notes are study system attributes
        outputs += [json.dumps([t.user_attrs, t.system_attrs], default=str) for t in study.trials]
        files = [p for p in tmp_path.rglob("*") if p.is_file()]
        assert any(p.suffix == ".md" for p in files) and len(list(figures.iterdir())) == 4
        leaks = [str(p) for p in files if b"secret" in p.read_bytes()]
        leaks += [text[max(0, text.find("secret") - 80):][:160] for text in outputs if "secret" in text]
        assert not leaks
    finally:
        optuna.delete_study(study_name=name, storage=url.replace(":secret", ""))


@pytest.mark.slow
def test_read_only_database_is_one_line(tmp_path, cache, monkeypatch, capsys):
    db = tmp_path / "s.db"
    optuna.create_study(storage=f"sqlite:///{db}", study_name="har")
    before = db.read_bytes()
    # mode=ro: SQLite refuses every write, even root's (chmod would not stop root).
    result = search_here("--storage", f"sqlite:///file:{db}?mode=ro&uri=true", "--family", "linear", "--trials", "1",
                         cache=cache, monkeypatch=monkeypatch, capsys=capsys, cwd=tmp_path)
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert "the database is read-only" in result.stderr and "Traceback" not in result.stderr
    assert db.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["s.db"]


@pytest.mark.slow
def test_a_class_without_training_examples_is_refused(tmp_path, har):
    keep = har.train.y != 5  # no LAYING window in training
    task = Task("har", Split(har.train.x[keep], har.train.y[keep], har.train.lengths[keep]), har.val, har.test,
                har.class_names, dict(har.info))
    config = StudyConfig("har", trials=1, storage=f"sqlite:///{tmp_path / 's.db'}", seeds=1,
                         artifact_dir=str(tmp_path / "figures"), fixed={"family": "linear", "epochs": 1})
    with pytest.raises(StudyError, match="no training example of class LAYING"):
        run_study(config, task, write=lambda line: None)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_the_recorded_command_holds_no_absolute_path_and_runs_again_as_written(monkeypatch, tmp_path):
    monkeypatch.setattr(sys, "argv", ["search/names.py", "--data", str(tmp_path / "names"), "--trials", "3"])
    words = StudyConfig(task="names").command.split()
    assert words[:3] == ["python", "-m", "search.names"] and not any(os.path.isabs(w) for w in words)
    # Relative to the working folder, '..' and all: from there the recorded command finds the same data.
    data = words[words.index("--data") + 1]
    assert data.startswith("..") and (Path.cwd() / data).resolve() == (tmp_path / "names").resolve()
    # A SQLite URL too: relative to the working folder, inside it or outside it.
    inside = Path.cwd() / "bench" / "spread" / "names-1.db"
    monkeypatch.setattr(sys, "argv", ["search/names.py", "--storage", f"sqlite:///{tmp_path / 's.db'}",
                                      "--storage", f"sqlite:///{inside}"])
    assert StudyConfig(task="names").command == (f"python -m search.names --storage sqlite:///{os.path.relpath(tmp_path / 's.db')} "
                                                 "--storage sqlite:///bench/spread/names-1.db")
