"""Scores of predictions (accuracy, balanced accuracy, macro-F1, per class) and the training split's classes."""
from __future__ import annotations

import math

import numpy as np
import torch

from data import Split

# acc_bal_hmean: harmonic mean of accuracy and balanced accuracy, high only when both are (names default:
# maximising balanced accuracy alone chose models that gave up 20 points of accuracy for 1 of balance).
METRICS = ("accuracy", "balanced_accuracy", "macro_f1", "acc_bal_hmean")


def scores(y_true, y_pred, num_classes: int) -> dict:
    """accuracy, balanced accuracy, macro-F1 (over the classes present in y_true), the harmonic mean of
    accuracy and balanced accuracy, and the confusion matrix.

    The same numbers as scikit-learn's accuracy_score, balanced_accuracy_score and f1_score(average="macro",
    labels=present) (tests/test_train.py checks it), computed from one bincount: scikit-learn's three
    calls took 46 ms here, a third of a small model's whole epoch, and this runs after every epoch.
    """
    y_true, y_pred = np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)
    confusion = np.bincount(y_true * num_classes + y_pred, minlength=num_classes * num_classes)
    confusion = confusion.reshape(num_classes, num_classes)
    support, predicted, correct = confusion.sum(1), confusion.sum(0), np.diag(confusion)
    present = support > 0
    recall = correct / np.maximum(support, 1)
    f1 = 2 * correct / np.maximum(support + predicted, 1)  # 2PR/(P+R) = 2TP/(support + predicted)
    accuracy = float(correct.sum() / max(len(y_true), 1))
    balanced = float(recall[present].mean()) if present.any() else math.nan
    return {
        "accuracy": accuracy,
        "balanced_accuracy": balanced,
        "macro_f1": float(f1[present].mean()) if present.any() else math.nan,
        "acc_bal_hmean": 2 * accuracy * balanced / (accuracy + balanced) if accuracy + balanced > 0 else 0.0,
        "confusion": confusion.tolist(),
    }


def per_class(confusion) -> dict[str, list[float]]:
    """Recall, precision and F1 of each class from a confusion matrix (rows: true class)."""
    confusion = np.asarray(confusion, dtype=float)
    correct = np.diag(confusion)
    recall = correct / np.maximum(confusion.sum(1), 1)
    precision = correct / np.maximum(confusion.sum(0), 1)
    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros_like(recall),
                   where=precision + recall > 0)
    return {"recall": recall.tolist(), "precision": precision.tolist(), "f1": f1.tolist()}


def log_prior(split: Split, num_classes: int) -> torch.Tensor:
    """log of the class frequencies of a (training) split; a class with no example gets log(1/N)."""
    counts = torch.bincount(split.y, minlength=num_classes).double().clamp(min=1)
    return (counts / counts.sum()).log().float()


def class_weights(split: Split, num_classes: int) -> torch.Tensor:
    """Inverse class frequency of the training split ("balanced": a balanced set gets weight 1)."""
    from sklearn.utils.class_weight import compute_class_weight  # here: seconds at every command's start
    y = split.y.numpy()
    return torch.tensor(compute_class_weight("balanced", classes=np.arange(num_classes), y=y), dtype=torch.float32)
