"""Post-hoc logit adjustment: a decision rule that trades accuracy for balanced accuracy.

predicted class = argmax(scores - tau * log(training class prior)); tau = 0 is the plain argmax,
tau = 1 the Bayes rule for a class-balanced test set (Menon et al. 2021). It applies to any
model's logits or log-probabilities (networks and baselines alike), and tau is chosen on the
validation split only.
"""
from __future__ import annotations

import numpy as np
import torch

from .train import scores

TAUS = (0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0)  # the grid tau is chosen from


def decide(logits, log_prior, tau: float) -> np.ndarray:
    """Predicted classes under logit adjustment with strength tau."""
    logits, log_prior = torch.as_tensor(logits, dtype=torch.float32), torch.as_tensor(log_prior, dtype=torch.float32)
    return (logits - tau * log_prior).argmax(1).numpy()


def frontier(logits, y, log_prior, taus=TAUS) -> list[dict]:
    """Accuracy, balanced accuracy and macro-F1 at each tau: the points of the trade-off curve."""
    y = np.asarray(y)
    num_classes = len(log_prior)
    points = []
    for tau in taus:
        found = scores(y, decide(logits, log_prior, tau), num_classes)
        points.append({"tau": tau, **{k: v for k, v in found.items() if k != "confusion"}})
    return points


def choose_tau(logits_per_seed: list, y, log_prior, metric: str, taus=TAUS) -> tuple[float, list[float]]:
    """The tau (smallest among ties) maximising the seeds' mean validation metric, and each seed's value there."""
    table = [[point[metric] for point in frontier(logits, y, log_prior, taus)] for logits in logits_per_seed]
    means = np.mean(table, axis=0)
    best = int(np.argmax(means))  # argmax takes the first maximum: the smallest tau
    return taus[best], [row[best] for row in table]


def ensemble_log_probs(logits_per_seed: list) -> torch.Tensor:
    """log of the seeds' averaged class probabilities: the ensemble a deployed model uses."""
    probs = torch.stack([torch.as_tensor(logits).float().softmax(1) for logits in logits_per_seed]).mean(0)
    return probs.clamp(min=1e-12).log()
