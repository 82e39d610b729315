"""search/train.py: the one training loop, on a small real HAR subset (600 windows, 2 epochs): histories, seeds,
divergence, pruning, imbalance handling and the test split; the scores it reports, checked against scikit-learn,
and the logit-adjusted decision. Seeds trained together (stacked): test_train_stacked.py."""
from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics import accuracy_score, balanced_accuracy_score, confusion_matrix, f1_score

from conftest import head
from data import Split, Task
from search.decision import choose_tau, decide, frontier
from search.train import TrialSpec, epoch_order, log_prior, scores, train_seeds


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def load_reference():
    """bench/reference.py: the loop before the device-resident rewrite (a yardstick, not a package)."""
    path = Path(__file__).resolve().parents[1] / "bench" / "reference.py"
    spec = importlib.util.spec_from_file_location("reference", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


HISTORY_KEYS = {"train_loss", "val_loss", "val_accuracy", "val_balanced_accuracy", "val_macro_f1", "grad_norm"}


def rnn(**changes) -> TrialSpec:
    return TrialSpec(**({"family": "rnn", "width": 16, "epochs": 2, "batch_size": 64, "lr": 3e-3} | changes))


def without_times(history: dict[str, list[float]]) -> dict[str, list[float]]:
    return {key: values for key, values in history.items() if key != "epoch_seconds"}


@pytest.fixture(scope="module")
def two_seeds(small_har, one_torch_thread):
    return train_seeds(rnn(), small_har, [0, 1])


@pytest.mark.slow
def test_history_has_one_value_per_epoch(two_seeds, small_har):
    for result in two_seeds:
        assert result.status == "finished"
        assert HISTORY_KEYS <= set(result.history)
        for key in HISTORY_KEYS:
            assert len(result.history[key]) == 2, key
            assert all(math.isfinite(v) for v in result.history[key]), key
        assert 0 <= result.final["accuracy"] <= 1 and 0 <= result.final["balanced_accuracy"] <= 1
        assert sum(map(sum, result.confusion)) == len(small_har.val)
        assert result.test is None  # test=False: the test split is not touched


@pytest.mark.slow
def test_same_seed_same_metrics_other_seed_other_metrics(two_seeds, small_har):
    again = train_seeds(rnn(), small_har, [0, 1])
    for first, second in zip(two_seeds, again):
        assert without_times(first.history) == without_times(second.history)
        assert first.confusion == second.confusion
    assert two_seeds[0].history["train_loss"] != two_seeds[1].history["train_loss"]
    assert two_seeds[0].history["val_loss"] != two_seeds[1].history["val_loss"]


@pytest.mark.slow
def test_grad_norm_is_recorded_before_clipping(small_har):
    (clipped,) = train_seeds(rnn(clipnorm=1e-4, epochs=1), small_har, [0])
    (free,) = train_seeds(rnn(epochs=1), small_har, [0])
    assert clipped.history["grad_norm"][0] > 100 * 1e-4
    assert clipped.history["grad_norm_max"][0] >= clipped.history["grad_norm"][0]
    # The first batch's gradient is the same with or without clipping; later ones differ: it did clip.
    assert clipped.history["train_loss"] != free.history["train_loss"]


@pytest.mark.slow
def test_huge_learning_rate_diverges(small_har):
    (result,) = train_seeds(TrialSpec(family="dense", width=16, epochs=3, lr=1e30), small_har, [0])
    assert result.status == "diverged at epoch 1"
    assert len(result.history["train_loss"]) == 1 and math.isnan(result.history["train_loss"][0])


@pytest.mark.slow
def test_non_finite_input_diverges_and_stops_every_seed(small_har):
    x = small_har.train.x.clone()
    x[300, 64, 2] = float("nan")  # one bad sample in one real window
    poisoned = Task("har", Split(x, small_har.train.y, small_har.train.lengths), small_har.val, small_har.test,
                    small_har.class_names)
    results = train_seeds(rnn(epochs=3), poisoned, [0, 1], test=True)
    assert [r.status for r in results] == ["diverged at epoch 1"] * 2
    assert all(len(r.history["val_loss"]) == 1 for r in results)
    assert all(r.test is None for r in results)  # no test metrics for a diverged run


@pytest.mark.slow
def test_on_epoch_may_stop_the_run(small_har):
    calls = []

    def prune(epoch, results):
        calls.append((epoch, [r.history["val_accuracy"][-1] for r in results]))
        return True

    results = train_seeds(rnn(epochs=5), small_har, [0, 1], on_epoch=prune)
    assert [epoch for epoch, _ in calls] == [1]
    assert len(calls[0][1]) == 2
    assert [r.status for r in results] == ["stopped at epoch 1"] * 2
    assert all(len(r.history["train_loss"]) == 1 for r in results)


def imbalanced(small_har) -> Task:
    """Half the WALKING windows only appear in training at one in four: an imbalanced training split."""
    y = small_har.train.y
    keep = torch.nonzero((y != 0) | (torch.arange(len(y)) % 4 == 0)).flatten()
    train = Split(small_har.train.x[keep], y[keep], small_har.train.lengths[keep])
    return Task("har", train, head(small_har.val, 200), head(small_har.test, 200), small_har.class_names)


@pytest.mark.parametrize("imbalance", ["oversample", "class_weights", "logit_adjust"])
@pytest.mark.slow
def test_imbalance_handling_changes_training_only(imbalance, small_har):
    task = imbalanced(small_har)
    val_x, val_y, val_counts = task.val.x.clone(), task.val.y.clone(), task.counts()["val"]
    (plain,) = train_seeds(rnn(), task, [0])
    (handled,) = train_seeds(rnn(imbalance=imbalance), task, [0])
    assert handled.history["train_loss"] != plain.history["train_loss"]
    assert torch.equal(task.val.x, val_x) and torch.equal(task.val.y, val_y)
    assert task.counts()["val"] == val_counts
    for result in (plain, handled):  # validation still counts every true class as it is
        assert [sum(row) for row in result.confusion] == val_counts


def test_oversampling_draws_every_class_about_equally(small_har):
    task = imbalanced(small_har)
    counts = task.counts()["train"]
    assert max(counts) > 1.4 * min(counts)
    order = epoch_order(task.train, 6, oversample=True, generator=torch.Generator().manual_seed(0))
    drawn = torch.bincount(task.train.y[order], minlength=6).tolist()
    assert len(order) == len(task.train)
    assert max(drawn) < 1.5 * min(drawn), drawn
    plain = epoch_order(task.train, 6, oversample=False, generator=torch.Generator().manual_seed(0))
    assert sorted(plain.tolist()) == list(range(len(task.train)))


def labels_of(confusion: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    pairs = [(t, p) for t, row in enumerate(confusion) for p, n in enumerate(row) for _ in range(n)]
    return np.array([t for t, _ in pairs]), np.array([p for _, p in pairs])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_scores_equal_scikit_learns(seed):
    """search.train.scores counts with one bincount (fast, after every epoch); scikit-learn is the reference."""
    rng = np.random.default_rng(seed)
    y_true, y_pred = rng.integers(0, 5, 300), rng.integers(0, 6, 300)  # class 5 predicted, never true
    found = scores(y_true, y_pred, 6)
    present = np.unique(y_true)
    assert found["accuracy"] == pytest.approx(accuracy_score(y_true, y_pred))
    with pytest.warns(UserWarning):  # y_pred has a class y_true lacks; recall is over y_true's classes
        assert found["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y_true, y_pred))
    assert found["macro_f1"] == pytest.approx(f1_score(y_true, y_pred, labels=present, average="macro"))
    assert found["confusion"] == confusion_matrix(y_true, y_pred, labels=range(6)).tolist()
    acc, bal = found["accuracy"], found["balanced_accuracy"]
    assert found["acc_bal_hmean"] == pytest.approx(2 * acc * bal / (acc + bal))


def test_acc_bal_hmean_is_low_when_either_is():
    """The names default metric: a model that buys balanced accuracy with accuracy does not win."""
    # 90 examples of class 0, 10 of class 1. All-majority: accuracy 0.9, balanced 0.5.
    y_true = np.array([0] * 90 + [1] * 10)
    majority = scores(y_true, np.zeros(100, dtype=int), 2)
    # Recall 1.0 on class 1 and 0.5 on class 0: balanced 0.75, accuracy 0.55.
    flipped = scores(y_true, np.array([0] * 45 + [1] * 45 + [1] * 10), 2)
    # Recall 0.9 and 0.7: accuracy 0.88, balanced 0.8, better than both.
    good = scores(y_true, np.array([0] * 81 + [1] * 9 + [1] * 7 + [0] * 3), 2)
    assert majority["acc_bal_hmean"] == pytest.approx(2 * 0.9 * 0.5 / 1.4)
    assert flipped["balanced_accuracy"] > majority["balanced_accuracy"]
    assert good["acc_bal_hmean"] > max(majority["acc_bal_hmean"], flipped["acc_bal_hmean"])


def test_scores_of_a_hand_made_confusion_matrix():
    confusion = [[5, 1, 0],
                 [2, 3, 1],
                 [0, 0, 4]]
    found = scores(*labels_of(confusion), num_classes=3)
    assert found["confusion"] == confusion
    assert found["accuracy"] == pytest.approx(12 / 16)
    assert found["balanced_accuracy"] == pytest.approx((5 / 6 + 3 / 6 + 4 / 4) / 3)
    # By hand, class 0: precision 5/7, recall 5/6 -> F1 = 2*5/(7+6) = 10/13.
    assert found["macro_f1"] == pytest.approx((10 / 13 + 6 / 10 + 8 / 9) / 3)


def test_scores_average_over_classes_present_in_the_truth():
    # Class 1 never occurs in the truth (but is predicted once); class 3 occurs but is never predicted.
    confusion = [[3, 1, 0, 0],
                 [0, 0, 0, 0],
                 [1, 0, 2, 0],
                 [0, 0, 2, 0]]
    found = scores(*labels_of(confusion), num_classes=4)
    assert found["balanced_accuracy"] == pytest.approx((3 / 4 + 2 / 3 + 0) / 3)
    # F1 = 2 TP / (support + predicted): class 0 6/8, class 2 4/7, class 3 0.
    assert found["macro_f1"] == pytest.approx((6 / 8 + 4 / 7 + 0) / 3)
    assert found["accuracy"] == pytest.approx(5 / 9)


def test_logit_adjustment_with_tau_zero_is_the_plain_argmax():
    logits = torch.randn(50, 4, generator=torch.Generator().manual_seed(0))
    prior = torch.tensor([0.7, 0.2, 0.05, 0.05]).log()
    assert np.array_equal(decide(logits, prior, 0.0), logits.argmax(1).numpy())


def test_larger_tau_raises_minority_recall():
    """A constructed case: the rare class scores half a logit behind on its own examples, and 15 common
    examples look exactly like them."""
    y = np.array([0] * 90 + [1] * 10)
    logits = torch.zeros(100, 2)
    logits[:, 0] = 3.0
    logits[75:, 0], logits[75:, 1] = 1.0, 0.5
    prior = log_prior(Split(torch.zeros(100, 1, 1), torch.as_tensor(y), torch.ones(100, dtype=torch.long)), 2)
    points = {p["tau"]: p for p in frontier(logits, y, prior, taus=(0.0, 0.25, 1.0))}
    recall_rare = {tau: float((decide(logits, prior, tau)[90:] == 1).mean()) for tau in points}
    assert recall_rare[0.0] == 0.0 and recall_rare[0.25] == recall_rare[1.0] == 1.0
    assert points[1.0]["balanced_accuracy"] > points[0.0]["balanced_accuracy"]
    assert points[1.0]["accuracy"] < points[0.0]["accuracy"]  # bought with accuracy on the common class
    tau, values = choose_tau([logits], y, prior, "balanced_accuracy", taus=(0.0, 0.25, 1.0))
    assert tau == 0.25 and values == [points[0.25]["balanced_accuracy"]]  # ties: the smallest tau
    assert choose_tau([logits], y, prior, "accuracy", taus=(0.0, 0.25, 1.0))[0] == 0.0


@pytest.mark.parametrize("spec", [rnn(clipnorm=0.5), TrialSpec(family="conv1d", width=16, epochs=2, norm=True,
                                                                   dropout=0.2, batch_size=64)])
@pytest.mark.slow
def test_sync_free_loop_matches_a_per_batch_reference(spec, small_har):
    task = Task("har", head(small_har.train, 300), head(small_har.val, 200), small_har.test, small_har.class_names)
    (result,) = train_seeds(spec, task, [5])
    expected = load_reference().reference_history(spec, task, 5)
    for key, values in expected.items():
        assert result.history[key] == pytest.approx(values, rel=1e-5, abs=1e-6), key


@pytest.mark.slow
def test_should_stop_interrupts_between_batches(small_har):
    asked = []

    def stop() -> bool:
        asked.append(True)
        return len(asked) > 2  # the third batch

    with pytest.raises(KeyboardInterrupt):
        train_seeds(rnn(epochs=1), small_har, [0], should_stop=stop)
    assert len(asked) == 3


@pytest.mark.slow
def test_test_split_only_when_asked(small_har):
    (tested,) = train_seeds(rnn(epochs=1), small_har, [3], test=True)
    (untested,) = train_seeds(rnn(epochs=1), small_har, [3])
    assert untested.test is None
    assert {"loss", "accuracy", "balanced_accuracy", "macro_f1", "recall", "confusion"} <= set(tested.test)
    assert sum(map(sum, tested.test["confusion"])) == len(small_har.test)
    assert len(tested.test["recall"]) == small_har.num_classes
    # Evaluating the test split does not change the validation results.
    assert without_times(tested.history) == without_times(untested.history)
