"""Numeric sequences from a user's file: a UCR/UEA `.ts` file (read by aeon) or a NumPy `.npz`.

Policies (README, "Your own data"):
- `.ts`: NAME_TRAIN.ts with NAME_TEST.ts beside it (or `test`); univariate or multivariate, equal or
  unequal lengths, string or numeric labels. The header must agree with the data (aeon checks some of it).
- `.npz` (read with allow_pickle=False): x_train (N, T, C) or (N, T), y_train (N,) integers or strings;
  optional groups_train, lengths_train, x_test/y_test, lengths_test, classes (class names; integer labels
  then index them). Without lengths every series is T steps long.
- Splits: data/splits.py. Classes: the header's @classLabel order, `classes`, else the sorted labels.
- Standardisation: per channel, with the mean and std of the training split's real steps only.
- Unequal lengths: zero padding after each series' length, up to the longest training series; a longer
  validation or test series is cut there (counted in info["truncated"]). Missing values (NaN) are refused.
"""
from __future__ import annotations

import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from . import splits
from .task import DataError, Split, Task

NPZ_ARRAYS = ("x_train", "y_train", "groups_train", "lengths_train", "x_test", "y_test", "lengths_test", "classes")


@dataclass
class Series:
    """One file's examples before splitting: series[i] is (length, channels) float64."""

    series: list[np.ndarray]
    labels: np.ndarray  # (N,) class indices
    groups: np.ndarray | None
    where: str  # the file (and array) they came from, for messages


def sibling_test_file(path: Path) -> Path | None:
    """NAME_TEST.ts beside NAME_TRAIN.ts (the UCR/UEA archive's layout), if it is there."""
    match = re.fullmatch(r"(.*_)(train)(\.ts)", path.name, flags=re.IGNORECASE)
    if not match:
        return None
    test = "TEST" if match[2].isupper() else "test"
    sibling = path.with_name(f"{match[1]}{test}{match[3]}")
    return sibling if sibling.is_file() else None


def _check_finite(series: list[np.ndarray], where, name: Callable[[int], str], remedy: str) -> None:
    """Refuse missing (NaN) or infinite values in the real steps; name(i): how series i is called."""
    for i, s in enumerate(series):
        bad = np.argwhere(~np.isfinite(s))
        if len(bad):
            t, c = bad[0]
            raise DataError(f"{where}: {name(i)} step {t} channel {c} is {s[t, c]} (missing or infinite "
                            f"values are refused: fill them, {remedy})")


def _header(path: Path) -> dict[str, list[str]]:
    """The @tags before @data with their words as written: aeon lowercases them and skips @dimensions and
    @seriesLength, which the data must agree with too."""
    tags: dict[str, list[str]] = {}
    with open(path, encoding="utf-8") as file:
        for line in file:
            words = line.split()
            if words and words[0].startswith("@"):
                if words[0].lower() == "@data":
                    break
                tags[words[0][1:].lower()] = words[1:]
    return tags


def _check_header(tags: dict[str, list[str]], series: list[np.ndarray], path: Path) -> None:
    """A header that lies (about channels, lengths or labels) is refused: it means a damaged or edited file."""
    channels = {s.shape[1] for s in series}
    lengths = {len(s) for s in series}
    said = {key: " ".join(tags[key]) for key in ("dimensions", "serieslength", "equallength")
            if key in tags}
    if "dimensions" in said and [said["dimensions"]] != [str(c) for c in channels]:
        raise DataError(f"{path}: the header says @dimensions {said['dimensions']}, but the series have "
                        f"{', '.join(map(str, sorted(channels)))} channel(s)")
    if said.get("equallength", "").lower() == "true" and len(lengths) > 1:
        raise DataError(f"{path}: the header says @equalLength true, but the series are {min(lengths)} to "
                        f"{max(lengths)} steps long")
    if "serieslength" in said and said.get("equallength", "true").lower() == "true" \
            and [said["serieslength"]] != [str(n) for n in lengths]:
        raise DataError(f"{path}: the header says @seriesLength {said['serieslength']}, but the series are "
                        f"{', '.join(map(str, sorted(lengths)))} steps long")


def _read_ts(path: Path) -> tuple[list[np.ndarray], list[str], list[str]]:
    """(series, labels as aeon reads them (lowercase), the @classLabel names as written)."""
    from aeon.datasets import load_from_ts_file  # aeon takes about a second to import: only for .ts files
    try:
        tags = _header(path)
        data, labels, meta = load_from_ts_file(str(path), return_meta_data=True)
    except (OSError, ValueError, IndexError) as exc:  # aeon's OSError names a case and what it expected there
        problem = str(exc).replace("\n", " ")
        raise DataError(f"{path}: not a readable .ts file ({problem})") from None
    if meta.get("targetlabel") or not meta.get("classlabel"):
        raise DataError(f"{path}: no class labels (@classLabel false or @targetLabel true); a classification "
                        "problem labels each series with its class (@classLabel true NAME NAME ...)")
    series = [np.asarray(case, dtype=np.float64).T for case in data]  # aeon: (channels, length) per case
    labels = [str(label) for label in labels]
    if not series:
        raise DataError(f"{path}: no series after @data")
    _check_header(tags, series, path)
    _check_finite(series, path, lambda i: f"series {i + 1}", "or drop the series")
    declared = tags.get("classlabel", [])[1:]
    if [name.lower() for name in declared] != list(meta["class_values"]):
        declared = list(meta["class_values"])
    undeclared = sorted(set(labels) - set(meta["class_values"]))
    if undeclared:
        case = labels.index(undeclared[0])
        raise DataError(f"{path}: the header's @classLabel lists {' '.join(declared)}, but series {case + 1} is "
                        f"labelled {undeclared[0]!r}")
    return series, labels, declared


def _load_ts(path: Path, test: Path | None) -> tuple[Series, Series | None, list[str]]:
    series, labels, declared = _read_ts(path)
    index = {name.lower(): i for i, name in enumerate(declared)}
    train = Series(series, np.array([index[label] for label in labels], dtype=np.int64), None, str(path))
    if test is None:
        return train, None, declared
    series, labels, _ = _read_ts(test)
    unknown = sorted(set(labels) - set(index))
    if unknown:
        raise DataError(f"{test}: label {unknown[0]!r} is not a class of the training file {path.name} "
                        f"({' '.join(declared)})")
    return train, Series(series, np.array([index[label] for label in labels], dtype=np.int64), None, str(test)), \
        declared


def _arrays(path: Path) -> dict[str, np.ndarray]:
    """The arrays of an .npz, without running code (no pickles) and refusing names it does not know."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            names = list(npz.files)
            unknown = sorted(set(names) - set(NPZ_ARRAYS))
            if unknown:
                raise DataError(f"{path}: unexpected array(s) {unknown}; an .npz holds {', '.join(NPZ_ARRAYS)}")
            arrays = {}
            for name in names:
                try:
                    arrays[name] = npz[name]
                except ValueError:  # object arrays need pickle: ragged lists, or Python objects
                    raise DataError(f"{path}: array {name!r} is ragged or holds Python objects; store series "
                                    "as one (N, T, C) number array, padded, with their lengths in lengths_*") from None
    except (OSError, zipfile.BadZipFile, EOFError) as exc:
        raise DataError(f"{path}: not a readable .npz file ({exc})") from None
    return arrays


def _check_array(a: np.ndarray, name: str, where: Path, kinds: str, ndims: tuple[int, ...], rows: int | None):
    if a.dtype.kind not in kinds:
        wanted = {"iu": "integers", "iuU": "integers or strings", "iufb": "numbers"}.get(kinds, kinds)
        raise DataError(f"{where}: {name} must hold {wanted}, got dtype {a.dtype}")
    if a.ndim not in ndims:
        raise DataError(f"{where}: {name} must have {' or '.join(map(str, ndims))} dimension(s), got shape {a.shape}")
    if rows is not None and len(a) != rows:
        raise DataError(f"{where}: {name} has {len(a)} rows but x has {rows}")


def _npz_series(arrays: dict, split: str, where: Path) -> tuple[list[np.ndarray], np.ndarray]:
    """The series of x_<split>, cut at lengths_<split>, checked for shape, type and missing values."""
    x, y = arrays.get(f"x_{split}"), arrays.get(f"y_{split}")
    if x is None or y is None:
        missing = f"x_{split}" if x is None else f"y_{split}"
        raise DataError(f"{where}: no array {missing!r} (arrays found: {', '.join(sorted(arrays))})")
    _check_array(x, f"x_{split}", where, "iufb", (2, 3), None)
    x = x[:, :, None] if x.ndim == 2 else x  # (N, T): one channel
    if len(x) == 0 or x.shape[1] == 0 or x.shape[2] == 0:
        raise DataError(f"{where}: x_{split} is empty (shape {x.shape})")
    _check_array(y, f"y_{split}", where, "iuU", (1,), len(x))
    lengths = arrays.get(f"lengths_{split}")
    if lengths is None:
        lengths = np.full(len(x), x.shape[1])
    _check_array(lengths, f"lengths_{split}", where, "iu", (1,), len(x))
    bad = np.flatnonzero((lengths < 1) | (lengths > x.shape[1]))
    if len(bad):
        raise DataError(f"{where}: lengths_{split}[{bad[0]}] is {lengths[bad[0]]}, outside 1..{x.shape[1]} "
                        f"(x_{split} holds {x.shape[1]} steps)")
    series = [x[i, :n].astype(np.float64) for i, n in enumerate(lengths.tolist())]
    _check_finite(series, where, lambda i: f"x_{split}[{i}]", f"or end the series before them with lengths_{split}")
    return series, y


def _load_npz(path: Path, test: Path | None) -> tuple[Series, Series | None, list[str]]:
    arrays = _arrays(path)
    if test is not None:
        if "x_test" in arrays:
            raise DataError(f"{path}: holds x_test, and a test file {test} is given too; give one of them")
        extra = _arrays(test)
        if "x_test" not in extra or "y_test" not in extra:
            raise DataError(f"{test}: a test .npz holds x_test and y_test (arrays found: {', '.join(sorted(extra))})")
        arrays |= {k: v for k, v in extra.items() if k in ("x_test", "y_test", "lengths_test")}
    series, y = _npz_series(arrays, "train", path)
    classes = arrays.get("classes")
    if classes is not None:
        _check_array(classes, "classes", path, "iuU", (1,), None)
        if len(set(classes.tolist())) != len(classes):
            raise DataError(f"{path}: classes holds a name twice: {classes.tolist()}")
        names = [str(c) for c in classes.tolist()]
    else:
        names = [str(c) for c in np.unique(y).tolist()]

    def indices(labels: np.ndarray, name: str, where: Path) -> np.ndarray:
        if classes is not None and labels.dtype.kind in "iu":
            outside = np.flatnonzero((labels < 0) | (labels >= len(names)))
            if len(outside):
                raise DataError(f"{where}: {name}[{outside[0]}] is {labels[outside[0]]}, but classes names "
                                f"{len(names)} classes (labels index them: 0..{len(names) - 1})")
            return labels.astype(np.int64)
        index = {c: i for i, c in enumerate(names)}
        unknown = [str(v) for v in labels.tolist() if str(v) not in index]
        if unknown:
            known = "classes" if classes is not None else "y_train"
            raise DataError(f"{where}: {name} holds label {unknown[0]!r}, which is not in {known} ({', '.join(names)})")
        return np.array([index[str(v)] for v in labels.tolist()], dtype=np.int64)

    groups = arrays.get("groups_train")
    if groups is not None:
        _check_array(groups, "groups_train", path, "iuU", (1,), len(series))
    train = Series(series, indices(y, "y_train", path), groups, str(path))
    if "x_test" not in arrays and "y_test" not in arrays:
        return train, None, names
    where = test or path
    series, y = _npz_series(arrays, "test", where)
    return train, Series(series, indices(y, "y_test", where), None, str(where)), names


def _pad(examples: list[np.ndarray], mean: np.ndarray, std: np.ndarray, seq_len: int
         ) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, seq_len, C) standardised series, zeros after each one's length (cut at seq_len), and the lengths."""
    x = np.zeros((len(examples), seq_len, len(mean)), dtype=np.float32)
    lengths = np.array([min(len(s), seq_len) for s in examples], dtype=np.int64)
    for i, s in enumerate(examples):
        x[i, :lengths[i]] = (s[:seq_len] - mean) / std
    return torch.from_numpy(x), torch.from_numpy(lengths)


def load_series(path: str | Path, test: str | Path | None = None, fold: int = 0, split_seed: int = 0) -> Task:
    """A Task from a .ts or .npz file (see the module's policies); fold 0 is the search's split."""
    path = Path(path)
    test = Path(test) if test is not None else (sibling_test_file(path) if path.suffix.lower() == ".ts" else None)
    for file in (path, test):
        if file is not None and not file.is_file():
            raise DataError(f"{file}: no such file")
    if re.search(r"_test\.ts$", path.name, flags=re.IGNORECASE):
        raise DataError(f"{path}: a _TEST file; pass its _TRAIN file (the test file beside it is found)")
    if test is not None and test.suffix.lower() != path.suffix.lower():
        raise DataError(f"{test}: the test file must be a {path.suffix} file like {path.name}")
    reader = {".ts": _load_ts, ".npz": _load_npz}.get(path.suffix.lower())
    if reader is None:
        raise DataError(f"{path}: not a .ts or .npz file")
    data, held, class_names = reader(path, test)
    channels = {s.shape[1] for s in data.series} | ({s.shape[1] for s in held.series} if held else set())
    if len(channels) > 1:
        raise DataError(f"{held.where if held else path}: series of {sorted(channels)} channels; every series "
                        f"needs the same channels as the training file's")
    noun = "groups" if data.groups is not None else "series"
    rows = splits.assign(data.labels, data.groups, class_names, held is None, fold, split_seed, str(path), noun)
    parts = {name: [data.series[i] for i in index] for name, index in rows.items()}
    labels = {name: data.labels[index] for name, index in rows.items()}
    if held is not None:
        parts["test"], labels["test"] = held.series, held.labels
    # Statistics of the training split's real steps only, accumulated in float64, used as recorded (float32).
    steps = np.concatenate(parts["train"])
    mean, std = steps.mean(0).astype(np.float32), steps.std(0).astype(np.float32)
    std = np.where(std > 0, std, np.float32(1))  # a constant channel: centred, not divided by zero
    seq_len = max(len(s) for s in parts["train"])
    split = {}
    for name in ("train", "val", "test"):
        x, lengths = _pad(parts[name], mean, std, seq_len)
        split[name] = Split(x, torch.from_numpy(labels[name]), lengths)
    every = [len(s) for part in parts.values() for s in part]
    channel_names = [f"dim_{c}" for c in range(channels.pop())]
    groups = (f"groups_train ({len(np.unique(data.groups))} groups)" if data.groups is not None
              else "each series alone")
    info = {
        "kind": "series",
        "source": str(path),
        "test_source": str(held.where) if held is not None else None,
        "format": path.suffix.lower().lstrip("."),
        "split": splits.rule(held is None, fold, split_seed, groups),
        "split_seed": split_seed,
        "fold": fold,
        "folds": splits.FOLDS,
        "group_noun": noun,
        "channels": channel_names,
        "lengths": {"min": min(every), "max": max(every), "equal": len(set(every)) == 1},
        "seq_len": seq_len,
        "truncated": {name: sum(len(s) > seq_len for s in parts[name]) for name in ("train", "val", "test")},
        "padding": "zeros after each series' length, up to the longest training series; longer series are cut",
        "standardisation": {"mean": mean.tolist(), "std": std.tolist(),
                            "channels": channel_names, "seq_len": seq_len,
                            "rule": "(x - mean) / std per channel; mean and std of the training split's real "
                                    "steps (padding excluded)"},
    }
    return Task(name_of(path), split["train"], split["val"], split["test"], class_names, info)


def name_of(path: Path) -> str:
    """A task's name from its file, for every format: GunPoint_TRAIN.ts -> GunPoint, walks.npz -> walks."""
    return re.sub(r"_TRAIN$", "", path.name.split(".")[0], flags=re.IGNORECASE) or "data"
