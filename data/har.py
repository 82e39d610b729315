"""UCI HAR inertial signals: 9 channels x 128 steps, 6 activities, split by subject."""
from __future__ import annotations

import hashlib
import io
import os
import time
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .files import atomic_path
from .source import cache_dir, check_zip, discard_damaged, remove_stale_parts, resolve
from .task import DataError, Split, Task, check_fold

HAR_URL = "https://archive.ics.uci.edu/static/public/240/human+activity+recognition+using+smartphones.zip"
CHANNELS = [f"{kind}_{axis}" for kind in ("body_acc", "body_gyro", "total_acc") for axis in "xyz"]
STEPS = 128
# A fixed set of UCI-train subjects held out for validation (never random windows: they overlap by 50 %).
VAL_SUBJECTS = (5, 11, 17, 23, 29)
# Fold 0 validates on VAL_SUBJECTS (every search does); fold k >= 1 on every (FOLDS - 1)th of the other
# UCI-train subjects, starting at the (k - 1)th: re-ranking (search/rerank.py) uses them. The test
# subjects never change.
FOLDS = 4


class _Archive:
    """Read files of the 'UCI HAR Dataset' layout from a folder, a zip, or the UCI zip holding that zip."""

    def __init__(self, path: Path):
        self.path = path
        self.zip: zipfile.ZipFile | None = None
        if path.is_dir():
            roots = [p.parent.parent for p in path.glob("**/train/y_train.txt")]
            if not roots:
                raise DataError(f"{path}: no 'train/y_train.txt' below this folder (expected the UCI HAR layout)")
            self.root = roots[0]
            return
        archive = check_zip(path)
        inner = [n for n in archive.namelist() if n.endswith("UCI HAR Dataset.zip")]
        if inner and not any(n.endswith("train/y_train.txt") for n in archive.namelist()):
            data = archive.read(inner[0])  # the UCI download wraps the data set zip in another zip
            try:
                archive = zipfile.ZipFile(io.BytesIO(data))
            except zipfile.BadZipFile:
                raise DataError(f"{path}: inner {inner[0]!r} is not a valid zip archive") from None
        roots = [n[: -len("train/y_train.txt")] for n in archive.namelist() if n.endswith("train/y_train.txt")]
        if not roots:
            raise DataError(f"{path}: no 'train/y_train.txt' in this archive (expected the UCI HAR layout)")
        self.zip, self.prefix = archive, roots[0]

    def read(self, relative: str) -> tuple[bytes, str]:
        """The bytes of one file and the name to use in error messages."""
        if self.zip is None:
            file = self.root / relative
            if not file.exists():
                raise DataError(f"{file}: missing")
            return file.read_bytes(), str(file)
        name = self.prefix + relative
        try:
            return self.zip.read(name), f"{self.path}:{name}"
        except KeyError:
            raise DataError(f"{self.path}: missing member {name!r}") from None
        except (zipfile.BadZipFile, OSError, EOFError) as exc:
            raise DataError(f"{self.path}: cannot read {name!r} ({exc})") from None


def _first_bad_row(raw: bytes, where: str, width: int) -> DataError:
    """Find the line that broke the fast parser, for a message naming it."""
    for number, line in enumerate(raw.decode("utf-8", errors="replace").splitlines(), start=1):
        fields = line.split()
        if len(fields) != width:
            return DataError(f"{where}: line {number}: expected {width} values, got {len(fields)}")
        for column, value in enumerate(fields, start=1):
            try:
                with np.errstate(over="ignore"):
                    finite = np.isfinite(np.float32(float(value)))
            except ValueError:
                return DataError(f"{where}: line {number}: not a number in field {column}: {value!r}")
            if not finite:  # nan, inf, or beyond float32: it would poison the standardisation
                return DataError(f"{where}: line {number}: field {column}: {value!r} is not a finite number")
    return DataError(f"{where}: unreadable table")


def _read_table(raw: bytes, where: str, width: int, dtype) -> np.ndarray:
    try:
        with np.errstate(over="ignore"):  # a value beyond float32 becomes inf, reported below
            table = pd.read_csv(io.BytesIO(raw), sep=r"\s+", header=None, dtype=dtype, engine="c").to_numpy()
    except (pd.errors.ParserError, ValueError, pd.errors.EmptyDataError):
        raise _first_bad_row(raw, where, width) from None
    if table.shape[1] != width or not np.isfinite(table.astype(np.float32)).all():
        raise _first_bad_row(raw, where, width)
    return table


def _parse_split(archive: _Archive, split: str) -> dict[str, np.ndarray]:
    raw, where = archive.read(f"{split}/y_{split}.txt")
    labels = _read_table(raw, where, 1, np.int64)[:, 0]
    outside = np.flatnonzero((labels < 1) | (labels > 6))
    if len(outside):
        raise DataError(f"{where}: line {outside[0] + 1}: label {labels[outside[0]]} outside 1..6")
    raw, subject_file = archive.read(f"{split}/subject_{split}.txt")
    subjects = _read_table(raw, subject_file, 1, np.int64)[:, 0]
    if len(subjects) != len(labels):
        raise DataError(f"{subject_file}: {len(subjects)} rows but {where} has {len(labels)}")
    signals = np.empty((len(labels), STEPS, len(CHANNELS)), dtype=np.float32)
    for c, channel in enumerate(CHANNELS):
        raw, file = archive.read(f"{split}/Inertial Signals/{channel}_{split}.txt")
        table = _read_table(raw, file, STEPS, np.float32)
        if len(table) != len(labels):
            raise DataError(f"{file}: {len(table)} rows but {where} has {len(labels)}")
        signals[:, :, c] = table
    return {f"x_{split}": signals, f"y_{split}": labels - 1, f"subject_{split}": subjects}


def _cached_arrays(source: Path) -> tuple[dict[str, np.ndarray], Path]:
    """Parse once; later loads read a binary .npz keyed by the source's path, size and time."""
    stat = source.stat()
    stamp = f"{source.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
    if source.is_dir():  # a file edited in place leaves the folder's own mtime unchanged
        stamp += "".join(f"|{p.relative_to(source)}|{p.stat().st_size}|{p.stat().st_mtime_ns}"
                         for p in sorted(source.rglob("*")) if p.is_file())
    key = hashlib.sha1(stamp.encode()).hexdigest()[:16]
    cached = cache_dir() / f"har-{key}.npz"
    remove_stale_parts(cached.parent)
    if cached.exists():
        try:
            return _read_cache(cached), cached
        except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error) as exc:
            discard_damaged(cached, f"{type(exc).__name__}: {exc}")
    archive = _Archive(source)
    arrays = _parse_split(archive, "train") | _parse_split(archive, "test")
    with atomic_path(cached, suffix=".npz") as tmp:
        np.savez(tmp, **arrays)
    return arrays, cached


def _read_cache(path: Path) -> dict[str, np.ndarray]:
    """The arrays of a cache file, checked: a truncated or corrupt file raises (zip CRCs, keys, shapes)."""
    with np.load(path) as npz:
        arrays = {name: npz[name] for name in npz.files}
    for split in ("train", "test"):
        x, y, subjects = arrays[f"x_{split}"], arrays[f"y_{split}"], arrays[f"subject_{split}"]
        if x.shape[1:] != (STEPS, len(CHANNELS)) or not len(x) == len(y) == len(subjects):
            raise ValueError(f"{split} arrays of shapes {x.shape}, {y.shape}, {subjects.shape}")
    return arrays


def _validate_download(path: Path) -> None:
    _Archive(path)


def fold_subjects(train_subjects: list[int], fold: int) -> tuple[int, ...]:
    """The validation subjects of a fold (see FOLDS)."""
    if check_fold(fold, FOLDS) == 0:
        return VAL_SUBJECTS
    return tuple(s for s in sorted(train_subjects) if s not in VAL_SUBJECTS)[fold - 1::FOLDS - 1]


def load_har(path: str | os.PathLike | None = None, val_subjects: tuple[int, ...] | None = None,
             fold: int = 0) -> Task:
    """Load UCI HAR: official train/test subjects, validation = val_subjects (default: the fold's), channels
    standardised on train."""
    started = time.perf_counter()
    source = resolve(path, "HAR_DATA", "UCI_HAR_Dataset.zip", "HAR_DATA_URL", HAR_URL, _validate_download)
    arrays, cached = _cached_arrays(source)
    train_subjects = sorted(set(arrays["subject_train"].tolist()))
    if val_subjects is None:
        val_subjects = fold_subjects(train_subjects, fold)
    unknown = sorted(set(val_subjects) - set(train_subjects))
    if unknown or not val_subjects:
        raise DataError(f"val_subjects must be UCI-train subjects {train_subjects}, got {list(val_subjects)}")
    is_val = np.isin(arrays["subject_train"], val_subjects)
    x_train, x_val = arrays["x_train"][~is_val], arrays["x_train"][is_val]
    # Standardisation statistics come from the training split only, accumulated in float64 (float32 sums drift).
    mean = x_train.mean(axis=(0, 1), dtype=np.float64).astype(np.float32)
    std = (x_train.std(axis=(0, 1), dtype=np.float64) + 1e-8).astype(np.float32)

    def split(x: np.ndarray, y: np.ndarray) -> Split:
        x = torch.from_numpy((x - mean) / std).float()
        return Split(x, torch.from_numpy(y).long(), torch.full((len(y),), STEPS, dtype=torch.long))

    info = {
        "source": str(source),
        "cache": str(cached),
        "channels": CHANNELS,
        "split": (f"UCI train/test split by subject; validation = UCI-train subjects {list(val_subjects)}; "
                  "channels standardised with mean/std of the training split only"),
        "fold": fold,
        "subjects": {
            "train": sorted(set(arrays["subject_train"][~is_val].tolist())),
            "val": sorted(set(arrays["subject_train"][is_val].tolist())),
            "test": sorted(set(arrays["subject_test"].tolist())),
        },
        "standardisation": {"mean": mean.tolist(), "std": std.tolist()},
        "load_seconds": round(time.perf_counter() - started, 3),
    }
    return Task(
        name="har",
        train=split(x_train, arrays["y_train"][~is_val]),
        val=split(x_val, arrays["y_train"][is_val]),
        test=split(arrays["x_test"], arrays["y_test"]),
        class_names=["WALKING", "WALKING_UPSTAIRS", "WALKING_DOWNSTAIRS", "SITTING", "STANDING", "LAYING"],
        info=info,
    )


def read_signals(folder: str | os.PathLike) -> np.ndarray:
    """Raw (N, 128, 9) windows from an `Inertial Signals` folder: {channel}_<split>.txt, one window per row.

    For prediction on new recordings in the UCI layout; channels come out in CHANNELS order, unstandardised.
    """
    folder = Path(folder)
    found = sorted(folder.glob(f"{CHANNELS[0]}_*.txt"))
    if not found:
        raise DataError(f"{folder}: no {CHANNELS[0]}_<split>.txt (expected a UCI HAR 'Inertial Signals' folder)")
    split = found[0].name[len(CHANNELS[0]) + 1:-len(".txt")]
    tables = []
    for channel in CHANNELS:
        file = folder / f"{channel}_{split}.txt"
        if not file.is_file():
            raise DataError(f"{file}: missing (an 'Inertial Signals' folder holds all 9 channels)")
        tables.append(_read_table(file.read_bytes(), str(file), STEPS, np.float32))
        if len(tables[-1]) != len(tables[0]):
            raise DataError(f"{file}: {len(tables[-1])} rows but {found[0]} has {len(tables[0])}")
    return np.stack(tables, axis=2)
