"""Classical scikit-learn baselines on the same splits: character n-grams for names, window features for HAR.

    python -m search.baselines TASK [--data PATH] [--metric M] [--quick]

Every model is fitted on the training split only; its few hyper-parameters are chosen by one
validation metric (the same `scores` the neural search uses, on the argmax of the returned
probabilities); the test split is only predicted, once, by the chosen model. Each baseline returns
log-probabilities for validation and test, so a report can compute any metric or shift the logits.
With refit (a report's default, as for its networks), the chosen model is also refitted on the
training and validation rows together, and its test log-probabilities are returned beside.

- names: TF-IDF of character 1-5-grams (`char_wb`, sublinear tf) + logistic regression, plain and
  with class weights inversely proportional to the training class frequencies.
- har: 174 features per window (below) + an RBF SVM (Platt-calibrated probabilities) and
  HistGradientBoosting (its number of iterations chosen from one fit's staged predictions).
"""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass

import numpy as np
from sklearn.base import clone
from sklearn.calibration import CalibratedClassifierCV
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC
from threadpoolctl import threadpool_limits

from data import LOADERS, DataError, Split, Task, load_task
from .defaults import METRIC, THREADS
from .objective import METRICS
from .study import StudyError, check_data
from .train import scores

# The grids searched on validation. quick=True: two values where there is a choice, for tests.
GRIDS = {
    False: {"logreg_C": [0.3, 1, 3, 10, 30, 100, 300], "svm_C": [1, 3, 10, 30, 100, 300, 1000, 3000],
            "hgb_max_leaf_nodes": [15, 31], "hgb_max_iter": [100, 200, 300]},
    True: {"logreg_C": [1, 10], "svm_C": [1, 100], "hgb_max_leaf_nodes": [15], "hgb_max_iter": [20, 40]},
}
UNKNOWN_CHAR = "\ufffd"  # what slot 0 (a character outside the training alphabet) decodes to
SAMPLE_RATE_HZ = 50  # UCI HAR windows: 128 samples at 50 Hz
FFT_BANDS_HZ = [(0, 1), (1, 3), (3, 6), (6, 12), (12, 25.01)]  # the last band includes Nyquist (25 Hz)
QUANTILES = [10, 25, 50, 75, 90]


@dataclass
class BaselineResult:
    name: str  # "char-ngram-logreg", "char-ngram-logreg-balanced", "features-svm-rbf", "features-hgb"
    description: str  # one line: features, model, the hyper-parameters chosen and the grid they were chosen from
    chosen: dict  # the chosen hyper-parameters
    val_logprob: np.ndarray  # (N_val, C) log-probabilities on the validation split
    test_logprob: np.ndarray  # (N_test, C) log-probabilities on the test split
    seconds: float  # fit time, including the validation search (and the refit)
    refit_test_logprob: np.ndarray | None = None  # (N_test, C): the chosen model refitted on train + validation


def surnames(split: Split, alphabet: str) -> list[str]:
    """The surname strings behind one-hot rows: slot i > 0 is alphabet[i - 1], slot 0 the unknown character."""
    slots = split.x.argmax(dim=2).tolist()
    return ["".join(alphabet[i - 1] if i > 0 else UNKNOWN_CHAR for i in row[:length])
            for row, length in zip(slots, split.lengths.tolist())]


def har_features(split: Split, info: dict) -> np.ndarray:
    """(N, 174) features per window, from the raw signals (the loader's standardisation undone).

    Signals: the 9 channels and the magnitudes of body_acc, body_gyro and total_acc (12). Per signal:
    mean, std, min, max, 5 quantiles, log(1 + power) in 5 FFT bands (14 x 12 = 168). Then the
    gravity direction: the mean of total_acc x/y/z as a unit vector and its angles to the axes (6),
    which tell sitting from standing (the posture) where the body signals barely differ.
    """
    channels = info["channels"]
    mean = np.asarray(info["standardisation"]["mean"], dtype=np.float64)
    std = np.asarray(info["standardisation"]["std"], dtype=np.float64)
    raw = split.x.numpy().astype(np.float64) * std + mean  # (N, 128, 9)
    sensors = ["body_acc", "body_gyro", "total_acc"]
    xyz = {s: raw[:, :, [channels.index(f"{s}_{axis}") for axis in "xyz"]] for s in sensors}
    magnitudes = np.stack([np.linalg.norm(xyz[s], axis=2) for s in sensors], axis=2)
    signals = np.concatenate([raw, magnitudes], axis=2)  # (N, 128, 12)

    features = [signals.mean(1), signals.std(1), signals.min(1), signals.max(1)]
    features += list(np.percentile(signals, QUANTILES, axis=1))
    power = np.abs(np.fft.rfft(signals, axis=1)) ** 2 / signals.shape[1]
    frequency = np.fft.rfftfreq(signals.shape[1], d=1 / SAMPLE_RATE_HZ)
    features += [np.log1p(power[:, (frequency >= low) & (frequency < high)].sum(1)) for low, high in FFT_BANDS_HZ]
    gravity = xyz["total_acc"].mean(1)
    gravity /= np.maximum(np.linalg.norm(gravity, axis=1, keepdims=True), 1e-12)
    features += [gravity, np.arccos(np.clip(gravity, -1, 1))]
    return np.concatenate(features, axis=1)


def log_probabilities(probabilities: np.ndarray, classes: np.ndarray, num_classes: int) -> np.ndarray:
    """(N, num_classes) log-probabilities; a class absent from the training split gets probability 0 (log 1e-12)."""
    full = np.zeros((len(probabilities), num_classes))
    full[:, classes] = probabilities
    return np.log(np.clip(full, 1e-12, 1))


def best_index(val_logprobs: list[np.ndarray], y_val: np.ndarray, metric: str, num_classes: int) -> int:
    """The candidate whose argmax on validation scores best by `metric`; the first one on ties."""
    values = [scores(y_val, logprob.argmax(1), num_classes)[metric] for logprob in val_logprobs]
    return int(np.argmax(values))


def refitted(model, x: dict, task: Task) -> np.ndarray:
    """Test log-probabilities of an unfitted copy of the chosen model fitted on the training and validation rows
    (x: each split's inputs, a list of strings or a feature array)."""
    rows = x["train"] + x["val"] if isinstance(x["train"], list) else np.concatenate([x["train"], x["val"]])
    model = clone(model).fit(rows, np.concatenate([task.train.y.numpy(), task.val.y.numpy()]))
    return log_probabilities(model.predict_proba(x["test"]), model.classes_, task.num_classes)


def char_ngram_logreg(task: Task, metric: str, quick: bool, balanced: bool, refit: bool = False) -> BaselineResult:
    started = time.perf_counter()
    grid = GRIDS[quick]["logreg_C"]
    alphabet = task.info["alphabet"]
    # The vocabulary and idf come from the training surnames only.
    vectoriser = TfidfVectorizer(analyzer="char_wb", ngram_range=(1, 5), sublinear_tf=True)
    x_train = vectoriser.fit_transform(surnames(task.train, alphabet))
    x_val = vectoriser.transform(surnames(task.val, alphabet))
    y_train, y_val = task.train.y.numpy(), task.val.y.numpy()
    models, val_logprobs = [], []
    for c in grid:
        # newton-cg: the same optimum as lbfgs, 2-4x faster on these 64k sparse features (measured).
        model = LogisticRegression(C=c, solver="newton-cg", max_iter=1000,
                                   class_weight="balanced" if balanced else None).fit(x_train, y_train)
        models.append(model)
        val_logprobs.append(log_probabilities(model.predict_proba(x_val), model.classes_, task.num_classes))
    best = best_index(val_logprobs, y_val, metric, task.num_classes)
    model = models[best]
    names = {split: surnames(getattr(task, split), alphabet) for split in ("train", "val", "test")}
    test_logprob = log_probabilities(model.predict_proba(vectoriser.transform(names["test"])), model.classes_,
                                     task.num_classes)
    # The refit's vocabulary and idf come from the training and validation surnames.
    refit_logprob = refitted(make_pipeline(vectoriser, model), names, task) if refit else None
    weights = ", class_weight='balanced'" if balanced else ""
    return BaselineResult(
        name="char-ngram-logreg-balanced" if balanced else "char-ngram-logreg",
        description=(f"char_wb 1-5-gram TF-IDF (sublinear tf, {x_train.shape[1]} n-grams from train) + "
                     f"LogisticRegression(C={grid[best]}{weights}); C from {grid} by validation {metric}"),
        chosen={"C": grid[best]}, val_logprob=val_logprobs[best], test_logprob=test_logprob,
        seconds=time.perf_counter() - started, refit_test_logprob=refit_logprob)


def features_svm(task: Task, features: dict[str, np.ndarray], metric: str, quick: bool,
                 refit: bool = False) -> BaselineResult:
    started = time.perf_counter()
    grid = GRIDS[quick]["svm_C"]
    y_train, y_val = task.train.y.numpy(), task.val.y.numpy()
    models, val_logprobs = [], []
    for c in grid:
        # Platt scaling on 5-fold decision values of the training split (sklearn's replacement for
        # SVC(probability=True)); the scaler is fitted on the training split only.
        model = make_pipeline(StandardScaler(), CalibratedClassifierCV(SVC(C=c), ensemble=False))
        model.fit(features["train"], y_train)
        models.append(model)
        val_logprobs.append(log_probabilities(model.predict_proba(features["val"]), model.classes_, task.num_classes))
    best = best_index(val_logprobs, y_val, metric, task.num_classes)
    model = models[best]
    test_logprob = log_probabilities(model.predict_proba(features["test"]), model.classes_, task.num_classes)
    refit_logprob = refitted(model, features, task) if refit else None
    return BaselineResult(
        name="features-svm-rbf",
        description=(f"{features['train'].shape[1]} window features (moments, quantiles, FFT band energies, "
                     f"gravity direction), standardised + SVC(rbf, gamma='scale', C={grid[best]}) with Platt "
                     f"probabilities; C from {grid} by validation {metric}"),
        chosen={"C": grid[best]}, val_logprob=val_logprobs[best], test_logprob=test_logprob,
        seconds=time.perf_counter() - started, refit_test_logprob=refit_logprob)


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


def run_baselines(task: Task, quick: bool = False, metric: str = "accuracy", refit: bool = False
                  ) -> list[BaselineResult]:
    """The task's classical baselines, each fitted on train, chosen on validation by `metric` (refit: and the
    chosen one refitted on train + validation)."""
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {list(METRICS)}, got {metric!r}")
    if task.name == "names":
        return [char_ngram_logreg(task, metric, quick, balanced=False, refit=refit),
                char_ngram_logreg(task, metric, quick, balanced=True, refit=refit)]
    if task.name == "har":
        started = time.perf_counter()
        features = {name: har_features(getattr(task, name), task.info) for name in ("train", "val", "test")}
        feature_seconds = time.perf_counter() - started
        results = [features_svm(task, features, metric, quick, refit), features_hgb(task, features, metric, quick, refit)]
        for result in results:  # both models pay for the features
            result.seconds += feature_seconds
        return results
    raise ValueError(f"task.name must be 'har' or 'names' for baselines, got {task.name!r}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m search.baselines", description=__doc__.splitlines()[0])
    parser.add_argument("task", choices=sorted(LOADERS))
    parser.add_argument("--data", default=None, help="data folder or archive (else $HAR_DATA/$NAMES_DATA, cache, download)")
    parser.add_argument("--metric", choices=METRICS, default=None,
                        help=f"validation metric that chooses the hyper-parameters (default: {METRIC})")
    parser.add_argument("--quick", action="store_true", help="tiny grids (for tests)")
    parser.add_argument("--refit", action="store_true",
                        help="also refit each chosen model on train + validation and score it on test")
    parser.add_argument("--threads", type=int, default=THREADS,
                        help="OpenMP/BLAS threads (default %(default)s: two threads on the shared cores made "
                             "HistGradientBoosting 10x slower)")
    args = parser.parse_args(argv)
    metric = args.metric or METRIC[args.task]
    if args.threads < 1:
        print(f"error: --threads must be an int >= 1, got {args.threads}", file=sys.stderr)
        return 2
    try:
        started = time.perf_counter()
        task = load_task(args.task, args.data)
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
