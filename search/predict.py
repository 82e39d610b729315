"""python -m search.predict: apply an exported model folder to surnames or to HAR signal windows, as a stream.

Input is read, predicted and printed one batch at a time (--batch-size), so memory stays bounded
whatever the input's length, and the first rows appear before the last input is read.
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import os
import sys
from itertools import islice
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch

from data import DataError
from data.har import CHANNELS, STEPS
from data.names import normalise
from . import signals
from .modelfolder import load_model
from .modelschema import ModelError
from .predictor import BATCH, InputError, Predictor
from .windowfiles import CSV_LAYOUT, window_batches

MAX_LINE = 10_000  # characters in one surname line: longer is not a surname (and is cut at seq_len anyway)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m search.predict",
                                description="Predict with a model folder written by search.export or search.report.")
    tasks = p.add_subparsers(dest="task", required=True, metavar="{names,har}")
    names = tasks.add_parser("names", help="surnames -> the most likely languages",
                             description="Print, for each surname, the most likely languages with probabilities.")
    names.add_argument("surnames", nargs="+", metavar="SURNAME",
                       help="surnames; - reads one surname per line (UTF-8) from stdin, as a stream")
    names.add_argument("--top", type=int, default=3, help="languages shown per surname (default %(default)s)")
    har = tasks.add_parser("har", help="signal windows -> activity",
                           description="Print, for each window, the predicted activity and the class probabilities.",
                           epilog=CSV_LAYOUT + ".")
    har.add_argument("input", metavar="INPUT",
                     help=f"a UCI-layout 'Inertial Signals' folder, a .npy/.npz array of shape (N, {STEPS}, "
                          f"{len(CHANNELS)}) in the channel order {', '.join(CHANNELS)}, or a .csv (layout below)")
    for sub in (names, har):
        sub.add_argument("--model", required=True, help="the model folder (model.json, weights/)")
        sub.add_argument("--format", choices=["text", "csv", "json"], default="text", help="output (default text)")
        sub.add_argument("--batch-size", type=int, default=BATCH,
                         help="inputs read, predicted and printed at a time (default %(default)s)")
        sub.add_argument("--threads", type=int, default=1, help="torch threads (default %(default)s)")
    return p


# ---------------------------------------------------------------------------------------------
# Reading surnames


def utf8(raw: bytes, where: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"{where}: not valid UTF-8 (byte {raw[exc.start]:#04x} at position {exc.start + 1})") from None


def checked_argument(argument: str, position: int) -> str:
    """A surname given as an argument; one that is empty, or bytes that are not UTF-8, names its position."""
    where = f"surname argument {position}"
    try:
        argument.encode("utf-8")
    except UnicodeEncodeError:  # Python kept the argument's undecodable bytes as surrogates
        utf8(os.fsencode(argument), where)
    if not normalise(argument):
        raise InputError(f"{where}: empty surname ({argument!r})")
    return argument


def stdin_lines(stdin) -> Iterator[str]:
    """stdin's lines, read as they come and decoded as UTF-8 whatever the locale says; a bad one names its line."""
    source = getattr(stdin, "buffer", stdin)  # bytes where there are bytes; a text stream (tests) as it is
    for number in range(1, sys.maxsize):
        raw = source.readline(MAX_LINE + 1)
        if not raw:
            return
        where = f"stdin line {number}"
        if len(raw) > MAX_LINE and raw[-1:] not in ("\n", b"\n"):
            raise InputError(f"{where}: longer than {MAX_LINE:,} characters (one surname per line expected)")
        line = utf8(raw, where) if isinstance(raw, bytes) else raw
        line = line.removesuffix("\n").removesuffix("\r")
        if number == 1:
            line = line.removeprefix("\ufeff")  # a byte order mark some editors write
        if not normalise(line):
            raise InputError(f"{where}: empty surname")
        yield line


def read_surnames(arguments: list[str], stdin) -> Iterator[str]:
    """The surnames from the arguments, `-` standing for stdin's lines (read lazily); an empty one names its place.
    Arguments other than `-` are checked at once, before any model is loaded."""
    checked = [None if a == "-" else checked_argument(a, i) for i, a in enumerate(arguments, start=1)]

    def stream() -> Iterator[str]:
        for surname in checked:
            if surname is None:
                yield from stdin_lines(stdin)
            else:
                yield surname
    return stream()


def batches(items: Iterator, size: int) -> Iterator[list]:
    items = iter(items)
    while batch := list(islice(items, size)):
        yield batch


# ---------------------------------------------------------------------------------------------
# Output, batch by batch


class Printer:
    """Rows as text, CSV or a JSON array, written batch by batch: a header before the first batch, the
    closing bracket after the last."""

    def __init__(self, style: str, header: list[str], write: Callable[[str], None], title: str | None = None):
        self.style, self.header, self.write, self.title, self.rows, self.width = style, header, write, title, 0, 0

    def batch(self, rows: list[dict], text: Callable[[dict, int], str], width: int, record: Callable[[dict], list]):
        if self.style == "json":
            start = "[\n" if not self.rows else ",\n"
            self.write(start + ",\n".join(json.dumps(row, ensure_ascii=False) for row in rows))
        elif self.style == "csv":
            out = io.StringIO()
            writer = csv.writer(out, lineterminator="\n")
            if not self.rows:
                writer.writerow(self.header)
            writer.writerows(record(row) for row in rows)
            self.write(out.getvalue())
        else:
            self.width = max(self.width, width)  # columns only widen as the stream goes on
            title = self.title + "\n" if self.title and not self.rows else ""
            self.write(title + "".join(text(row, self.width) + "\n" for row in rows))
        self.rows += len(rows)

    def close(self) -> None:
        if self.style == "json":
            self.write("\n]\n" if self.rows else "[]\n")


def surname_rows(predictor: Predictor, surnames: list[str], proba: np.ndarray, top: int) -> list[dict]:
    best = np.argsort(-proba, axis=1, kind="stable")[:, :top]
    return [{"surname": name, "top": [{"language": predictor.class_names[j], "probability": float(proba[i, j])}
                                      for j in best[i]]} for i, name in enumerate(surnames)]


def surname_text(row: dict, width: int) -> str:
    return f"{row['surname']:<{width}}  " + "  ".join(f"{t['language']} {t['probability']:.3f}" for t in row["top"])


def surname_record(row: dict) -> list:
    return [row["surname"]] + [v for t in row["top"] for v in (t["language"], f"{t['probability']:.6f}")]


class Notes:
    """What the input lost on the way in, counted over the whole stream and said once at the end."""

    def __init__(self, predictor: Predictor):
        self.predictor, self.unknown, self.cut = predictor, {}, 0

    def add(self, normalised: list[str]) -> None:
        for ch, n in self.predictor.unknown_characters(normalised).items():
            self.unknown[ch] = self.unknown.get(ch, 0) + n
        self.cut += sum(len(name) > self.predictor.preprocessing["seq_len"] for name in normalised)

    def lines(self) -> list[str]:
        found = []
        if self.unknown:
            listed = ", ".join(f"{ch!r} ({n}x)" for ch, n in sorted(self.unknown.items(), key=lambda kv: (-kv[1], kv[0])))
            found.append(f"note: characters not in the training alphabet were read as the unknown character, "
                         f"as in training: {listed}")
        if self.cut:
            seq_len = self.predictor.preprocessing["seq_len"]
            found.append(f"note: {self.cut} surname(s) longer than {seq_len} characters were cut to {seq_len}, "
                         "as in training")
        return found


def predict_surnames(predictor: Predictor, surnames: Iterator[str], args, write, warn) -> None:
    top = min(args.top, len(predictor.class_names))
    printer = Printer(args.format, ["surname"] + [f"{k}_{i}" for i in range(1, top + 1)
                                                  for k in ("language", "probability")], write)
    notes = Notes(predictor)
    for batch in batches(surnames, args.batch_size):
        normalised = [normalise(name) for name in batch]
        notes.add(normalised)
        rows = surname_rows(predictor, batch, predictor.batch_proba(normalised, adjust=True).double().numpy(), top)
        printer.batch(rows, surname_text, max(map(len, batch)), surname_record)
    if not printer.rows:
        raise InputError("stdin: no surnames (one per line expected)")
    printer.close()
    for line in notes.lines():
        warn(line)


def predict_windows(predictor: Predictor, path: Path, args, write) -> None:
    names = predictor.class_names
    width = max(map(len, names))
    title = f"{'window':>6}  {'activity':<{width}}  " + "  ".join(f"{n:>{max(len(n), 5)}}" for n in names)
    printer = Printer(args.format, ["window", "activity"] + names, write, title)

    def text(row: dict, width: int) -> str:
        return f"{row['window']:>6}  {row['activity']:<{width}}  " + "  ".join(
            f"{row['probabilities'][n]:>{max(len(n), 5)}.3f}" for n in names)

    def record(row: dict) -> list:
        return [row["window"], row["activity"]] + [f"{row['probabilities'][n]:.6f}" for n in names]

    first = 0
    for windows in window_batches(path, args.batch_size):
        try:
            proba = predictor.batch_proba(windows, adjust=True, first=first).double().numpy()
        except InputError as exc:
            raise InputError(f"{path}: {exc}") from None
        rows = [{"window": first + i + 1, "activity": names[int(np.argmax(row))],
                 "probabilities": dict(zip(names, map(float, row)))} for i, row in enumerate(proba)]
        printer.batch(rows, text, width, record)
        first += len(windows)
    printer.close()


def run(args: argparse.Namespace, stdin=None, warn=lambda line: print(line, file=sys.stderr),
        write: Callable[[str], None] | None = None) -> str:
    """Predict, writing the output batch by batch to write (None: gather it and return it as one text); notes go
    to warn; bad input raises InputError, a bad model folder ModelError."""
    for name, minimum in (("batch_size", 1), ("threads", 1)) + ((("top", 1),) if args.task == "names" else ()):
        if getattr(args, name) < minimum:
            raise InputError(f"--{name.replace('_', '-')} must be an int >= {minimum}, got {getattr(args, name)}")
    torch.set_num_threads(args.threads)
    parts: list[str] = []
    if args.task == "names":
        surnames = read_surnames(args.surnames, stdin or sys.stdin)  # arguments checked before loading the model
    else:
        windows = Path(args.input)
        if not windows.exists():
            raise InputError(f"{windows}: no such file or folder")
    predictor = load_model(args.model)
    if predictor.task != args.task:
        raise ModelError(f"--model {args.model} holds a {predictor.task} model, not {args.task}")
    if predictor.tau:
        warn(f"note: probabilities follow the model's decision rule, logit-adjusted with tau = {predictor.tau:g} "
             "(see model.md)")
    if args.task == "names":
        predict_surnames(predictor, surnames, args, write or parts.append, warn)
    else:
        predict_windows(predictor, windows, args, write or parts.append)
    return "".join(parts).removesuffix("\n")


def main(argv: list[str] | None = None) -> None:
    signals.ctrl_c_raises()  # until here search/__init__.py made Ctrl-C end the process at once
    try:
        if hasattr(sys.stdout, "reconfigure"):  # a surname the locale cannot encode is escaped, not a traceback
            sys.stdout.reconfigure(errors="backslashreplace")
        args = parser().parse_args(argv)

        def write(text: str) -> None:
            sys.stdout.write(text)
            sys.stdout.flush()

        run(args, write=write)
    except (InputError, ModelError, DataError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except BrokenPipeError:  # `| head`: the reader left; say nothing more
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(1)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(signals.EXIT)


if __name__ == "__main__":
    main()
