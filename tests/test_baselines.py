"""Classical baselines on real data, by the task's kind: surname decoding and the n-gram logreg (text); window
features, the SVM, boosted trees and MiniRocket (series: HAR, UCR/UEA problems from aeon's wheel); choice on
validation only."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from aeon.datasets import load_classification
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.model_selection import train_test_split

from conftest import NAMES_DIR, head
from data import Split, Task
from data.names import encode
from search.baselines import (UNKNOWN_CHAR, best_index, main, minirocket, run_baselines, surnames,
                              window_features)
from search.train import scores

SERIES_BASELINES = ["features-svm-rbf", "features-hgb", "minirocket"]


def ucr_task(name: str, seed: int = 0) -> Task:
    """A UCR/UEA problem shipped in aeon's wheel as a series Task: 20 % of its training file (stratified) is the
    validation split, its test file the test split; channels standardised on training; zero-padded."""
    x_train, y_train = load_classification(name, split="train")
    x_test, y_test = load_classification(name, split="test")
    classes = sorted(set(y_train))
    train, val = train_test_split(np.arange(len(y_train)), test_size=0.2, stratify=y_train, random_state=seed)
    width = max(series.shape[-1] for series in [*x_train, *x_test])
    values = np.concatenate([x_train[i] for i in train], axis=1)
    mean, std = values.mean(1), values.std(1)

    def split(xs, ys) -> Split:
        x = np.zeros((len(xs), width, xs[0].shape[0]), dtype=np.float32)
        for i, series in enumerate(xs):
            x[i, :series.shape[1]] = (series.T - mean) / std
        return Split(torch.from_numpy(x), torch.tensor([classes.index(c) for c in ys]),
                     torch.tensor([series.shape[1] for series in xs]))
    return Task(name, split([x_train[i] for i in train], y_train[train]), split([x_train[i] for i in val], y_train[val]),
                split(list(x_test), list(y_test)), classes,
                {"kind": "series", "standardisation": {"mean": mean.tolist(), "std": std.tolist()}})


def accuracy(task: Task, split: str, logprob: np.ndarray) -> float:
    return scores(getattr(task, split).y.numpy(), logprob.argmax(1), task.num_classes)["accuracy"]


def har_features_before(split: Split, info: dict) -> np.ndarray:
    """The HAR-only features the generic window features replaced, kept as the reference they must equal."""
    channels = info["channels"]
    raw = split.x.numpy().astype(np.float64) * np.asarray(info["standardisation"]["std"]) + \
        np.asarray(info["standardisation"]["mean"])
    xyz = {s: raw[:, :, [channels.index(f"{s}_{axis}") for axis in "xyz"]] for s in ("body_acc", "body_gyro", "total_acc")}
    signals = np.concatenate([raw, np.stack([np.linalg.norm(v, axis=2) for v in xyz.values()], axis=2)], axis=2)
    features = [signals.mean(1), signals.std(1), signals.min(1), signals.max(1)]
    features += list(np.percentile(signals, [10, 25, 50, 75, 90], axis=1))
    power = np.abs(np.fft.rfft(signals, axis=1)) ** 2 / signals.shape[1]
    frequency = np.fft.rfftfreq(signals.shape[1], d=1 / 50)
    bands = [(0, 1), (1, 3), (3, 6), (6, 12), (12, 25.01)]
    features += [np.log1p(power[:, (frequency >= low) & (frequency < high)].sum(1)) for low, high in bands]
    gravity = xyz["total_acc"].mean(1)
    gravity /= np.maximum(np.linalg.norm(gravity, axis=1, keepdims=True), 1e-12)
    return np.concatenate(features + [gravity, np.arccos(np.clip(gravity, -1, 1))], axis=1)


def alphabet_index(alphabet: str) -> dict[str, int]:
    return {ch: i + 1 for i, ch in enumerate(alphabet)}


@pytest.mark.slow
def test_surnames_decode_and_reencode_to_the_same_tensor(names_task):
    alphabet = names_task.info["alphabet"]
    names = surnames(names_task.train, alphabet)
    x, lengths = encode(names, alphabet_index(alphabet), names_task.seq_len)
    assert len(names) == len(names_task.train)
    assert torch.equal(x, names_task.train.x) and torch.equal(lengths, names_task.train.lengths)


def test_a_character_outside_the_alphabet_decodes_to_the_unknown_character(names_task):
    alphabet = names_task.info["alphabet"]
    assert "#" not in alphabet
    x, lengths = encode(["Ab#c"], alphabet_index(alphabet), names_task.seq_len)
    assert surnames(Split(x, torch.zeros(1, dtype=torch.long), lengths), alphabet) == [f"Ab{UNKNOWN_CHAR}c"]


@pytest.mark.slow
def test_names_logreg_beats_the_majority_class_and_returns_log_probabilities(small_names_task):
    results = run_baselines(small_names_task, quick=True, metric="balanced_accuracy")
    assert [r.name for r in results] == ["char-ngram-logreg", "char-ngram-logreg-balanced"]
    y_val = small_names_task.val.y.numpy()
    majority = np.full_like(y_val, np.bincount(small_names_task.train.y.numpy()).argmax())
    majority_balanced = scores(y_val, majority, 18)["balanced_accuracy"]  # 1/18
    for result in results:
        assert result.val_logprob.shape == (len(small_names_task.val), 18)
        assert result.test_logprob.shape == (len(small_names_task.test), 18)
        for logprob in (result.val_logprob, result.test_logprob):
            np.testing.assert_allclose(np.exp(logprob).sum(1), 1, atol=1e-6)
        assert result.chosen["C"] in (1, 10) and f"C={result.chosen['C']}" in result.description
        assert scores(y_val, result.val_logprob.argmax(1), 18)["balanced_accuracy"] > 3 * majority_balanced


@pytest.fixture(scope="module")
def small_har_baselines(small_har):
    return run_baselines(small_har, quick=True)


def test_window_features_equal_the_har_features_they_replaced(small_har):
    features = window_features(small_har.train, small_har.info)
    np.testing.assert_array_equal(features, har_features_before(small_har.train, small_har.info))
    assert features.shape == (len(small_har.train), 174) and np.isfinite(features).all()
    gravity = features[:, -6:-3]  # unit vector of the mean total acceleration, in g
    np.testing.assert_allclose(np.linalg.norm(gravity, axis=1), 1, atol=1e-6)
    # Unstandardised: the mean total_acc magnitude (feature 11 of the means) is about 1 g at rest or walking.
    assert 0.8 < features[:, 11].mean() < 1.2


def test_window_features_of_one_unnamed_channel_read_the_raw_series():
    task = ucr_task("GunPoint")
    features = window_features(task.train, task.info)  # no channel names, no xyz triplet: 14 features
    raw, labels = load_classification("GunPoint", split="train")
    assert features.shape == (len(task.train), 14) and np.isfinite(features).all()
    first = train_test_split(np.arange(len(raw)), test_size=0.2, stratify=labels, random_state=0)[0][0]
    np.testing.assert_allclose(features[0, :4], [raw[first, 0].mean(), raw[first, 0].std(), raw[first, 0].min(),
                                                  raw[first, 0].max()], rtol=1e-5, atol=1e-6)


def test_window_features_ignore_the_padding_of_unequal_lengths():
    task = ucr_task("JapaneseVowels")  # 12 channels, 7 to 29 steps
    split = head(task.train, 40)
    assert len(set(split.lengths.tolist())) > 5
    longer = Split(torch.nn.functional.pad(split.x, (0, 0, 0, 11)), split.y, split.lengths)
    features = window_features(split, task.info)
    np.testing.assert_array_equal(window_features(longer, task.info), features)
    one = Split(split.x[:1, :split.lengths[0]], split.y[:1], split.lengths[:1])  # the first series, unpadded
    np.testing.assert_allclose(window_features(one, task.info)[0], features[0], rtol=1e-10)


@pytest.mark.slow
def test_minirocket_reaches_0_9_test_accuracy_on_gunpoint():
    task = ucr_task("GunPoint")  # univariate, 2 classes, 40 training series
    result = minirocket(task, "accuracy", quick=True, refit=True)
    for split, logprob in (("val", result.val_logprob), ("test", result.test_logprob),
                           ("test", result.refit_test_logprob)):
        assert logprob.shape == (len(getattr(task, split)), 2)
        np.testing.assert_allclose(np.exp(logprob).sum(1), 1, atol=1e-6)
    assert accuracy(task, "test", result.test_logprob) >= 0.9
    assert accuracy(task, "test", result.refit_test_logprob) >= 0.9
    assert "n_kernels=1000, random_state=0; 924 features" in result.description and result.chosen["alpha"] in np.logspace(-3, 3, 10)


@pytest.mark.slow
def test_minirocket_takes_unequal_lengths_padded():
    task = ucr_task("JapaneseVowels")  # 12 channels, 9 classes, 7 to 29 steps zero-padded to 29
    assert task.train.lengths.min() < task.seq_len
    result = minirocket(task, "accuracy", quick=True)
    assert result.test_logprob.shape == (len(task.test), 9)
    assert accuracy(task, "test", result.test_logprob) >= 0.9  # chance: about 1/9


@pytest.mark.slow
def test_minirocket_is_reproducible_and_seeded():
    task = ucr_task("BasicMotions")
    first, again = minirocket(task, "accuracy", quick=True), minirocket(task, "accuracy", quick=True)
    np.testing.assert_array_equal(first.test_logprob, again.test_logprob)
    other = minirocket(task, "accuracy", quick=True, seed=1)
    assert not np.array_equal(other.val_logprob, first.val_logprob)


@pytest.mark.slow
def test_har_baselines_beat_chance(small_har, small_har_baselines):
    by_name = {r.name: r for r in small_har_baselines}
    assert list(by_name) == SERIES_BASELINES
    for result in small_har_baselines:
        assert result.val_logprob.shape == (len(small_har.val), 6)
        assert result.test_logprob.shape == (len(small_har.test), 6)
    for name in ("features-svm-rbf", "minirocket"):  # chance is 1/6
        assert accuracy(small_har, "val", by_name[name].val_logprob) > 3 / 6, name
        assert accuracy(small_har, "test", by_name[name].test_logprob) > 3 / 6, name


@pytest.mark.slow
def test_baselines_follow_the_kind_never_the_name(small_har, names_task):
    series = Task("my-recordings", head(small_har.train, 120), head(small_har.val, 60), head(small_har.test, 60),
                  list(small_har.class_names), {"kind": "series", "file": "my.npz",
                                                "standardisation": small_har.info["standardisation"]})
    results = run_baselines(series, quick=True)
    assert [r.name for r in results] == SERIES_BASELINES
    assert results[0].val_logprob.shape == (60, 6) and "gravity" not in results[0].description  # no channel names
    text = Task("har", head(names_task.train, 600), head(names_task.val, 200), head(names_task.test, 200),
                list(names_task.class_names), {**names_task.info, "kind": "text", "file": "har.csv"})
    assert [r.name for r in run_baselines(text, quick=True)] == ["char-ngram-logreg", "char-ngram-logreg-balanced"]


@pytest.mark.slow
def test_the_choice_uses_the_validation_split_only(small_har, small_har_baselines):
    generator = torch.Generator().manual_seed(0)
    test = small_har.test
    scrambled = Split(test.x[torch.randperm(len(test), generator=generator)],
                      test.y[torch.randperm(len(test), generator=generator)], test.lengths)
    task = Task("har", small_har.train, small_har.val, scrambled, list(small_har.class_names), dict(small_har.info))
    again = run_baselines(task, quick=True)
    assert [r.name for r in again] == SERIES_BASELINES
    for before, after in zip(small_har_baselines, again):
        assert after.chosen == before.chosen
        np.testing.assert_array_equal(after.val_logprob, before.val_logprob)
        assert not np.array_equal(after.test_logprob, before.test_logprob)


@pytest.mark.slow
def test_refit_fits_the_chosen_model_again_on_training_and_validation(small_har, small_har_baselines):
    refitted = run_baselines(small_har, quick=True, refit=True)
    for before, after in zip(small_har_baselines, refitted):
        assert before.refit_test_logprob is None and after.chosen == before.chosen
        np.testing.assert_array_equal(after.test_logprob, before.test_logprob)  # the plain fit is unchanged
        assert after.refit_test_logprob.shape == after.test_logprob.shape
        assert not np.allclose(after.refit_test_logprob, after.test_logprob)  # 200 more windows moved it
    # The gradient-boosted trees (deterministic) refitted by hand with the chosen hyper-parameters.
    hgb = next(r for r in refitted if r.name == "features-hgb")
    features = {s: window_features(getattr(small_har, s), small_har.info) for s in ("train", "val", "test")}
    by_hand = HistGradientBoostingClassifier(max_leaf_nodes=hgb.chosen["max_leaf_nodes"], max_iter=hgb.chosen["max_iter"],
                                             early_stopping=False, random_state=0)
    by_hand.fit(np.concatenate([features["train"], features["val"]]),
                np.concatenate([small_har.train.y.numpy(), small_har.val.y.numpy()]))
    np.testing.assert_allclose(np.exp(hgb.refit_test_logprob), by_hand.predict_proba(features["test"]), atol=1e-9)


def test_best_index_takes_the_best_validation_score_and_the_first_on_ties():
    y_val = np.array([0, 0, 0, 1])
    always_0 = np.log(np.array([[0.9, 0.1]] * 4))
    perfect = np.log(np.array([[0.9, 0.1]] * 3 + [[0.1, 0.9]]))
    assert best_index([always_0, perfect, perfect], y_val, "accuracy", 2) == 1
    assert best_index([always_0, always_0], y_val, "balanced_accuracy", 2) == 0


@pytest.mark.slow
def test_cli_bad_metric_and_missing_data_exit_2_with_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["names", "--metric", "auc"])
    assert exc.value.code == 2 and "--metric" in capsys.readouterr().err
    assert main(["names", "--data", str(tmp_path / "absent")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error:") and "absent" in err


@pytest.mark.slow
def test_cli_prints_one_line_per_baseline(tmp_path, capsys):
    small = tmp_path / "names"  # the first 60 lines of every real language file
    small.mkdir()
    for file in sorted(NAMES_DIR.glob("*.txt")):
        lines = file.read_text(encoding="utf-8").splitlines()[:60]
        (small / file.name).write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert main(["names", "--data", str(small), "--quick", "--metric", "accuracy"]) == 0
    out = capsys.readouterr().out
    assert "char-ngram-logreg " in out and "char-ngram-logreg-balanced" in out and "test acc" in out


@pytest.mark.slow
def test_cli_on_one_class_data_gives_the_studies_data_check(tmp_path, capsys):
    one = tmp_path / "names"
    one.mkdir()
    (one / "English.txt").write_bytes((NAMES_DIR / "English.txt").read_bytes())
    assert main(["names", "--data", str(one), "--quick"]) == 2
    captured = capsys.readouterr()
    assert captured.err == f"error: data {one}: 1 class (English); a classifier needs at least 2\n"  # not scikit-learn's
    assert captured.out == ""


def test_a_warm_path_fits_each_value_from_the_last_optimum_to_the_same_optima(small_names_task):
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from search.baselines import chosen_by_validation, surnames, warm_path
    alphabet = small_names_task.info["alphabet"]
    vectoriser = TfidfVectorizer(analyzer="char_wb", ngram_range=(1, 3))
    x = {"train": vectoriser.fit_transform(surnames(small_names_task.train, alphabet)),
         "val": vectoriser.transform(surnames(small_names_task.val, alphabet))}
    grid = [0.1, 1, 10]
    cold = [LogisticRegression(C=c, solver="newton-cg", max_iter=1000).fit(x["train"], small_names_task.train.y.numpy())
            for c in grid]
    make = warm_path(LogisticRegression(solver="newton-cg", max_iter=1000, warm_start=True))
    warm = [make(c) for c in grid]
    assert len({id(m) for m in warm}) == 3 and [m.C for m in warm] == grid  # a copy per value
    best, model, _ = chosen_by_validation(warm_path(LogisticRegression(solver="newton-cg", max_iter=1000,
                                                                       warm_start=True)),
                                          grid, x, small_names_task, "accuracy")
    cold_best, _, _ = chosen_by_validation(lambda c: LogisticRegression(C=c, solver="newton-cg", max_iter=1000),
                                           grid, x, small_names_task, "accuracy")
    assert best == cold_best and model.C == grid[best]
    # The same optimum up to the solver's tolerance: the same validation predictions but for a rare near-tie.
    assert np.mean(model.predict(x["val"]) == cold[best].predict(x["val"])) > 0.99
