"""Texts for a text model, as a lazy stream: arguments, stdin's lines ('-') and a .csv/.tsv file's column."""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Iterator

import pandas as pd

from data.text import normalise
from .predictor import InputError

MAX_LINE = 10_000  # characters in one stdin line: longer is not one text (and is cut at seq_len anyway)
TABLES = (".csv", ".tsv")


def utf8(raw: bytes, where: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"{where}: not valid UTF-8 (byte {raw[exc.start]:#04x} at position {exc.start + 1})") from None


def checked_argument(argument: str, position: int, noun: str) -> str:
    """A text given as an argument; one that is empty, or bytes that are not UTF-8, names its position."""
    where = f"{noun} argument {position}"
    try:
        argument.encode("utf-8")
    except UnicodeEncodeError:  # Python kept the argument's undecodable bytes as surrogates
        utf8(os.fsencode(argument), where)
    if not normalise(argument):
        raise InputError(f"{where}: empty {noun} ({argument!r})")
    return argument


def stdin_lines(stdin, noun: str) -> Iterator[str]:
    """stdin's lines, read as they come and decoded as UTF-8 whatever the locale says; a bad one names its line."""
    source = getattr(stdin, "buffer", stdin)  # bytes where there are bytes; a text stream (tests) as it is
    for number in range(1, sys.maxsize):
        raw = source.readline(MAX_LINE + 1)
        if not raw:
            return
        where = f"stdin line {number}"
        if len(raw) > MAX_LINE and raw[-1:] not in ("\n", b"\n"):
            raise InputError(f"{where}: longer than {MAX_LINE:,} characters (one {noun} per line expected)")
        line = utf8(raw, where) if isinstance(raw, bytes) else raw
        line = line.removesuffix("\n").removesuffix("\r")
        if number == 1:
            line = line.removeprefix("\ufeff")  # a byte order mark some editors write
        if not normalise(line):
            raise InputError(f"{where}: empty {noun}")
        yield line


def is_table(argument: str) -> bool:
    return argument.lower().endswith(TABLES)


def table_column(path: Path, asked: str | None, trained: str | None) -> str:
    """The column of texts: --text-column (it must be there), else the training file's, else the only one;
    an error lists the columns found."""
    try:
        found = [str(c) for c in pd.read_csv(path, sep="\t" if path.suffix.lower() == ".tsv" else ",", nrows=0,
                                             dtype=str, encoding="utf-8").columns]
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, OSError) as exc:
        raise InputError(f"{path}: not a readable {path.suffix.lower()} table with a header row "
                         f"({' '.join(str(exc).split())})") from None
    if asked is not None:
        if asked not in found:
            raise InputError(f"{path}: no column {asked!r} (--text-column); columns found: {', '.join(found)}")
        return asked
    if trained in found:
        return trained
    if len(found) == 1:
        return found[0]
    raise InputError(f"{path}: which column holds the texts? give --text-column (columns found: {', '.join(found)})")


def table_texts(path: Path, column: str, noun: str, chunk: int = 4096) -> Iterator[str]:
    """A table's texts in chunks (pandas), in file order; an empty one names its line (the header is line 1)."""
    sep = "\t" if path.suffix.lower() == ".tsv" else ","
    try:
        with pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False, skip_blank_lines=False, encoding="utf-8",
                         usecols=[column], chunksize=chunk) as chunks:
            for part in chunks:
                for index, text in zip(part.index, part[column]):
                    if not normalise(text):
                        raise InputError(f"{path}: line {index + 2}: empty {noun} (column {column!r})")
                    yield text
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not valid UTF-8 ({exc.reason} at byte {exc.start})") from None
    except pd.errors.ParserError as exc:
        raise InputError(f"{path}: not a readable {path.suffix.lower()} table ({' '.join(str(exc).split())})") from None


def read_texts(arguments: list[str], stdin, column: str | None, noun: str, trained_column: str | None = None
               ) -> Iterator[str]:
    """The texts of the arguments in order: `-` stands for stdin's lines, a .csv/.tsv path for its column (both
    read lazily). Arguments and files are checked at once, before any model is loaded."""
    checked: list[tuple[str, object]] = []
    for position, argument in enumerate(arguments, start=1):
        if argument == "-":
            checked.append(("stdin", None))
        elif is_table(argument):
            path = Path(argument)
            if not path.is_file():
                raise InputError(f"{path}: no such file (an argument ending in .csv or .tsv is read as a table)")
            checked.append(("table", (path, table_column(path, column, trained_column))))
        else:
            checked.append(("text", checked_argument(argument, position, noun)))
    if column is not None and not any(kind == "table" for kind, _ in checked):
        raise InputError("--text-column applies to a .csv or .tsv INPUT; none was given")

    def stream() -> Iterator[str]:
        for kind, value in checked:
            if kind == "stdin":
                yield from stdin_lines(stdin, noun)
            elif kind == "table":
                yield from table_texts(*value, noun)
            else:
                yield value
    return stream()


def check_column_option(column: str | None, kind: str) -> None:
    if column is not None:
        raise InputError(f"--text-column applies to text models; this is a {kind} model")

