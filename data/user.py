"""A user's own file, read by its extension: numeric series (.ts, .npz) or labelled text (.csv, .tsv)."""
from __future__ import annotations

import os
from pathlib import Path

from .series import load_series
from .task import DataError, Task
from .text import load_text

SERIES_FORMATS = (".ts", ".npz")
TEXT_FORMATS = (".csv", ".tsv")


def load_file(path: str | os.PathLike, test: str | os.PathLike | None = None, fold: int = 0,
              text_column: str | None = None, label_column: str | None = None, group_column: str | None = None,
              split_seed: int = 0) -> Task:
    """The Task of a user's file; task.info["kind"] is "series" or "text", and task.info["file"] holds the
    options it was read with (load_file(**task.info["file"], fold=k) reads another validation fold)."""
    path = Path(path)
    if isinstance(split_seed, bool) or not isinstance(split_seed, int):
        raise ValueError(f"split_seed must be an int, got {split_seed!r}")
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    suffix = path.suffix.lower()
    columns = {"text_column": text_column, "label_column": label_column, "group_column": group_column}
    if suffix in SERIES_FORMATS:
        given = [name for name, value in columns.items() if value is not None]
        if given:
            raise DataError(f"{path}: {', '.join(given)} apply to text files ({', '.join(TEXT_FORMATS)}) only")
        task = load_series(path, test, fold, split_seed)
    elif suffix in TEXT_FORMATS:
        task = load_text(path, test, fold, text_column, label_column, group_column, split_seed)
    else:
        raise DataError(f"{path}: unknown file type {suffix or '(no extension)'!r}; expected one of "
                        f"{', '.join(SERIES_FORMATS + TEXT_FORMATS)}")
    options = {"path": str(path.resolve()), "split_seed": split_seed, **{k: v for k, v in columns.items() if v}}
    task.info["file"] = options | ({"test": str(Path(test).resolve())} if test is not None else {})
    return task
