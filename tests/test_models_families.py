"""The time-series families (fcn, resnet, inception, minirocket): closed-form parameter counts, padding
invariance on real windows, MiniRocket's transform against aeon's, weights that reload, seeds that stack."""
from __future__ import annotations

import io
import itertools

import numpy as np
import pytest
import torch

from conftest import head
from data import Task
from models import ModelSpec, create_model, module_param_count, param_count
from models.inception import odd_kernels
from models.minirocket import KERNELS, fit_dilations, quantiles
from search.train import TrialSpec, stacks, train_seeds

pytestmark = pytest.mark.usefixtures("one_torch_thread")

NEW = ("fcn", "resnet", "inception", "minirocket")


@pytest.mark.slow
def test_closed_form_counts_equal_the_built_modules(names_task):
    checked = 0
    for family, layers, width, kernel, inputs in itertools.product(NEW, (1, 2, 3, 4, 6), (1, 4, 9), (1, 8, 40),
                                                                   (1, 9, names_task.input_size)):
        spec = ModelSpec(family, layers=layers, width=width, kernel_size=kernel)
        built = module_param_count(create_model(spec, inputs, 6, 128))
        assert param_count(spec, inputs, 6, 128) == built, spec
        checked += 1
    assert checked == 4 * 5 * 3 * 3 * 3


def test_counts_of_the_published_architectures_by_hand():
    # FCN 128/256/128, kernels 8/5/3, bias-free convolutions, batch norm, 9 channels in, 6 classes.
    fcn = 8 * 9 * 128 + 5 * 128 * 256 + 3 * 256 * 128 + 2 * (128 + 256 + 128) + 128 * 6 + 6
    assert param_count(ModelSpec("fcn", layers=3, width=128), 9, 6, 128) == fcn
    # ResNet 64/128/128: three convolutions and their batch norms per block, a 1x1 shortcut where channels change.
    block = lambda i, o: 8 * i * o + 5 * o * o + 3 * o * o + (i * o if i != o else 0) + 4 * 2 * o  # noqa: E731
    assert param_count(ModelSpec("resnet", layers=3, width=64), 9, 6, 128) == \
        block(9, 64) + block(64, 128) + block(128, 128) + 128 * 6 + 6
    # InceptionTime's network: kernels 39/19/9 behind a 32-channel bottleneck, 128 channels out, depth 6.
    assert odd_kernels(40) == [39, 19, 9] and odd_kernels(41) == [41, 19, 9] and odd_kernels(5) == [5, 1, 1]
    module = lambda i: i * 32 + (39 + 19 + 9) * 32 * 32 + i * 32 + 2 * 128  # noqa: E731
    shortcuts = 9 * 128 + 2 * 128 + 128 * 128 + 2 * 128
    assert param_count(ModelSpec("inception", layers=6, width=32, kernel_size=40), 9, 6, 128) == \
        module(9) + 5 * module(128) + shortcuts + 128 * 6 + 6
    # MiniRocket: 84 kernels x 119 features (9,996), only the linear classifier is trained.
    assert param_count(ModelSpec("minirocket", width=119), 9, 6, 128) == 84 * 119 * 6 + 6


PADDING_SPECS = [ModelSpec("fcn", layers=3, width=8), ModelSpec("resnet", layers=2, width=6),
                 ModelSpec("inception", layers=3, width=4, kernel_size=10),
                 ModelSpec("inception", layers=4, width=4, kernel_size=40), ModelSpec("minirocket", width=12)]


@pytest.mark.parametrize("spec", PADDING_SPECS, ids=lambda s: f"{s.family}-l{s.layers}-k{s.kernel_size}")
def test_a_window_padded_in_a_longer_batch_gets_its_logits_alone(spec, har_task):
    """Real HAR windows cut to 37 and 90 steps, batched (zero-padded to 128) with full windows: in eval mode
    each gets the logits it gets alone, after a training-mode batch has set batch norm's statistics (and
    MiniRocket's biases)."""
    part = head(har_task.val, 64)
    torch.manual_seed(0)
    model = create_model(spec, har_task.input_size, har_task.num_classes, har_task.seq_len)
    with torch.no_grad():
        model(part.x, part.lengths)
    model.eval()
    lengths = torch.tensor([128, 37, 90, 128])
    x = part.x[:4] * (torch.arange(128)[None, :, None] < lengths[:, None, None])
    with torch.no_grad():
        batch = model(x, lengths)
        for row in range(4):
            n = int(lengths[row])
            alone = model(x[row:row + 1, :n], lengths[row:row + 1])
            torch.testing.assert_close(batch[row:row + 1], alone, rtol=0, atol=2e-5)
    assert not torch.allclose(batch[1], batch[0])


def test_minirocket_dilations_and_quantiles_are_aeons():
    from aeon.transformations.collection.convolution_based._minirocket import _fit_dilations, _quantiles
    for seq_len, width in ((128, 119), (150, 24), (29, 7), (100, 1), (9, 40)):
        dilations, counts = _fit_dilations(seq_len, KERNELS * width, 32)
        assert fit_dilations(seq_len, width) == (dilations.tolist(), counts.tolist())
    np.testing.assert_array_equal(quantiles(500).numpy(), _quantiles(500))


@pytest.mark.slow  # aeon compiles its transform with numba on first use
@pytest.mark.parametrize("dataset, width", [("gunpoint", 24), ("basic_motions", 20)])
def test_minirocket_transform_is_aeons_given_its_random_choices(dataset, width):
    """With aeon's fitted channels and biases copied in, the torch transform gives aeon's features
    (a UCR problem with one channel and a UEA one with six, both shipped in aeon's wheel)."""
    from aeon import datasets
    from aeon.transformations.collection.convolution_based import MiniRocket
    X, _ = getattr(datasets, f"load_{dataset}")(split="train")
    X = X[:12].astype(np.float32)
    rocket = MiniRocket(n_kernels=KERNELS * width, random_state=0).fit(X)
    expected = rocket.transform(X)
    per_combination, channel_indices, dilations, counts, biases = rocket.parameters
    model = create_model(ModelSpec("minirocket", width=width), X.shape[1], 2, X.shape[2]).eval()
    assert model.dilations == dilations.tolist() and model.counts == counts.tolist()
    channels = torch.zeros_like(model.channels).view(-1, X.shape[1])
    ends = np.cumsum(per_combination)
    for combination, (start, end) in enumerate(zip(ends - per_combination, ends)):
        channels[combination, channel_indices[start:end]] = 1.0
    state = model.state_dict() | {"channels": channels.view_as(model.channels), "biases": torch.from_numpy(biases),
                                  "fitted": torch.tensor(True)}
    model.load_state_dict(state)
    found = model.transform(torch.from_numpy(X).transpose(1, 2), torch.full((len(X),), X.shape[2])).numpy()
    assert found.shape == expected.shape == (12, KERNELS * width)
    # aeon sums in another order (fastmath): a step equal to a bias up to rounding may count on either side.
    assert np.abs(found - expected).max() <= 1 / X.shape[2] + 1e-6
    assert np.mean(found != expected) < 1e-3


def test_minirocket_fits_its_biases_on_random_examples_of_the_whole_training_split(har_task):
    part = head(har_task.train, 96)
    torch.manual_seed(0)
    model = create_model(ModelSpec("minirocket", width=8), har_task.input_size, har_task.num_classes, 128)
    model.eval()(part.x[:8], part.lengths[:8])
    model.train()(part.x[:8], part.lengths[:8])
    assert not model.fitted and not model.biases.any()  # a forward pass never fits
    torch.manual_seed(1)
    model.fit_features(part.x, part.lengths)
    fitted = model.biases.clone()
    assert model.fitted and fitted.unique().numel() > 0.9 * fitted.numel()
    # The first dilation's biases: numpy's quantiles of kernel k's output on a window drawn at random from the
    # whole split (torch's generator), over its real steps, at MiniRocket's quantiles.
    torch.manual_seed(1)
    pick = torch.randint(len(part), (KERNELS,))
    assert len(set(pick.tolist())) > 40  # not the first few windows: most of the 96
    count = model.counts[0]
    weights = model.channels[0][:, :, None] * model.weights[:, None, :]
    conv = torch.nn.functional.conv1d(part.x.transpose(1, 2), weights, padding=4).numpy()
    q = quantiles(KERNELS * count).numpy().reshape(KERNELS, count)
    expected = [np.quantile(conv[i, k, :int(part.lengths[i])], q[k]) for k, i in enumerate(pick.tolist())]
    np.testing.assert_allclose(fitted[:KERNELS * count].numpy(), np.concatenate(expected), rtol=1e-5, atol=1e-5)


def test_minirocket_starts_its_head_at_ridge_on_a_small_training_split(small_har, monkeypatch):
    """fit_features with labels: the features standardised by the training split's statistics (in training mode
    too), and the head is scikit-learn's ridge classifier on them, alpha chosen as RidgeClassifierCV chooses it."""
    from sklearn.linear_model import RidgeClassifier, RidgeClassifierCV
    import models.minirocket as minirocket
    train, val = head(small_har.train, 300), head(small_har.val, 100)
    torch.manual_seed(0)
    model = create_model(ModelSpec("minirocket", width=8), small_har.input_size, small_har.num_classes, 128)
    model.fit_features(train.x, train.lengths, train.y)
    features = model.transform(train.x, train.lengths).double()
    torch.testing.assert_close(model.norm.running_mean.double(), features.mean(0), rtol=1e-5, atol=1e-6)
    z = ((features - features.mean(0)) / torch.sqrt(features.var(0, unbiased=False) + model.norm.eps)).numpy()
    searched = RidgeClassifierCV(alphas=minirocket.ALPHAS.numpy()).fit(z, train.y.numpy())
    assert model.alpha == pytest.approx(searched.alpha_)
    ridge = RidgeClassifier(alpha=model.alpha).fit(z, train.y.numpy())
    held_out = model.transform(val.x, val.lengths).double()
    z_val = ((held_out - features.mean(0)) / torch.sqrt(features.var(0, unbiased=False) + model.norm.eps)).numpy()
    with torch.no_grad():
        logits = model.eval()(val.x, val.lengths)
        trained_mode = model.train()(val.x, val.lengths)
    np.testing.assert_allclose(logits.double().numpy(), ridge.decision_function(z_val), rtol=0, atol=1e-4)
    assert torch.equal(trained_mode, logits)  # no batch statistics in training mode (dropout 0)
    # Above RIDGE_MOST examples the Gram matrix would cost too much: the head keeps its initialisation.
    monkeypatch.setattr(minirocket, "RIDGE_MOST", 100)
    torch.manual_seed(0)
    model = create_model(ModelSpec("minirocket", width=8), small_har.input_size, small_har.num_classes, 128)
    start = model.head.weight.clone()
    model.fit_features(train.x, train.lengths, train.y)
    assert torch.equal(model.head.weight, start) and bool(model.fitted)


def test_minirocket_trains_on_the_same_features_whatever_its_batch_size(small_har):
    """The training loop fits the biases once, before the first batch: a seed's features do not depend on the
    batch size (MiniRocket's, not 8 windows' when batches hold 8)."""
    task = Task("har", head(small_har.train, 64), head(small_har.val, 16), small_har.test, small_har.class_names)
    models = [train_seeds(TrialSpec(family="minirocket", width=4, epochs=1, batch_size=size), task, [3],
                          keep_models=True)[0].model for size in (8, 64)]
    assert bool(models[0].fitted) and torch.equal(models[0].biases, models[1].biases)


def test_minirocket_computes_each_examples_features_once(har_task):
    """Epochs after the first train the head alone: an example's features are kept once the biases are fitted,
    read back in any batch order, and computed afresh when the biases change (reloaded weights)."""
    part = head(har_task.train, 64)
    torch.manual_seed(0)
    model = create_model(ModelSpec("minirocket", width=8), har_task.input_size, har_task.num_classes, 128).train()
    model(part.x[:32], part.lengths[:32])
    assert not model.cache  # nothing kept before the biases are fitted: they would change
    model.fit_features(part.x, part.lengths)
    first = model.cached(part.x, part.lengths)
    assert len(model.cache) == 64
    torch.testing.assert_close(first, model.transform(part.x, part.lengths), rtol=0, atol=0)
    order = torch.randperm(64)
    assert torch.equal(model.cached(part.x[order], part.lengths[order]), first[order])
    state = model.state_dict()
    model.load_state_dict(state | {"biases": state["biases"] + 0.05})
    moved = model.cached(part.x, part.lengths)
    assert not torch.equal(moved, first)
    torch.testing.assert_close(moved, model.transform(part.x, part.lengths), rtol=0, atol=0)


@pytest.mark.parametrize("family", NEW)
@pytest.mark.slow
def test_weights_reload_into_a_model_built_with_another_seed(family, small_har):
    """As an exported model is loaded: create_model, then load_state_dict from torch.load(weights_only=True);
    MiniRocket's random channels and fitted biases travel in the state dict."""
    task = Task("har", head(small_har.train, 128), head(small_har.val, 40), small_har.test, small_har.class_names)
    spec = TrialSpec(family=family, layers=3, width=4, kernel_size=10, epochs=1)
    (result,) = train_seeds(spec, task, [3], keep_models=True)
    buffer = io.BytesIO()
    torch.save(result.model.state_dict(), buffer)
    torch.manual_seed(1234)
    fresh = create_model(spec, task.input_size, task.num_classes, task.seq_len)
    fresh.load_state_dict(torch.load(io.BytesIO(buffer.getvalue()), weights_only=True))
    with torch.inference_mode():
        torch.testing.assert_close(fresh.eval()(task.val.x, task.val.lengths),
                                   result.model(task.val.x, task.val.lengths), rtol=0, atol=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("family", NEW)
def test_stacked_seeds_train_as_each_seed_alone(family, small_har):
    """The families train their seeds as one vmapped computation (on CUDA by default) and each seed is the
    model it is when trained alone: losses, validation logits, and MiniRocket's biases. 100 windows in batches of
    32: each seed's short batch comes at its own step, where the seeds train in groups."""
    task = Task("har", head(small_har.train, 100), head(small_har.val, 40), small_har.test, small_har.class_names)
    spec = TrialSpec(family=family, layers=3, width=4, kernel_size=10, epochs=2, batch_size=32)
    assert stacks(spec, task, 2, "cpu", "on")
    stacked = train_seeds(spec, task, [0, 1], keep_models=True, stack="on")
    for seed, result in zip([0, 1], stacked):
        (alone,) = train_seeds(spec, task, [seed], keep_models=True)
        assert result.history["train_loss"] == pytest.approx(alone.history["train_loss"], rel=1e-4)
        torch.testing.assert_close(result.logits["val"], alone.logits["val"], rtol=0,
                                   atol=1e-4 * float(alone.logits["val"].abs().max()))
        if family == "minirocket":
            assert torch.equal(result.model.biases, alone.model.biases) and bool(result.model.fitted)
