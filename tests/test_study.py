"""Studies on the real data: persistence, resume, workers, time limits, warm starts, fixed parameters, divergence,
pruning, reproducibility, and continuations refused. The helpers that run the commands (search, search_here) and
the module's fixtures (cache, har) are shared with test_study_cli.py and test_study_interrupts.py."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import optuna
import pytest

from conftest import head
from data import Split, Task
from search.study import StudyConfig, StudyError, create_study, run_study


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
