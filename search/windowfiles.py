"""Numeric series from files, batch by batch: .npy/.npz headers checked before anything is allocated, CSV in chunks,
UCR/UEA .ts files through aeon, UCI HAR 'Inertial Signals' folders for models of HAR's channels."""
from __future__ import annotations

import zipfile
import zlib
from pathlib import Path
from typing import BinaryIO, Iterator

import numpy as np
import pandas as pd

from data import har
from .predictor import InputError, Layout, Series, plural

HEADERS = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
# Arrays of a search.fit .npz that are not the series to predict: x_test (or x) is read, with its lengths.
NOT_SERIES = ("y_", "lengths", "groups_", "classes")


def formats(layout: Layout) -> str:
    folder = ", or a UCI HAR 'Inertial Signals' folder" if reads_folders(layout.channels, layout.steps) else ""
    return f"a .npy, .npz, .ts or .csv file{folder}"


def reads_folders(channels, steps: int | None) -> bool:
    """A UCI HAR folder holds har.CHANNELS files of har.STEPS values a row: only a model of that layout reads it."""
    return list(channels) == har.CHANNELS and steps == har.STEPS


def csv_help(layout: Layout) -> str:
    channels = len(layout.channels)
    width = f"{layout.steps * channels}" if layout.steps else f"{channels} x T (T from 1 to {layout.seq_len})"
    return (f"CSV: one {layout.noun} per row, {width} comma-separated numbers, no header, channel-major: the first T "
            f"values are {layout.channels[0]} at steps 1 to T, then the next channel's, in the order "
            f"{', '.join(layout.channels)}")


def series_batches(path: Path, layout: Layout, batch: int) -> Iterator[Series]:
    """Series (n <= batch) in file order from a .npy, .npz, .ts or .csv file (or a UCI HAR folder); every problem
    is an InputError naming the file and the place. .ts files and folders are read whole, then cut in batches."""
    if not path.exists():
        raise InputError(f"{path}: no such file or folder")
    if path.is_dir():
        if not reads_folders(layout.channels, layout.steps):
            raise InputError(f"{path}: a folder is read as a UCI HAR 'Inertial Signals' folder, for models of its "
                             f"{len(har.CHANNELS)} channels x {har.STEPS} steps; this model takes "
                             f"{formats(layout)}")
        inner = path / "Inertial Signals"
        windows = har.read_signals(inner if inner.is_dir() else path)
        check(lambda: layout.check(windows.shape, windows.dtype), path)
        return cut(Series(windows), batch)
    readers = {".npy": npy_batches, ".npz": npz_batches, ".csv": csv_batches, ".ts": ts_batches}
    reader = readers.get(path.suffix.lower())
    if reader is None:
        raise InputError(f"{path}: expected {formats(layout)}")
    return reader(path, layout, batch)


def cut(series: Series, batch: int) -> Iterator[Series]:
    return (series[start:start + batch] for start in range(0, len(series), batch))


def check(test, path) -> None:
    try:
        test()
    except InputError as exc:
        raise InputError(f"{path}: {exc}") from None


def read_header(file: BinaryIO, where: str, data_bytes: int, layout: Layout) -> tuple[tuple, bool, np.dtype]:
    """An .npy header (shape, fortran order, dtype), checked against the layout and against the data_bytes that
    follow the header's start, before any value is read."""
    start = file.tell()
    try:
        version = np.lib.format.read_magic(file)
        if version not in HEADERS:
            raise ValueError(f"format version {version[0]}.{version[1]} of the .npy header is not read here")
        shape, fortran, dtype = HEADERS[version](file)
    except ValueError as exc:
        detail = "no NumPy header" if "magic string" in str(exc) else str(exc).splitlines()[0]
        raise InputError(f"{where}: not a .npy array ({detail}); save {plural(layout.noun)} with numpy.save") from None
    check(lambda: layout.check(shape, dtype), where)
    needed = int(np.prod(shape, dtype=object)) * dtype.itemsize  # Python ints: a forged shape cannot overflow
    held = data_bytes - (file.tell() - start)
    if held < needed:
        raise InputError(f"{where}: truncated: its header says {shape[0]:,} {plural(layout.noun)} of dtype {dtype} "
                         f"({needed:,} bytes), the file holds {max(held, 0):,} bytes of data")
    return shape, fortran, dtype


def npy_batches(path: Path, layout: Layout, batch: int) -> Iterator[Series]:
    with open(path, "rb") as file:
        read_header(file, str(path), path.stat().st_size, layout)
    try:
        values = np.load(path, mmap_mode="r", allow_pickle=False)  # read as the batches are sliced
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: not a readable .npy file ({str(exc).splitlines()[0]})") from None
    return cut(Series(values), batch)


def npz_batches(path: Path, layout: Layout, batch: int) -> Iterator[Series]:
    """The series array of an .npz (x, else x_test, else its one array) with its lengths (lengths with x,
    lengths_test with x_test), decompressed batch by batch."""
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise InputError(f"{path}: not a readable .npz archive ({exc})") from None
    keys = [name[:-len(".npy")] for name in archive.namelist() if name.endswith(".npy")]
    candidates = [k for k in ("x", "x_test") if k in keys] or [k for k in keys if not k.startswith(NOT_SERIES)]
    if len(candidates) != 1 and "x" not in keys and "x_test" not in keys:
        archive.close()
        raise InputError(f"{path}: holds arrays {keys}; expected one array, or one named 'x' or 'x_test'")
    key = candidates[0]
    lengths_key = {"x": "lengths", "x_test": "lengths_test"}.get(key)
    try:
        lengths = read_lengths(archive, path, lengths_key) if lengths_key in keys else None
        member = archive.open(f"{key}.npy")
        shape, fortran, dtype = read_header(member, f"{path} (array {key!r})", archive.getinfo(f"{key}.npy").file_size,
                                            layout)
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        archive.close()
        raise InputError(f"{path}: not a readable .npz archive ({exc})") from None
    except InputError:
        archive.close()
        raise
    if fortran:
        archive.close()
        raise InputError(f"{path}: array {key!r} is stored in Fortran order; save it with "
                         f"numpy.savez(path, {key}=numpy.ascontiguousarray({plural(layout.noun).replace(' ', '_')}))")
    if lengths is not None and lengths.shape != (shape[0],):
        archive.close()
        raise InputError(f"{path}: {lengths_key} holds {len(lengths)} lengths, {key} {shape[0]} {plural(layout.noun)}")
    return member_batches(archive, member, shape, dtype, lengths, str(path), batch)


def read_lengths(archive: zipfile.ZipFile, path: Path, key: str) -> np.ndarray:
    """A lengths array (whole: one integer per series), refused unless it is one-dimensional integers."""
    with archive.open(f"{key}.npy") as member:
        try:
            lengths = np.lib.format.read_array(member, allow_pickle=False)
        except ValueError as exc:
            raise InputError(f"{path}: array {key!r} is not readable ({str(exc).splitlines()[0]})") from None
    if lengths.dtype.kind not in "iu" or lengths.ndim != 1:
        raise InputError(f"{path}: {key} must be one integer per series, got {lengths.dtype} of shape {lengths.shape}")
    return lengths


def member_batches(archive: zipfile.ZipFile, member: BinaryIO, shape: tuple, dtype: np.dtype,
                   lengths: np.ndarray | None, where: str, batch: int) -> Iterator[Series]:
    with archive:
        row = int(np.prod(shape[1:])) * dtype.itemsize
        for start in range(0, shape[0], batch):
            count = min(batch, shape[0] - start)
            try:
                raw = member.read(count * row)
            except (zipfile.BadZipFile, zlib.error, OSError, EOFError, ValueError) as exc:
                raise InputError(f"{where}: corrupt after series {start:,} ({exc})") from None
            if len(raw) < count * row:
                raise InputError(f"{where}: truncated after series {start + len(raw) // row:,}")
            yield Series(np.frombuffer(raw, dtype).reshape(count, *shape[1:]),
                         None if lengths is None else lengths[start:start + count])


def ts_batches(path: Path, layout: Layout, batch: int) -> Iterator[Series]:
    """The series of a UCR/UEA .ts file, read whole by aeon's loader (labels, if any, are ignored)."""
    from aeon.datasets import load_from_ts_file  # aeon takes about a second to import: only for .ts files
    try:
        values, _ = load_from_ts_file(str(path))
    except (OSError, ValueError, IndexError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: not a readable .ts file ({' '.join(str(exc).split())})") from None
    if isinstance(values, np.ndarray):  # equal lengths: (N, C, T)
        check(lambda: layout.check((values.shape[0], values.shape[2], values.shape[1]), values.dtype), path)
        return cut(Series(values.transpose(0, 2, 1)), batch)
    series = [np.asarray(s, dtype=np.float64).T for s in values]  # unequal lengths: (C, T_i) each
    if not series:
        raise InputError(f"{path}: no series after @data")
    for i, s in enumerate(series):
        check(lambda: layout.check((1, *s.shape), s.dtype), f"{path}: series {i + 1}")
    return cut(Series(series, np.array([len(s) for s in series])), batch)


def csv_batches(path: Path, layout: Layout, batch: int) -> Iterator[Series]:
    """Series from a CSV (layout: csv_help) in chunks; a row of the wrong length or a non-number names its line."""
    channels = len(layout.channels)
    width = channels * (layout.steps or layout.seq_len)
    line = 0
    try:  # one column more than a row may hold: a longer row shows there instead of being cut
        with pd.read_csv(path, header=None, names=range(width + 1), index_col=False, dtype=np.float32, engine="c",
                         chunksize=batch) as chunks:
            for chunk in chunks:
                table = chunk.to_numpy()
                yield rows_of(table, line, path, layout, width)
                line += len(table)
    except InputError:
        raise
    except (pd.errors.ParserError, ValueError, UnicodeDecodeError):
        first_bad_line(path, line, layout, width)
        raise InputError(f"{path}: not a CSV of {width} numbers per line") from None
    except pd.errors.EmptyDataError:
        raise InputError(f"{path}: empty (one {layout.noun} of {width} values per line expected)") from None


def rows_of(table: np.ndarray, line: int, path: Path, layout: Layout, width: int) -> Series:
    """A chunk's rows as series: all WIDTH values for a model of fixed steps, else C x T_i values each."""
    channels = len(layout.channels)
    if not np.isnan(table[:, width]).all():
        first_bad_line(path, line, layout, width)
    if layout.steps:
        if np.isnan(table).any():
            first_bad_line(path, line, layout, width)  # short rows also read as NaN: find the line, or let NaN through
        return Series(table[:, :width].reshape(len(table), channels, layout.steps).transpose(0, 2, 1))
    present = ~np.isnan(table[:, :width])
    counts = np.where(present.any(1), width - np.argmax(present[:, ::-1], axis=1), 0)
    bad = np.flatnonzero((counts % channels != 0) | (counts == 0))
    if len(bad):
        first_bad_line(path, line + bad[0], layout, width)
        raise InputError(f"{path}: line {line + bad[0] + 1}: {counts[bad[0]]} values, not a multiple of the "
                         f"{channels} channels (C x T values expected, channel-major)")
    return Series([row[:n].reshape(channels, n // channels).T for row, n in zip(table, counts)], counts // channels)


def first_bad_line(path: Path, skip: int, layout: Layout, width: int) -> None:
    """Raise an InputError naming the first line after `skip` lines that is not a row of this layout, if any."""
    channels = len(layout.channels)
    with open(path, "rb") as file:
        for number, raw in enumerate(file, start=1):
            if number <= skip:
                continue
            try:
                fields = raw.decode("utf-8").rstrip("\r\n").split(",")
            except UnicodeDecodeError:
                raise InputError(f"{path}: line {number}: not UTF-8 text") from None
            if layout.steps and len(fields) != width:
                raise InputError(f"{path}: line {number}: expected {width} comma-separated values "
                                 f"({channels} channels x {layout.steps} steps), got {len(fields)}")
            if len(fields) > width:
                raise InputError(f"{path}: line {number}: {len(fields)} values, more than the {width} of "
                                 f"{channels} channels x {layout.seq_len} steps (this model's longest series; a longer series in a "
                                 ".npz or .ts file is cut there, as in training)")
            for column, value in enumerate(fields, start=1):
                try:
                    float(value)
                except ValueError:
                    raise InputError(f"{path}: line {number}, value {column}: not a number: {value!r}") from None
