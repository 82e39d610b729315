"""Classical baselines on the same splits, chosen by the task's kind: character n-grams for text, window
features and MiniRocket for numeric series.

    python -m search.baselines TASK [--data PATH] [--metric M] [--quick]

Every model is fitted on the training split only; its few hyper-parameters are chosen by one
validation metric (the same `scores` the neural search uses, on the argmax of the returned
probabilities); the test split is only predicted, once, by the chosen model. Each baseline returns
log-probabilities for validation and test, so a report can compute any metric or shift the logits.
With refit (a report's default, as for its networks), the chosen model is also refitted on the
training and validation rows together, and its test log-probabilities are returned beside.

- text: TF-IDF of character 1-5-grams (`char_wb`, sublinear tf) + logistic regression, plain and
  with class weights inversely proportional to the training class frequencies.
- series: features of each window (`window_features`) + an RBF SVM (Platt-calibrated probabilities)
  and HistGradientBoosting (its number of iterations chosen from one fit's staged predictions); and
  MiniRocket (Dempster et al. 2021), the field's standard: aeon's transform + RidgeClassifierCV, which
  chooses its alpha by leave-one-out on the training split as aeon's MiniRocketClassifier does.
"""
from __future__ import annotations

import argparse
import copy
import sys
import time
from dataclasses import dataclass

import numpy as np
from aeon.transformations.collection.convolution_based import MiniRocket
from scipy.special import log_softmax
from sklearn.base import clone
from sklearn.calibration import CalibratedClassifierCV
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression, RidgeClassifierCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC
from threadpoolctl import threadpool_limits

from data import DataError, Split, Task
from .options import common
from .objective import METRICS
from .checks import check_data
from .studyconfig import StudyError
from .tasks import REGISTRY, SERIES, TEXT, entry_of, load
from .train import scores

# The grids searched on validation. quick=True: two values where there is a choice, for tests.
GRIDS = {
    False: {"logreg_C": [0.3, 1, 3, 10, 30, 100, 300], "svm_C": [1, 3, 10, 30, 100, 300, 1000, 3000],
            "hgb_max_leaf_nodes": [15, 31], "hgb_max_iter": [100, 200, 300], "minirocket_kernels": 10_000},
    True: {"logreg_C": [1, 10], "svm_C": [1, 100], "hgb_max_leaf_nodes": [15], "hgb_max_iter": [20, 40],
           "minirocket_kernels": 1_000},
}
UNKNOWN_CHAR = "\ufffd"  # what slot 0 (a character outside the training alphabet) decodes to
# FFT bands as fractions of the Nyquist frequency: HAR's 0-1, 1-3, 3-6, 6-12 and 12-25 Hz at 50 Hz.
# Each band runs from its edge to the next; the last one includes Nyquist.
BAND_EDGES = (0.0, 0.04, 0.12, 0.24, 0.48)
QUANTILES = [10, 25, 50, 75, 90]
GRAVITY_SENSOR = "total_acc"  # an xyz triplet whose mean is the gravity direction (HAR's total acceleration)
MINIROCKET_MIN_LENGTH = 9  # aeon's MiniRocket kernels span 9 steps: shorter series are zero-padded to 9
# aeon compiles MiniRocket's numba functions with cache=True: one compilation per environment (next to aeon's
# code, or in the user's cache when that is read-only), so no NUMBA_CACHE_DIR is needed here.


@dataclass
class BaselineResult:
    name: str  # "char-ngram-logreg", "char-ngram-logreg-balanced", "features-svm-rbf", "features-hgb", "minirocket"
    description: str  # one line: features, model, the hyper-parameters chosen and the grid they were chosen from
    chosen: dict  # the chosen hyper-parameters
    val_logprob: np.ndarray  # (N_val, C) log-probabilities on the validation split
    test_logprob: np.ndarray  # (N_test, C) log-probabilities on the test split
    seconds: float  # fit time, including the validation search (and the refit)
    refit_test_logprob: np.ndarray | None = None  # (N_test, C): the chosen model refitted on train + validation


def surnames(split: Split, alphabet: str) -> list[str]:
    """The strings behind one-hot rows: slot i > 0 is alphabet[i - 1], slot 0 the unknown character."""
    slots = split.x.argmax(dim=2).tolist()
    return ["".join(alphabet[i - 1] if i > 0 else UNKNOWN_CHAR for i in row[:length])
            for row, length in zip(slots, split.lengths.tolist())]


def channel_names(split: Split, info: dict) -> list[str]:
    """The task's channel names; generic ones (c0, c1, ...) where the data has none."""
    return list(info.get("channels") or [f"c{i}" for i in range(split.x.shape[2])])


def xyz_sensors(channels: list[str]) -> dict[str, list[int]]:
    """Sensors with an x, y and z channel (named <sensor>_x, _y, _z), in channel order: their column indices."""
    sensors = {}
    for name in channels:
        sensor = name[:-2]
        if name.endswith("_x") and all(f"{sensor}_{axis}" in channels for axis in "yz"):
            sensors[sensor] = [channels.index(f"{sensor}_{axis}") for axis in "xyz"]
    return sensors


def raw_series(split: Split, info: dict) -> np.ndarray:
    """(N, T, C) float64: the loader's per-channel standardisation undone (where it recorded one)."""
    x = split.x.numpy().astype(np.float64)
    standardisation = info.get("standardisation")
    if not standardisation:
        return x
    return x * np.asarray(standardisation["std"], dtype=np.float64) + np.asarray(standardisation["mean"], dtype=np.float64)


def features_of(raw: np.ndarray, sensors: dict[str, list[int]]) -> np.ndarray:
    """Window features of (N, T, C) raw series of one real length T (see window_features)."""
    magnitudes = [np.linalg.norm(raw[:, :, columns], axis=2) for columns in sensors.values()]
    signals = np.concatenate([raw, np.stack(magnitudes, axis=2)], axis=2) if magnitudes else raw
    features = [signals.mean(1), signals.std(1), signals.min(1), signals.max(1)]
    features += list(np.percentile(signals, QUANTILES, axis=1))
    power = np.abs(np.fft.rfft(signals, axis=1)) ** 2 / signals.shape[1]
    band = np.searchsorted(BAND_EDGES, 2 * np.fft.rfftfreq(signals.shape[1]), side="right") - 1  # 1 is Nyquist
    features += [np.log1p(power[:, band == b].sum(1)) for b in range(len(BAND_EDGES))]
    if GRAVITY_SENSOR in sensors:
        gravity = raw[:, :, sensors[GRAVITY_SENSOR]].mean(1)
        gravity /= np.maximum(np.linalg.norm(gravity, axis=1, keepdims=True), 1e-12)
        features += [gravity, np.arccos(np.clip(gravity, -1, 1))]
    return np.concatenate(features, axis=1)


def window_features(split: Split, info: dict) -> np.ndarray:
    """(N, F) features per sequence, from the raw signals over each sequence's real length (padding excluded).

    Signals: every channel, and the magnitude of every xyz triplet (channels <sensor>_x/_y/_z). Per signal:
    mean, std, min, max, 5 quantiles, log(1 + power) in 5 FFT bands given as fractions of the Nyquist
    frequency (14 per signal). Then, if a total_acc triplet exists, the gravity direction: its mean as a
    unit vector and its angles to the axes (6), which tell sitting from standing where body signals barely
    differ. HAR: 9 channels + 3 magnitudes, 14 x 12 + 6 = 174 features.
    """
    channels = channel_names(split, info)
    sensors = xyz_sensors(channels)
    raw = raw_series(split, info)
    lengths = np.clip(split.lengths.numpy(), 1, raw.shape[1])
    out = None
    for length in np.unique(lengths):  # one batch per real length: equal-length data is one batch
        rows = lengths == length
        found = features_of(raw[rows, :length], sensors)
        out = np.empty((len(raw), found.shape[1])) if out is None else out
        out[rows] = found
    return out if out is not None else np.empty((0, 14 * (len(channels) + len(sensors))))


def series_array(split: Split, width: int) -> np.ndarray:
    """(N, C, width) float64 for aeon: the standardised, zero-padded series as the networks see them, padded
    (or cut) to the training split's width, since aeon's transforms take one length."""
    x = split.x.numpy().astype(np.float64).transpose(0, 2, 1)
    if x.shape[2] < width:
        x = np.pad(x, ((0, 0), (0, 0), (0, width - x.shape[2])))
    return np.ascontiguousarray(x[:, :, :width])


def log_probabilities(probabilities: np.ndarray, classes: np.ndarray, num_classes: int) -> np.ndarray:
    """(N, num_classes) log-probabilities; a class absent from the training split gets probability 0 (log 1e-12)."""
    full = np.zeros((len(probabilities), num_classes))
    full[:, classes] = probabilities
    return np.log(np.clip(full, 1e-12, 1))


def predicted(model, x, num_classes: int) -> np.ndarray:
    """A fitted classifier's log-probabilities for x."""
    if hasattr(model, "predict_proba"):
        return log_probabilities(model.predict_proba(x), model.classes_, num_classes)
    # A ridge classifier has no probabilities: the softmax of its decision values stands in (same argmax).
    decision = model.decision_function(x)
    decision = np.column_stack([-decision, decision]) if decision.ndim == 1 else decision  # binary: one column
    return log_probabilities(np.exp(log_softmax(decision, axis=1)), model.classes_, num_classes)


def best_index(val_logprobs: list[np.ndarray], y_val: np.ndarray, metric: str, num_classes: int) -> int:
    """The candidate whose argmax on validation scores best by `metric`; the first one on ties."""
    values = [scores(y_val, logprob.argmax(1), num_classes)[metric] for logprob in val_logprobs]
    return int(np.argmax(values))


def chosen_by_validation(make, grid: list, x: dict, task: Task, metric: str) -> tuple[int, object, np.ndarray]:
    """make(value) fitted on x["train"] for each grid value; the index, model and validation log-probabilities of
    the one whose validation `metric` is best."""
    models = [make(value).fit(x["train"], task.train.y.numpy()) for value in grid]
    val_logprobs = [predicted(model, x["val"], task.num_classes) for model in models]
    best = best_index(val_logprobs, task.val.y.numpy(), metric, task.num_classes)
    return best, models[best], val_logprobs[best]


def warm_path(model):
    """make(C) for chosen_by_validation: each value's model a copy of the one fitted before it, so that a
    warm-started fit begins at the last optimum (half the time over the logistic regression's grid)."""
    def make(c):
        nonlocal model
        model = copy.deepcopy(model).set_params(C=c)
        return model
    return make


def refitted(model, x: dict, task: Task) -> np.ndarray:
    """Test log-probabilities of an unfitted copy of the chosen model fitted on the training and validation rows
    (x: each split's inputs, a list of strings or an array)."""
    rows = x["train"] + x["val"] if isinstance(x["train"], list) else np.concatenate([x["train"], x["val"]])
    model = clone(model).fit(rows, np.concatenate([task.train.y.numpy(), task.val.y.numpy()]))
    return predicted(model, x["test"], task.num_classes)


def char_ngram_logreg(task: Task, metric: str, quick: bool, balanced: bool, refit: bool = False) -> BaselineResult:
    started = time.perf_counter()
    grid = GRIDS[quick]["logreg_C"]
    alphabet = task.info["alphabet"]
    # The vocabulary and idf come from the training surnames only.
    vectoriser = TfidfVectorizer(analyzer="char_wb", ngram_range=(1, 5), sublinear_tf=True)
    x_train = vectoriser.fit_transform(surnames(task.train, alphabet))
    x_val = vectoriser.transform(surnames(task.val, alphabet))
    # newton-cg: the same optimum as lbfgs, faster on these sparse features; warm-started along the ascending grid.
    best, model, val_logprob = chosen_by_validation(
        warm_path(LogisticRegression(solver="newton-cg", max_iter=1000, warm_start=True,
                                     class_weight="balanced" if balanced else None)),
        grid, {"train": x_train, "val": x_val}, task, metric)
    names = {split: surnames(getattr(task, split), alphabet) for split in ("train", "val", "test")}
    test_logprob = predicted(model, vectoriser.transform(names["test"]), task.num_classes)
    # The refit's vocabulary and idf come from the training and validation surnames.
    refit_logprob = refitted(make_pipeline(vectoriser, model), names, task) if refit else None
    weights = ", class_weight='balanced'" if balanced else ""
    return BaselineResult(
        name="char-ngram-logreg-balanced" if balanced else "char-ngram-logreg",
        description=(f"char_wb 1-5-gram TF-IDF (sublinear tf, {x_train.shape[1]} n-grams from train) + "
                     f"LogisticRegression(C={grid[best]}{weights}); C from {grid} by validation {metric}"),
        chosen={"C": grid[best]}, val_logprob=val_logprob, test_logprob=test_logprob,
        seconds=time.perf_counter() - started, refit_test_logprob=refit_logprob)


def features_svm(task: Task, features: dict[str, np.ndarray], metric: str, quick: bool,
                 refit: bool = False) -> BaselineResult:
    started = time.perf_counter()
    grid = GRIDS[quick]["svm_C"]
    # Platt scaling on 5-fold decision values of the training split (sklearn's replacement for
    # SVC(probability=True)); the scaler is fitted on the training split only.
    best, model, val_logprob = chosen_by_validation(
        lambda c: make_pipeline(StandardScaler(), CalibratedClassifierCV(SVC(C=c), ensemble=False)),
        grid, features, task, metric)
    gravity = ", gravity direction" if GRAVITY_SENSOR in xyz_sensors(channel_names(task.train, task.info)) else ""
    description = (f"{features['train'].shape[1]} window features (moments, quantiles, FFT band energies{gravity}), "
                   f"standardised + SVC(rbf, gamma='scale', C={grid[best]}) with Platt probabilities; C from {grid} "
                   f"by validation {metric}")
    return BaselineResult("features-svm-rbf", description, {"C": grid[best]}, val_logprob,
                          predicted(model, features["test"], task.num_classes), time.perf_counter() - started,
                          refitted(model, features, task) if refit else None)


def features_hgb(task: Task, features: dict[str, np.ndarray], metric: str, quick: bool,
                 refit: bool = False) -> BaselineResult:
    started = time.perf_counter()
    leaves_grid, iterations_grid = GRIDS[quick]["hgb_max_leaf_nodes"], GRIDS[quick]["hgb_max_iter"]
    y_train, y_val = task.train.y.numpy(), task.val.y.numpy()
    candidates, val_logprobs = [], []
    for leaves in leaves_grid:
        # Without early stopping the first n iterations of a longer fit are the model with
        # max_iter=n, so one fit per leaf count gives every max_iter of the grid.
        model = HistGradientBoostingClassifier(max_iter=max(iterations_grid), max_leaf_nodes=leaves,
                                               early_stopping=False, random_state=0)
        model.fit(features["train"], y_train)
        for iteration, probabilities in enumerate(model.staged_predict_proba(features["val"]), start=1):
            if iteration in iterations_grid:
                candidates.append((model, leaves, iteration))
                val_logprobs.append(log_probabilities(probabilities, model.classes_, task.num_classes))
    best = best_index(val_logprobs, y_val, metric, task.num_classes)
    model, leaves, iterations = candidates[best]
    staged = model.staged_predict_proba(features["test"])
    test_probabilities = next(p for i, p in enumerate(staged, start=1) if i == iterations)
    refit_logprob = refitted(clone(model).set_params(max_iter=iterations), features, task) if refit else None
    return BaselineResult(
        name="features-hgb",
        description=(f"{features['train'].shape[1]} window features + HistGradientBoostingClassifier("
                     f"learning_rate=0.1, max_leaf_nodes={leaves}, max_iter={iterations}); max_leaf_nodes "
                     f"from {leaves_grid} x max_iter from {iterations_grid} by validation {metric}"),
        chosen={"max_leaf_nodes": leaves, "max_iter": iterations}, val_logprob=val_logprobs[best],
        test_logprob=log_probabilities(test_probabilities, model.classes_, task.num_classes),
        seconds=time.perf_counter() - started, refit_test_logprob=refit_logprob)


def minirocket(task: Task, metric: str, quick: bool, refit: bool = False, seed: int = 0) -> BaselineResult:
    """MiniRocket's features of the standardised, zero-padded series + a ridge classifier, as aeon's
    MiniRocketClassifier builds it; nothing is chosen on validation (metric: unused, for the common signature)."""
    started = time.perf_counter()
    kernels = GRIDS[quick]["minirocket_kernels"]
    width = max(task.seq_len, MINIROCKET_MIN_LENGTH)
    x = {split: series_array(getattr(task, split), width) for split in ("train", "val", "test")}
    model = make_pipeline(MiniRocket(n_kernels=kernels, n_jobs=1, random_state=seed), StandardScaler(with_mean=False),
                          RidgeClassifierCV(alphas=np.logspace(-3, 3, 10)))
    model.fit(x["train"], task.train.y.numpy())
    alpha = float(model[-1].alpha_)
    refit_logprob = refitted(model, x, task) if refit else None
    return BaselineResult(
        name="minirocket",
        description=(f"aeon MiniRocket(n_kernels={kernels}, random_state={seed}; {model[1].n_features_in_} features) on "
                     "the standardised series "
                     f"(zero-padded to {width} steps) + StandardScaler(with_mean=False) + RidgeClassifierCV(alpha="
                     f"{alpha:g}); alpha from logspace(-3, 3, 10) by leave-one-out on train; probabilities: softmax "
                     "of the ridge decision values"),
        chosen={"alpha": alpha}, val_logprob=predicted(model, x["val"], task.num_classes),
        test_logprob=predicted(model, x["test"], task.num_classes), seconds=time.perf_counter() - started,
        refit_test_logprob=refit_logprob)


def text_baselines(task: Task, metric: str, quick: bool, refit: bool) -> list[BaselineResult]:
    return [char_ngram_logreg(task, metric, quick, balanced=False, refit=refit),
            char_ngram_logreg(task, metric, quick, balanced=True, refit=refit)]


def series_baselines(task: Task, metric: str, quick: bool, refit: bool) -> list[BaselineResult]:
    started = time.perf_counter()
    features = {name: window_features(getattr(task, name), task.info) for name in ("train", "val", "test")}
    feature_seconds = time.perf_counter() - started
    results = [features_svm(task, features, metric, quick, refit), features_hgb(task, features, metric, quick, refit)]
    for result in results:  # both models pay for the features
        result.seconds += feature_seconds
    return results + [minirocket(task, metric, quick, refit)]


BASELINES = {TEXT: text_baselines, SERIES: series_baselines}  # by the task's kind, never its name


def run_baselines(task: Task, quick: bool = False, metric: str = "accuracy", refit: bool = False
                  ) -> list[BaselineResult]:
    """The baselines of the task's kind, each fitted on train, chosen on validation by `metric` (refit: and the
    chosen one refitted on train + validation)."""
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {list(METRICS)}, got {metric!r}")
    kind = entry_of(task).kind
    if kind not in BASELINES:
        raise ValueError(f"task {task.name!r}: kind must be one of {sorted(BASELINES)} for baselines, got {kind!r}")
    return BASELINES[kind](task, metric, quick, refit)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m search.baselines", description=__doc__.splitlines()[0],
                                     parents=[common("task_data", "threads")])
    parser.add_argument("task", choices=sorted(REGISTRY))
    parser.add_argument("--metric", choices=METRICS, default=None,
                        help="validation metric that chooses the hyper-parameters (default: the task's)")
    parser.add_argument("--quick", action="store_true", help="tiny grids (for tests)")
    parser.add_argument("--refit", action="store_true",
                        help="also refit each chosen model on train + validation and score it on test")
    args = parser.parse_args(argv)
    metric = args.metric or REGISTRY[args.task].metric
    if args.threads < 1:
        print(f"error: --threads must be an int >= 1, got {args.threads}", file=sys.stderr)
        return 2
    try:
        started = time.perf_counter()
        task = load(args.task, args.data)
        check_data(task)  # the studies' data check: one line where scikit-learn would raise its own error
        print(f"{task.name}: train {len(task.train)}, val {len(task.val)}, test {len(task.test)}; "
              f"hyper-parameters chosen by validation {metric}; loaded in {time.perf_counter() - started:.1f} s",
              flush=True)
        with threadpool_limits(limits=args.threads):
            results = run_baselines(task, quick=args.quick, metric=metric, refit=args.refit)
    except (DataError, StudyError, ValueError) as exc:
        print("error: " + " ".join(str(exc).splitlines()), file=sys.stderr)
        return 2
    for result in results:
        line = [f"{result.name:<27} {result.seconds:6.1f} s"]
        splits = [("val", result.val_logprob), ("test", result.test_logprob)]
        if result.refit_test_logprob is not None:
            splits.append(("refit test", result.refit_test_logprob))
        for split, logprob in splits:
            y = getattr(task, split.split()[-1]).y.numpy()
            s = scores(y, logprob.argmax(1), task.num_classes)
            line.append(f"{split} acc {s['accuracy']:.3f} bal {s['balanced_accuracy']:.3f} f1 {s['macro_f1']:.3f}")
        line.append(f"chosen {result.chosen}")
        print("  ".join(line))
        print(f"    {result.description}")
    print(f"total {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
