"""Held-out and validation splits of a user's file that cannot leak: stratified by class, never a group in two.

Rules (each task records its rule and seed in task.info["split"] and ["split_seed"]):
- Test: the test file or arrays when given; otherwise a fifth of the groups, held out with `split_seed`.
  The test rows never change with the fold.
- Validation: the rest is cut into FOLDS parts; fold k validates on part k and trains on the others, so
  the folds' validation sets are disjoint. Fold 0 is the search's split; the others serve re-ranking.
- Groups: the rows of one group (a subject, a recording, an identical string) stay in one split. Without
  groups every row is its own group.
- Stratified: up to MANY_GROUPS groups, scikit-learn's StratifiedGroupKFold balances each part's class
  mix; above that (many small groups) it is slow, and a StratifiedKFold over the groups, each labelled by
  its main class (most rows, ties to the first class), balances as well.
"""
from __future__ import annotations

import warnings

import numpy as np

from .task import DataError, check_fold

FOLDS = 5  # validation folds: a fifth of the training rows validates
HOLD_OUT = 5  # without test data, 1 / HOLD_OUT of the groups is the test split
MANY_GROUPS = 1000  # StratifiedGroupKFold loops over the groups in Python: slow beyond a few thousand


def parts(y: np.ndarray, groups: np.ndarray, n_parts: int, seed: int) -> list[np.ndarray]:
    """The row indices of n_parts stratified, group-aware parts of (y, groups), shuffled with seed."""
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold  # here: seconds at every command's start
    found, row_group = np.unique(groups, return_inverse=True)
    with warnings.catch_warnings():  # a class with fewer groups than parts: some parts lack it, as intended
        warnings.filterwarnings("ignore", message="The least populated class", category=UserWarning)
        if len(found) <= MANY_GROUPS:
            splitter = StratifiedGroupKFold(n_parts, shuffle=True, random_state=seed)
            return [held for _, held in splitter.split(np.zeros(len(y)), y, row_group)]
        counts = np.zeros((len(found), int(y.max()) + 1), dtype=np.int64)
        np.add.at(counts, (row_group, y), 1)
        main = counts.argmax(1)  # the first maximum: ties go to the first class
        splitter = StratifiedKFold(n_parts, shuffle=True, random_state=seed)
        return [np.flatnonzero(np.isin(row_group, held)) for _, held in splitter.split(np.zeros(len(found)), main)]


def _check_sizes(y: np.ndarray, groups: np.ndarray, class_names: list[str], hold_out: bool, where: str,
                 noun: str) -> None:
    """Refuse data too small to split: one class, a class too rare to train and validate on."""
    if len(class_names) < 2:
        raise DataError(f"{where}: one class only ({class_names[0]!r}); classification needs at least 2")
    need = 3 if hold_out else 2
    uses = "to train on, to validate on and to test on" if hold_out else "to train on and to validate on"
    for label, name in enumerate(class_names):
        count = len(np.unique(groups[y == label]))
        if count == 0:
            raise DataError(f"{where}: class {name!r} has no training example")
        if count < need:
            raise DataError(f"{where}: class {name!r} has {count} training {noun}; each class needs at least "
                            f"{need} ({uses})")


def _parts(y: np.ndarray, groups: np.ndarray, n_parts: int, seed: int, where: str, noun: str, what: str
           ) -> list[np.ndarray]:
    """parts(), refusing data with too few groups for it (scikit-learn's message names neither file nor need)."""
    largest = max(len(np.unique(groups[y == label])) for label in np.unique(y))
    if largest < n_parts:
        raise DataError(f"{where}: too few {noun} for {what}: {n_parts} stratified parts need a class with at "
                        f"least {n_parts} {noun}, the largest has {largest}")
    return parts(y, groups, n_parts, seed)


def assign(y: np.ndarray, groups: np.ndarray | None, class_names: list[str], hold_out: bool, fold: int,
           seed: int, where: str, noun: str = "examples") -> dict[str, np.ndarray]:
    """Row indices of y per split: "train" and "val", and "test" when hold_out (no test data given).

    y: (N,) class indices of the training file's rows; groups: (N,) group labels or None (each row alone);
    where: the file, for messages; noun: what a group is ("series", "strings"), for messages."""
    check_fold(fold, FOLDS)
    groups = np.arange(len(y)) if groups is None else groups
    _check_sizes(y, groups, class_names, hold_out, where, noun)
    rows, pool = {}, np.arange(len(y))
    if hold_out:
        rows["test"] = np.sort(_parts(y, groups, HOLD_OUT, seed, where, noun, "a held-out test split")[0])
        pool = np.setdiff1d(pool, rows["test"])
    held = _parts(y[pool], groups[pool], FOLDS, seed, where, noun, "validation folds")[fold]
    rows["val"] = np.sort(pool[held])
    rows["train"] = np.setdiff1d(pool, rows["val"])
    for label, name in enumerate(class_names):
        if not (y[rows["train"]] == label).any():
            raise DataError(f"{where}: class {name!r} has no training example left in validation fold {fold} "
                            f"(its {noun} all fell into validation or test); give it more {noun}")
    return rows


def rule(hold_out: bool, fold: int, seed: int, groups: str) -> str:
    """The split rule in words, for task.info["split"]; groups: what forms a group ("each series alone")."""
    test = (f"test: {1 / HOLD_OUT:.0%} of the groups held out; validation: part {fold} of {FOLDS} of the rest"
            if hold_out else f"test: the given test data; validation: part {fold} of {FOLDS} of the training data")
    return f"{test}; stratified by class; groups: {groups}, none in two splits; split seed {seed}"
