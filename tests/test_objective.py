"""search/objective.py on the default path (racing + Hyperband), deterministically: a trial raced out,
a trial pruned, and pruning that compares trials of different epoch budgets at the same share of them."""
from __future__ import annotations

import optuna
import pytest
from optuna.trial import TrialState, create_trial

import torch

from data import Split, Task
from search.objective import Objective, budget_step
from search.tasks import HAR
from search.study import make_pruner
from search.train import train_seeds

pytestmark = [pytest.mark.usefixtures("one_torch_thread"),
              pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")]
LINEAR = {"family": "linear", "epochs": 4, "batch_size": 64, "clipnorm": 0.0, "schedule": "constant",
          "weight_decay": 1e-6, "imbalance": "none", "decision": "argmax"}


def study(tmp_path, max_epochs: int) -> optuna.Study:
    return optuna.create_study(storage=f"sqlite:///{tmp_path / 's.db'}", direction="maximize",
                               pruner=make_pruner("hyperband", max_epochs),
                               sampler=optuna.samplers.TPESampler(seed=0))


def objective(task, seeds: int, lr: float) -> Objective:
    return Objective(task, HAR.space, seeds=seeds, metric="accuracy", strategy="racing",
                     fixed={**LINEAR, "lr": lr}, max_epochs=4)


@pytest.mark.slow
def test_a_trial_below_the_median_of_finished_trials_is_raced_out_after_its_first_seed(small_har, tmp_path):
    s = study(tmp_path, 4)
    for _ in range(5):  # finished trials that no linear model on 600 windows reaches
        s.add_trial(create_trial(value=0.99))
    s.optimize(objective(small_har, seeds=3, lr=1e-2), n_trials=1)
    trial = s.trials[-1]
    assert trial.state == TrialState.PRUNED
    assert trial.user_attrs["ended"] == "raced out after 1 of 3 seeds"
    assert trial.user_attrs["seeds"] == [0] and trial.user_attrs["seed_epochs"] == 4  # seeds 1, 2 never trained


@pytest.mark.slow
def test_a_warm_start_is_never_raced_out(small_har, tmp_path):
    """The same trial as above, queued as a warm start (search/study.py queue_warm_start): all seeds train."""
    s = study(tmp_path, 4)
    for _ in range(5):
        s.add_trial(create_trial(value=0.99))
    s.enqueue_trial({}, user_attrs={"warm_start": True})
    s.optimize(objective(small_har, seeds=3, lr=1e-2), n_trials=1)
    trial = s.trials[-1]
    assert trial.state == TrialState.COMPLETE and trial.user_attrs["ended"] == "finished"
    assert trial.user_attrs["seeds"] == [0, 1, 2] and trial.user_attrs["seed_epochs"] == 12
    assert trial.value < 0.99  # below the bar that races out the same trial when it is not a warm start


@pytest.mark.slow
def test_a_good_trial_runs_every_seed_and_completes(small_har, tmp_path):
    s = study(tmp_path, 4)
    for _ in range(5):
        s.add_trial(create_trial(value=0.2))
    s.optimize(objective(small_har, seeds=2, lr=1e-2), n_trials=1)
    trial = s.trials[-1]
    assert trial.state == TrialState.COMPLETE and trial.user_attrs["seeds"] == [0, 1]
    assert trial.value == pytest.approx(sum(trial.user_attrs["seed_metrics"]["accuracy"]) / 2)


@pytest.mark.slow
def test_after_its_first_seed_passes_the_other_seeds_train_in_one_call(small_har, tmp_path, monkeypatch):
    """The bar is checked once, after seed 0; seeds 1..K-1 then train together (stacked on CUDA)."""
    import search.objective
    calls = []

    def recording(spec, task, seeds, *args, **kwargs):
        calls.append(list(seeds))
        return train_seeds(spec, task, seeds, *args, **kwargs)

    monkeypatch.setattr(search.objective, "train_seeds", recording)
    s = study(tmp_path, 4)
    for _ in range(5):
        s.add_trial(create_trial(value=0.2))
    s.optimize(objective(small_har, seeds=3, lr=1e-2), n_trials=1)
    assert calls == [[0], [1, 2]]
    assert s.trials[-1].state == TrialState.COMPLETE and s.trials[-1].user_attrs["seeds"] == [0, 1, 2]


@pytest.mark.slow
def test_a_trial_far_behind_at_a_rung_is_pruned_there_unless_it_is_a_warm_start(small_har, tmp_path):
    s = study(tmp_path, 4)
    s.optimize(objective(small_har, seeds=1, lr=1e-2), n_trials=8)
    assert all(t.state == TrialState.COMPLETE for t in s.trials)
    train = small_har.train
    shuffled = Split(train.x, train.y[torch.randperm(len(train.y), generator=torch.Generator().manual_seed(0))],
                     train.lengths)  # labels that say nothing about the windows
    noise = Task("har", shuffled, small_har.val, small_har.test, small_har.class_names, small_har.info)
    s.optimize(objective(noise, seeds=1, lr=1e-2), n_trials=1)
    trial = s.trials[-1]
    assert trial.state == TrialState.PRUNED and trial.user_attrs["ended"].startswith("pruned at epoch ")
    assert trial.user_attrs["seed_epochs"] < 4

    s.enqueue_trial({}, user_attrs={"warm_start": True})  # the same hopeless trial as a warm start
    s.optimize(objective(noise, seeds=1, lr=1e-2), n_trials=1)
    warm = s.trials[-1]
    assert warm.state == TrialState.COMPLETE and warm.user_attrs["seed_epochs"] == 4
    assert sorted(warm.intermediate_values) == [1, 2, 3, 4]  # reported like any trial: the pruner saw it
    assert warm.value < min(t.value for t in s.trials if t.state == TrialState.COMPLETE and t.number != warm.number)


def curve(epochs: int, gain: float) -> list[float]:
    """A validation curve that rises linearly with the share of the budget trained: gain per whole budget."""
    return [0.5 + gain * epoch / epochs for epoch in range(1, epochs + 1)]


def pruned_epoch(s: optuna.Study, values: list[float], step) -> int | None:
    """Report a curve as the objective does; the epoch at which the pruner stops it (None: never)."""
    trial = s.ask()
    for epoch, value in enumerate(values, start=1):
        trial.report(value, step(epoch, len(values)))
        if epoch < len(values) and trial.should_prune():
            s.tell(trial, state=TrialState.PRUNED)
            return epoch
    s.tell(trial, values[-1])
    return None


@pytest.mark.parametrize("rule", ["share of the budget", "epoch"])
@pytest.mark.slow
def test_a_slower_but_better_long_budget_curve_is_not_pruned_by_construction(tmp_path, rule):
    """10-epoch trials gain 0.40 over their budget; a 20-epoch trial gains 0.42 over its own, so after any
    number of epochs it is behind them, yet at every share of its budget it is ahead."""
    s = study(tmp_path, 20)
    if rule == "share of the budget":
        step = lambda epoch, epochs: budget_step(epoch, epochs, max_epochs=20)  # noqa: E731
    else:
        step = lambda epoch, epochs: epoch  # noqa: E731
    for _ in range(12):
        assert pruned_epoch(s, curve(10, 0.40), step) is None  # the short trials all complete
    stopped = [pruned_epoch(s, curve(20, 0.42), step) for _ in range(6)]
    if rule == "share of the budget":
        assert stopped == [None] * 6
    else:  # compared epoch for epoch with trials further along: pruned, which is what the objective avoids
        assert any(epoch is not None for epoch in stopped)
