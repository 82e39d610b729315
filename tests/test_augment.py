"""search/augment.py: shift, scaling and jitter of real HAR windows, applied to training batches only."""
from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from conftest import head
from data import Split, Task
from search.augment import augment, jitter, scale, shift
from search.train import DeviceSplit, TrialSpec, predict, train_seeds

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def windows(har_task):
    """64 real validation windows, the odd ones cut to 50..113 steps (zero padding after, as loaders pad)."""
    part = head(har_task.val, 64)
    lengths = torch.where(torch.arange(64) % 2 == 1, 50 + torch.arange(64), 128)
    x = part.x * (torch.arange(128)[None, :, None] < lengths[:, None, None])
    return x, lengths


@pytest.mark.slow
def test_shift_rolls_each_window_within_its_real_steps(windows):
    x, lengths = windows
    torch.manual_seed(0)
    out = shift(x, lengths, 0.1)
    assert out.shape == x.shape
    rolls = []
    for row in range(len(x)):
        n = int(lengths[row])
        matches = [s for s in range(n) if torch.equal(out[row, :n], torch.roll(x[row, :n], s, 0))]
        assert len(matches) == 1, row  # exactly one roll of the real steps
        roll = matches[0] if matches[0] <= n // 2 else matches[0] - n
        assert abs(roll) <= round(0.1 * n), (row, roll)
        rolls.append(roll)
        assert not out[row, n:].any()  # padding stays zero
    assert min(rolls) < 0 < max(rolls)  # both ways


@pytest.mark.slow
def test_scale_multiplies_each_channel_of_each_window_by_one_factor(windows):
    x, _ = windows
    torch.manual_seed(0)
    out = scale(x, 0.2)
    factors = out[:, 0] / x[:, 0]  # (B, F): the first step is real in every window
    torch.testing.assert_close(out, x * factors[:, None, :])
    assert 0.1 < float(factors.std()) < 0.3 and abs(float(factors.mean()) - 1) < 0.05


def test_jitter_adds_noise_of_half_the_strength_to_real_steps_only(windows):
    x, lengths = windows
    torch.manual_seed(0)
    noise = jitter(x, lengths, 0.2) - x
    real = torch.arange(128)[None, :] < lengths[:, None]
    assert not noise[~real].any()
    assert float(noise[real].std()) == pytest.approx(0.1, rel=0.05)


def test_strength_zero_is_the_batch_itself_and_a_negative_one_is_refused(windows):
    x, lengths = windows
    assert augment(x, lengths, 0.0) is x
    torch.manual_seed(0)
    out = augment(x, lengths, 0.1)
    assert not torch.equal(out, x) and not out[torch.arange(128)[None, :] >= lengths[:, None]].any()
    for bad in (-0.1, math.inf, True, "0.1"):
        with pytest.raises(ValueError, match="augment must be a finite float >= 0, got"):
            augment(x, lengths, bad)
        with pytest.raises(ValueError, match="augment must be a finite float >= 0, got"):
            TrialSpec(family="conv1d", augment=bad)


def test_stacked_batches_keep_their_leading_dimension(windows):
    x, lengths = windows
    torch.manual_seed(0)
    out = augment(torch.stack([x, x]), torch.stack([lengths, lengths]), 0.1)
    assert out.shape == (2, *x.shape)
    assert not torch.equal(out[0], out[1])  # each seed its own draws


@pytest.mark.slow
@pytest.mark.parametrize("stack", ["off", "on"])
def test_only_training_batches_are_augmented(small_har, stack):
    """Trained with augmentation, each seed's recorded validation and test logits are those of its model on
    the splits as they are; and augmentation did change training."""
    task = Task("har", head(small_har.train, 256), head(small_har.val, 100), head(small_har.test, 100),
                small_har.class_names)
    spec = TrialSpec(family="conv1d", layers=2, width=8, norm=True, epochs=2, augment=0.2)
    results = train_seeds(spec, task, [0, 1], test=True, keep_models=True, stack=stack)
    plain = train_seeds(dataclasses.replace(spec, augment=0.0), task, [0, 1], stack=stack)
    for result, other in zip(results, plain):
        for name in ("val", "test"):
            clean = predict(result.model, DeviceSplit(getattr(task, name), torch.device("cpu")))
            torch.testing.assert_close(result.logits[name], clean, rtol=0, atol=1e-6)
        assert result.history["train_loss"] != other.history["train_loss"]
    again = train_seeds(spec, task, [0, 1], stack=stack)
    assert [r.history["train_loss"] for r in again] == [r.history["train_loss"] for r in results]


@pytest.mark.slow
def test_validation_windows_reach_the_model_unchanged(small_har):
    """The validation split is passed to the model as it is, whatever the strength (here: a batch norm-free
    model whose logits on a window do not depend on its batch, compared with one call on all windows)."""
    task = Task("har", head(small_har.train, 64), Split(small_har.val.x[:50], small_har.val.y[:50],
                                                        small_har.val.lengths[:50]),
                small_har.test, small_har.class_names)
    spec = TrialSpec(family="dense", width=8, epochs=1, augment=0.5)
    (result,) = train_seeds(spec, task, [0], keep_models=True)
    with torch.inference_mode():
        direct = result.model.eval()(task.val.x, task.val.lengths)
    torch.testing.assert_close(result.logits["val"], direct, rtol=0, atol=1e-6)
