"""search/train.py: the one training loop, on small real HAR and names subsets (600 windows, 2 epochs);
seeds trained together (stacked) against each seed trained alone."""
from __future__ import annotations

import dataclasses
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
from search.train import TrialSpec, epoch_order, log_prior, scores, stacks, train_seeds

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


# --- Seeds trained together (StackedRun) against each seed trained alone ---------------------------------

STACKED_SPECS = {
    "conv1d batch norm": TrialSpec(family="conv1d", layers=2, width=16, pool=2, norm=True, epochs=2, batch_size=64),
    "conv1d clipping": TrialSpec(family="conv1d", width=16, clipnorm=0.05, schedule="cosine", epochs=2,
                                 batch_size=64),
    "dense": TrialSpec(family="dense", layers=2, width=32, weight_decay=1e-2, imbalance="class_weights", epochs=2,
                       batch_size=64),
    "linear": TrialSpec(family="linear", imbalance="logit_adjust", epochs=2, batch_size=64),
    "conv1d n-grams": TrialSpec(family="conv1d", width=16, ngrams=3, epochs=2, batch_size=64),
}
# n-grams read one-hot characters: names only.
STACKED_CASES = [(task, name) for task in ("har", "names") for name, spec in STACKED_SPECS.items()
                 if task == "names" or not spec.ngrams]
CUDA = pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device"))


@pytest.fixture(scope="module")
def small_names(names_task):
    """A small real surname task with every language: up to 40 training surnames of each (lengths 2-19)."""
    y = names_task.train.y
    keep = torch.cat([torch.nonzero(y == c).flatten()[:40] for c in range(names_task.num_classes)])
    train = Split(names_task.train.x[keep], y[keep], names_task.train.lengths[keep])
    return Task("names", train, head(names_task.val, 300), head(names_task.test, 200), list(names_task.class_names))


@pytest.fixture
def no_tf32():
    """On CUDA, full float32 convolutions and matmuls: TF32 would round both paths to 1e-3, differently."""
    before = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = before


@pytest.fixture
def frozen_pre_norm_biases(monkeypatch):
    """Models as create_model builds them, except that a convolution's bias feeding batch norm is not trained.

    Batch norm subtracts the batch mean, so that bias's gradient is zero up to float rounding, and AdamW
    turns rounding noise into steps of about lr: any change in the order of a sum (vmap's grouped
    convolution, or the per-seed loop itself on 2 threads instead of 1) moves it by ~lr per step, and the
    running means with it (measured: 6e-3 in a bias, 1e-4 in a validation loss, after 2 epochs of the
    per-seed loop at 1 vs 2 threads). On names, where padding makes the bias matter in some batches, the
    noise reaches every weight. Freezing it removes the noise from both paths alike; every other part
    of batch norm (per-seed running statistics, batch statistics per width) is still compared.
    """
    import search.runs as runs_module  # where SeedRun (and so StackedRun's seeds) builds its model
    build = runs_module.create_model

    def create(spec, *args):
        model = build(spec, *args)
        if spec.norm:
            for module in model.modules():
                if isinstance(module, torch.nn.Conv1d):
                    module.bias.requires_grad_(False)
        return model

    monkeypatch.setattr(runs_module, "create_model", create)


def assert_same_seed(stacked, alone, histories: bool = True):
    assert stacked.seed == alone.seed and stacked.status == alone.status
    assert stacked.confusion == alone.confusion
    if histories:
        assert set(stacked.history) == set(alone.history)
        for key, values in without_times(alone.history).items():
            assert stacked.history[key] == pytest.approx(values, rel=1e-5, abs=1e-6, nan_ok=True), key
    # Logits to 5e-5 of the largest logit. Measured: below 1e-6 of it, except HAR conv1d with batch norm,
    # seed 1: 1.2e-5 on one validation window. There, at step 7, one activation lands on the other side of
    # a ReLU or max-pool kink (weights equal to 4e-8 before it; that step's gradient differs by 1e-3 of its
    # size, the next steps' by 1e-5): a float-rounding effect that any other summation order can have.
    for split, logits in alone.logits.items():
        torch.testing.assert_close(stacked.logits[split], logits, rtol=0, atol=5e-5 * float(logits.abs().max()))


@pytest.mark.usefixtures("no_tf32", "frozen_pre_norm_biases")
@pytest.mark.parametrize("device", ["cpu", CUDA])
@pytest.mark.parametrize("task_name, name", STACKED_CASES)
@pytest.mark.slow
def test_stacked_seeds_equal_seeds_trained_alone(task_name, name, device, small_har, small_names):
    """3 seeds as one vmapped computation: each seed's histories (losses, validation metrics, gradient
    norms before clipping), confusion and final validation and test logits are those of the seed alone."""
    task = small_har if task_name == "har" else small_names
    spec = STACKED_SPECS[name]
    stack = "auto" if device == "cuda" else "on"  # on CUDA the default stacks
    assert stacks(spec, task, 3, device, stack) and not stacks(spec, task, 3, device, "off")
    stacked = train_seeds(spec, task, [0, 1, 2], device, test=True, stack=stack)
    for seed, result in zip([0, 1, 2], stacked):
        (alone,) = train_seeds(spec, task, [seed], device, test=True)
        assert result.status == "finished" and result.test["confusion"] == alone.test["confusion"]
        for key in ("loss", "accuracy", "balanced_accuracy", "macro_f1", "recall", "precision", "f1"):
            assert result.test[key] == pytest.approx(alone.test[key], rel=1e-5, abs=1e-6), key
        assert_same_seed(result, alone)
    if task_name == "names" and name == "linear":  # a batch is cut to the longest among the seeds' batches
        assert len({int(l.max()) for l in task.train.lengths.split(64)}) > 1


@pytest.mark.parametrize("device", ["cpu", CUDA])
@pytest.mark.slow
def test_stacked_batch_norm_trains_each_seed_as_alone(device, small_har, no_tf32):
    """Batch norm as create_model builds it (convolution biases trained) on HAR, where every window is full
    length: each seed's training losses and gradient norms, and every weight and running variance, are
    those of the seed trained alone. The biases feeding batch norm and the running means are left out:
    their gradient is rounding noise, which AdamW amplifies (see frozen_pre_norm_biases)."""
    spec = STACKED_SPECS["conv1d batch norm"]
    task = Task("har", head(small_har.train, 301), head(small_har.val, 100), small_har.test, small_har.class_names)
    stacked = train_seeds(spec, task, [0, 1, 2], device, keep_models=True, stack="on")
    for seed, result in zip([0, 1, 2], stacked):
        (alone,) = train_seeds(spec, task, [seed], device, keep_models=True)
        for key in ("train_loss", "grad_norm", "grad_norm_max"):
            assert result.history[key] == pytest.approx(alone.history[key], rel=1e-5), key
        mine, theirs = result.model.state_dict(), alone.model.state_dict()
        noisy = {name for name in theirs if name.startswith("convs.") and name.endswith(".bias")}
        noisy |= {name for name in theirs if name.endswith("running_mean")}
        for name in set(theirs) - noisy:
            torch.testing.assert_close(mine[name], theirs[name], rtol=1e-5, atol=1e-6, msg=name)


@pytest.mark.slow
def test_recurrent_models_fall_back_to_one_model_per_seed(small_har):
    for spec in (rnn(epochs=1), rnn(family="gru", epochs=1, frontend=8, norm=True)):
        assert not stacks(spec, small_har, 2, "cpu", "on")
    together = train_seeds(rnn(epochs=1), small_har, [0, 1], stack="on")
    apart = train_seeds(rnn(epochs=1), small_har, [0, 1], stack="off")
    for a, b in zip(together, apart):
        assert without_times(a.history) == without_times(b.history) and a.confusion == b.confusion


@pytest.mark.slow
def test_stacked_dropout_draws_each_seed_its_own_masks(small_har):
    """With dropout a stacked seed gets other masks than alone (vmap draws them), so only the run is checked."""
    spec = dataclasses.replace(STACKED_SPECS["conv1d batch norm"], dropout=0.3, epochs=1)
    results = train_seeds(spec, small_har, [0, 1], stack="on")
    assert [r.status for r in results] == ["finished"] * 2
    assert all(math.isfinite(r.history["train_loss"][0]) for r in results)
    assert results[0].history["train_loss"] != results[1].history["train_loss"]


def test_seeds_stack_by_default_only_on_cuda(small_har):
    spec = STACKED_SPECS["conv1d batch norm"]
    assert not stacks(spec, small_har, 3, "cpu")  # the CPU default path is the per-seed loop
    assert stacks(spec, small_har, 3, torch.device("cuda"))  # the decision only: nothing runs on the device
    assert not stacks(spec, small_har, 1, torch.device("cuda"), "on")  # one seed: nothing to stack
    assert not stacks(spec, small_har, 3, torch.device("cuda"), "off")
    with pytest.raises(ValueError, match="stack must be one of"):
        stacks(spec, small_har, 3, "cpu", "always")


def drawn_by_one_seed(task: Task, seeds: list[int], diverging: int) -> int:
    """A training example that only seed `diverging` draws in its first (oversampled) epoch."""
    drawn = {seed: set(epoch_order(task.train, task.num_classes, True, torch.Generator().manual_seed(seed)).tolist())
             for seed in seeds}
    others = set().union(*(drawn[seed] for seed in seeds if seed != diverging))
    return min(drawn[diverging] - others)


@pytest.mark.usefixtures("frozen_pre_norm_biases")
@pytest.mark.parametrize("name", ["dense", "conv1d batch norm"])
@pytest.mark.slow
def test_one_diverging_seed_leaves_the_others_as_they_are(name, small_har):
    """A NaN in an example only seed 1 draws: seed 1 diverges; seeds 0 and 2 are what they are when the
    three train one model each (their slices of the stacked tensors never see seed 1's NaN)."""
    spec = dataclasses.replace(STACKED_SPECS[name], imbalance="oversample")
    x = small_har.train.x.clone()
    x[drawn_by_one_seed(small_har, [0, 1, 2], diverging=1), 64, 2] = float("nan")
    task = Task("har", Split(x, small_har.train.y, small_har.train.lengths), small_har.val, small_har.test,
                small_har.class_names)
    stacked = train_seeds(spec, task, [0, 1, 2], stack="on")
    apart = train_seeds(spec, task, [0, 1, 2], stack="off")
    assert [r.status for r in stacked] == [r.status for r in apart] == ["finished", "diverged at epoch 1", "finished"]
    assert math.isnan(stacked[1].history["train_loss"][0])
    for k in (0, 2):
        assert all(math.isfinite(v) for v in stacked[k].history["train_loss"])
        assert_same_seed(stacked[k], apart[k])
