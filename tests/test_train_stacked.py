"""search/train.py's stacked seeds: seeds trained together as one vmapped computation (StackedRun), on small real
HAR and names subsets, against each seed trained alone (histories, confusions, logits, weights); the models that
fall back to one model per seed, when seeds stack by default, and one diverging seed beside the others."""
from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from conftest import head
from data import Split, Task
from search.train import TrialSpec, epoch_order, stacks, train_seeds
from test_train import rnn, without_times

pytestmark = pytest.mark.usefixtures("one_torch_thread")


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
