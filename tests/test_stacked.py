"""Seed stacking: seed s trained in a stack is the model seed s trained alone (real HAR and names data)."""
from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from conftest import head
from data import Split, Task
from search.stacked import StackedRun, use_stacked
from search.train import SeedRun, TrialSpec, train_seeds

SEEDS = [0, 1, 2]
CPU = torch.device("cpu")
# clipnorm 0.25 sits below the gradient norms of these runs (checked below), so clipping is active.
COMMON = dict(epochs=2, batch_size=64, lr=3e-3, clipnorm=0.25, weight_decay=1e-2)
CASES = {  # dropout > 0: each stacked seed draws its own masks, the ones it draws alone
    "dense": TrialSpec(family="dense", width=16, layers=2, dropout=0.3, imbalance="class_weights", **COMMON),
    "linear": TrialSpec(family="linear", imbalance="oversample", schedule="cosine", **COMMON),
    "conv1d": TrialSpec(family="conv1d", width=16, layers=2, pool=2, kernel_size=3, dropout=0.2, **COMMON),
}


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One torch thread: on this shared 2-core machine it is several times faster (bench/README.md)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def assert_same_results(alone, stacked, atol=1e-4):
    assert [r.seed for r in alone] == [r.seed for r in stacked]
    for a, s in zip(alone, stacked):
        assert a.status == s.status
        assert set(a.history) == set(s.history)
        assert a.confusion == s.confusion
        for key in a.history:
            assert len(a.history[key]) == len(s.history[key]), key
            if key != "epoch_seconds":  # timings differ; every other curve must match
                assert a.history[key] == pytest.approx(s.history[key], abs=atol, nan_ok=True), key
        assert (a.test is None) == (s.test is None)
        if a.test is not None:
            assert a.test["confusion"] == s.test["confusion"]
            assert a.test["loss"] == pytest.approx(s.test["loss"], abs=atol)


@pytest.mark.parametrize("family", sorted(CASES))
def test_stacked_seed_equals_seed_alone(small_har, family):
    spec = CASES[family]
    alone = [SeedRun(spec, small_har, seed, CPU) for seed in SEEDS]
    stack = StackedRun(spec, small_har, SEEDS, CPU)
    for _ in range(spec.epochs):
        for run in alone:
            run.train_epoch()
        stack.train_epoch()
    stack.unstack()
    assert_same_results([r.result for r in alone], [r.result for r in stack.runs])
    for run, stacked in zip(alone, stack.runs):
        assert max(run.result.history["grad_norm_max"]) > spec.clipnorm  # clipping changed the steps
        for (name, p), (_, q) in zip(run.model.named_parameters(), stacked.model.named_parameters()):
            torch.testing.assert_close(q, p, atol=1e-4, rtol=1e-4, msg=name)
    # three independent models, not one model three times
    assert len({round(r.result.history["val_loss"][-1], 6) for r in stack.runs}) == len(SEEDS)


def test_train_seeds_stacked_equals_sequential_with_callback_and_test(small_har):
    spec = replace(CASES["dense"], dropout=0.0)  # nn.Dropout(0) stays in the model: no draws, even under vmap
    seen = {"off": [], "on": []}

    def on_epoch(stack):
        def callback(epoch, results):
            seen[stack].append([r.history["val_accuracy"][-1] for r in results])
            return False
        return callback

    alone = train_seeds(spec, small_har, SEEDS, "cpu", on_epoch=on_epoch("off"), test=True, stack="off")
    stacked = train_seeds(spec, small_har, SEEDS, "cpu", on_epoch=on_epoch("on"), test=True, stack="on")
    assert [r.status for r in stacked] == ["finished"] * len(SEEDS)
    assert_same_results(alone, stacked)
    assert seen["on"] == seen["off"] and len(seen["on"]) == spec.epochs  # same confusions, same accuracies


def test_stop_and_divergence_match_sequential(small_har):
    spec = TrialSpec(family="linear", epochs=3, lr=1e37)  # weights overflow: the loss turns non-finite
    alone = train_seeds(spec, small_har, SEEDS, "cpu", stack="off")
    stacked = train_seeds(spec, small_har, SEEDS, "cpu", stack="on")
    assert all(r.status.startswith("diverged at epoch") for r in stacked)
    assert_same_results(alone, stacked)
    stop = lambda epoch, results: True  # noqa: E731  a pruner that stops after the first epoch
    spec = CASES["conv1d"]
    alone = train_seeds(spec, small_har, SEEDS, "cpu", on_epoch=stop, stack="off")
    stacked = train_seeds(spec, small_har, SEEDS, "cpu", on_epoch=stop, stack="on")
    assert [r.status for r in stacked] == ["stopped at epoch 1"] * len(SEEDS)
    assert_same_results(alone, stacked)


def every(split: Split, k: int) -> Split:
    """Every k-th example: the names splits are sorted by language, so a head would hold one class."""
    return Split(split.x[::k], split.y[::k], split.lengths[::k])


def test_variable_lengths_conv1d_names(names_task):
    """Surnames differ in length: each step's batches are cut to the longest among the seeds."""
    task = Task("names", every(names_task.train, 30), every(names_task.val, 12), head(names_task.test, 10),
                list(names_task.class_names))
    assert len(set(task.train.lengths.tolist())) > 1 and len(set(task.train.y.tolist())) > 10
    spec = TrialSpec(family="conv1d", width=16, layers=2, kernel_size=3, pool=2, dropout=0.25, epochs=2,
                     batch_size=32, clipnorm=1.0, weight_decay=1e-3, lr=3e-3)
    assert_same_results(train_seeds(spec, task, [3, 4], "cpu", stack="off"),
                        train_seeds(spec, task, [3, 4], "cpu", stack="on"))


def test_use_stacked_rule(small_har):
    dense, lstm = TrialSpec(family="dense", width=16), TrialSpec(family="lstm", width=16)
    assert use_stacked(dense, CPU, 3, "on") and not use_stacked(dense, CPU, 3, "off")
    assert not use_stacked(dense, CPU, 1, "on")  # one seed: nothing to stack
    assert not use_stacked(lstm, CPU, 3, "on")  # no vmap batching rule for aten::lstm
    normed = TrialSpec(family="conv1d", width=8, norm=True)
    assert not use_stacked(normed, CPU, 3, "on")  # vmap cannot update batch norm's running statistics in place
    assert use_stacked(replace(normed, norm=False), CPU, 3, "on")
    assert use_stacked(dense, CPU, 3, "auto") and not use_stacked(replace(dense, width=256), CPU, 3, "auto")
    assert use_stacked(replace(dense, width=256), torch.device("cuda"), 3, "auto")
    with pytest.raises(ValueError, match="stack must be one of"):
        use_stacked(dense, CPU, 3, "always")
    with pytest.raises(ValueError, match="stack must be one of.*'yes'"):
        train_seeds(dense, small_har, [0, 1], "cpu", stack="yes")
