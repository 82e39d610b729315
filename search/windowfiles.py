"""HAR windows from files, batch by batch: .npy/.npz headers checked before anything is allocated, CSV in chunks."""
from __future__ import annotations

import zipfile
import zlib
from pathlib import Path
from typing import BinaryIO, Iterator

import numpy as np
import pandas as pd

from data.har import CHANNELS, STEPS, read_signals
from .predictor import InputError, check_layout

WIDTH = STEPS * len(CHANNELS)
CSV_LAYOUT = (f"CSV: one window per row, {WIDTH} comma-separated numbers, no header, channel-major: values "
              f"1-{STEPS} are {CHANNELS[0]} at steps 1-{STEPS}, the next {STEPS} {CHANNELS[1]}, and so on in the "
              f"order {', '.join(CHANNELS)} (the 9 UCI files side by side)")
HEADERS = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}


def window_batches(path: Path, batch: int) -> Iterator[np.ndarray]:
    """Raw windows (n <= batch, 128, 9) in file order from a folder, .npy, .npz or .csv; every problem is an
    InputError naming the file and the place. Only a UCI folder is read whole (its 9 files side by side)."""
    if not path.exists():
        raise InputError(f"{path}: no such file or folder")
    if path.is_dir():
        inner = path / "Inertial Signals"
        windows = read_signals(inner if inner.is_dir() else path)
        check(lambda: check_layout(windows.shape, windows.dtype), path)
        return (windows[start:start + batch] for start in range(0, len(windows), batch))
    readers = {".npy": npy_batches, ".npz": npz_batches, ".csv": csv_batches}
    if path.suffix not in readers:
        raise InputError(f"{path}: expected an 'Inertial Signals' folder, a .npy, .npz or .csv file")
    return readers[path.suffix](path, batch)


def check(test, path: Path) -> None:
    try:
        test()
    except InputError as exc:
        raise InputError(f"{path}: {exc}") from None


def read_header(file: BinaryIO, where: str, data_bytes: int) -> tuple[tuple, bool, np.dtype]:
    """An .npy header (shape, fortran order, dtype), checked against the windows' layout and against the
    data_bytes that follow the header's start, before any value is read."""
    start = file.tell()
    try:
        version = np.lib.format.read_magic(file)
        if version not in HEADERS:
            raise ValueError(f"format version {version[0]}.{version[1]} of the .npy header is not read here")
        shape, fortran, dtype = HEADERS[version](file)
    except ValueError as exc:
        detail = "no NumPy header" if "magic string" in str(exc) else str(exc).splitlines()[0]
        raise InputError(f"{where}: not a .npy array ({detail}); save windows with numpy.save") from None
    check(lambda: check_layout(shape, dtype), where)
    needed = int(np.prod(shape, dtype=object)) * dtype.itemsize  # Python ints: a forged shape cannot overflow
    held = data_bytes - (file.tell() - start)
    if held < needed:
        raise InputError(f"{where}: truncated: its header says {shape[0]:,} windows of dtype {dtype} "
                         f"({needed:,} bytes), the file holds {max(held, 0):,} bytes of data")
    return shape, fortran, dtype


def npy_batches(path: Path, batch: int) -> Iterator[np.ndarray]:
    with open(path, "rb") as file:
        read_header(file, str(path), path.stat().st_size)
    try:
        windows = np.load(path, mmap_mode="r", allow_pickle=False)  # read as the batches are sliced
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: not a readable .npy file ({str(exc).splitlines()[0]})") from None
    return (windows[start:start + batch] for start in range(0, len(windows), batch))


def npz_batches(path: Path, batch: int) -> Iterator[np.ndarray]:
    """The one array of an .npz (or the one named x), decompressed batch by batch."""
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise InputError(f"{path}: not a readable .npz archive ({exc})") from None
    keys = [name[:-len(".npy")] for name in archive.namelist() if name.endswith(".npy")]
    if len(keys) != 1 and "x" not in keys:
        archive.close()
        raise InputError(f"{path}: holds arrays {keys}; expected one array, or one named 'x'")
    key = "x" if "x" in keys else keys[0]
    try:
        member = archive.open(f"{key}.npy")
        shape, fortran, dtype = read_header(member, f"{path} (array {key!r})", archive.getinfo(f"{key}.npy").file_size)
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        archive.close()
        raise InputError(f"{path}: not a readable .npz archive ({exc})") from None
    except InputError:
        archive.close()
        raise
    if fortran:
        archive.close()
        raise InputError(f"{path}: array {key!r} is stored in Fortran order; save it with "
                         "numpy.savez(path, x=numpy.ascontiguousarray(windows))")
    return member_batches(archive, member, shape[0], dtype, str(path), batch)


def member_batches(archive: zipfile.ZipFile, member: BinaryIO, windows: int, dtype: np.dtype, where: str,
                   batch: int) -> Iterator[np.ndarray]:
    with archive:
        row = STEPS * len(CHANNELS) * dtype.itemsize
        for start in range(0, windows, batch):
            count = min(batch, windows - start)
            try:
                raw = member.read(count * row)
            except (zipfile.BadZipFile, zlib.error, OSError, EOFError, ValueError) as exc:
                raise InputError(f"{where}: corrupt after window {start:,} ({exc})") from None
            if len(raw) < count * row:
                raise InputError(f"{where}: truncated after window {start + len(raw) // row:,}")
            yield np.frombuffer(raw, dtype).reshape(count, STEPS, len(CHANNELS))


def csv_batches(path: Path, batch: int) -> Iterator[np.ndarray]:
    """Windows from a CSV (layout: CSV_LAYOUT) in chunks; a row of the wrong length or a non-number names its line."""
    line = 0
    try:
        with pd.read_csv(path, header=None, dtype=np.float32, engine="c", chunksize=batch) as chunks:
            for chunk in chunks:
                table = chunk.to_numpy()
                if table.shape[1] != WIDTH or np.isnan(table).any():
                    first_bad_line(path, line)  # short rows also read as NaN: find the line, or let real NaN through
                line += len(table)
                yield table.reshape(len(table), len(CHANNELS), STEPS).transpose(0, 2, 1)
    except (pd.errors.ParserError, ValueError, UnicodeDecodeError):
        first_bad_line(path, line)
        raise InputError(f"{path}: not a CSV of {WIDTH} numbers per line") from None
    except pd.errors.EmptyDataError:
        raise InputError(f"{path}: empty (one window of {WIDTH} values per line expected)") from None


def first_bad_line(path: Path, skip: int) -> None:
    """Raise an InputError naming the first line after `skip` lines that is not WIDTH numbers, if there is one."""
    with open(path, "rb") as file:
        for number, raw in enumerate(file, start=1):
            if number <= skip:
                continue
            try:
                fields = raw.decode("utf-8").rstrip("\r\n").split(",")
            except UnicodeDecodeError:
                raise InputError(f"{path}: line {number}: not UTF-8 text") from None
            if len(fields) != WIDTH:
                raise InputError(f"{path}: line {number}: expected {WIDTH} comma-separated values "
                                 f"({len(CHANNELS)} channels x {STEPS} steps), got {len(fields)}")
            for column, value in enumerate(fields, start=1):
                try:
                    float(value)
                except ValueError:
                    raise InputError(f"{path}: line {number}, value {column}: not a number: {value!r}") from None

