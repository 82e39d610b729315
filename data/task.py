"""The shape every loader returns: three splits of padded sequences plus what a report needs."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch


class DataError(Exception):
    """Bad or missing input data; the message is one line naming the file and what is wrong."""


def check_fold(fold, folds: int) -> int:
    """A loader's validation fold: an int from 0 (the search's split) to folds - 1."""
    if isinstance(fold, bool) or not isinstance(fold, int) or not 0 <= fold < folds:
        raise ValueError(f"fold must be an int from 0 to {folds - 1}, got {fold!r}")
    return fold


@dataclass
class Split:
    """x: (N, T, F) float32, zero-padded after each sequence's length; y: (N,) int64; lengths: (N,) int64."""

    x: torch.Tensor
    y: torch.Tensor
    lengths: torch.Tensor

    def __len__(self) -> int:
        return len(self.y)

    def class_counts(self, num_classes: int) -> list[int]:
        return torch.bincount(self.y, minlength=num_classes).tolist()


@dataclass
class Task:
    name: str
    train: Split
    val: Split
    test: Split
    class_names: list[str]
    # How the data was read and split, for reports: source, split rule and seed, statistics...
    info: dict = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def input_size(self) -> int:
        return self.train.x.shape[2]

    @property
    def seq_len(self) -> int:
        return self.train.x.shape[1]

    def refit(self) -> "Task":
        """The final model's data, once every choice is made (scikit-learn's refit): the validation rows join
        the training split. Validation stays as it is, now training data: nothing may be chosen on it, and
        preprocessing (standardisation, alphabet) keeps the training split's statistics."""
        train = Split(torch.cat([self.train.x, self.val.x]), torch.cat([self.train.y, self.val.y]),
                      torch.cat([self.train.lengths, self.val.lengths]))
        info = {**self.info, "refit": True, "split": f"{self.info.get('split', '')}; refit: train + validation"}
        return Task(self.name, train, self.val, self.test, self.class_names, info)

    def counts(self) -> dict[str, list[int]]:
        """Examples per class in each split."""
        return {name: getattr(self, name).class_counts(self.num_classes) for name in ("train", "val", "test")}
