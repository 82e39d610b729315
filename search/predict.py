"""python -m search.predict: apply an exported model folder to texts or numeric series, as a stream.

    python -m search.predict --model DIR INPUT...        # the folder's kind decides how INPUT is read
    python -m search.predict names --model DIR Nakamura  # a leading task word is checked against the folder

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
from . import signals
from .modelfolder import load_model
from .options import common
from .modelschema import ModelError
from .predictor import BATCH, InputError, Predictor, plural
from .tasks import REGISTRY, SERIES, TEXT
from .textinputs import check_column_option, read_texts
from .windowfiles import series_batches


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m search.predict", parents=[common("threads")],
        usage="%(prog)s [TASK] --model DIR [options] INPUT [INPUT ...]",
        description="Predict with a model folder written by search.export or search.report. The folder's kind "
                    "decides how INPUT is read. Text models: texts as arguments, - for one text per line on stdin, "
                    "or a .csv/.tsv file (its --text-column). Series models: .npy/.npz arrays (N, T, C) (an .npz's x "
                    "or x_test, with lengths or lengths_test for unequal lengths, or NaN after a series' end), "
                    "UCR/UEA .ts files, CSV files (one series per row, channel-major), or UCI HAR 'Inertial "
                    "Signals' folders for models of HAR's channels.",
        epilog="A leading TASK word (names, har, or the model's task) is checked against the folder and dropped.")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="texts or files, as the model's kind reads them")
    p.add_argument("--model", required=True, help="the model folder (model.json, weights/)")
    p.add_argument("--format", choices=["text", "csv", "json"], default="text", help="output (default text)")
    p.add_argument("--batch-size", type=int, default=BATCH,
                   help="inputs read, predicted and printed at a time (default %(default)s)")
    p.add_argument("--top", type=int, default=3, help="text models: classes shown per text (default %(default)s)")
    p.add_argument("--text-column", default=None,
                   help="text models, .csv/.tsv INPUT: the column of texts (default: the column the model was "
                        "trained on, if the file has it, else the file's only column)")
    return p


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    """The arguments, options and inputs in any order (the old form put the task word first)."""
    return parser().parse_intermixed_args(argv)


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


class Notes:
    """What text input lost on the way in, counted over the whole stream and said once at the end."""

    def __init__(self, predictor: Predictor):
        self.predictor, self.unknown, self.cut = predictor, {}, 0

    def add(self, normalised: list[str]) -> None:
        for ch, n in self.predictor.unknown_characters(normalised).items():
            self.unknown[ch] = self.unknown.get(ch, 0) + n
        self.cut += sum(len(text) > self.predictor.preprocessing["seq_len"] for text in normalised)

    def lines(self) -> list[str]:
        found = []
        if self.unknown:
            listed = ", ".join(f"{ch!r} ({n}x)" for ch, n in sorted(self.unknown.items(), key=lambda kv: (-kv[1], kv[0])))
            found.append(f"note: characters not in the training alphabet were read as the unknown character, "
                         f"as in training: {listed}")
        if self.cut:
            seq_len = self.predictor.preprocessing["seq_len"]
            found.append(f"note: {self.cut} {plural(self.predictor.nouns['input'])} longer than {seq_len} characters "
                         f"were cut to {seq_len}, as in training")
        return found


def predict_texts(predictor: Predictor, texts: Iterator[str], args, write, warn) -> None:
    from data.text import normalise
    noun, label = predictor.nouns["input"], predictor.nouns["label"]
    top = min(args.top, len(predictor.class_names))
    printer = Printer(args.format, [noun] + [f"{k}_{i}" for i in range(1, top + 1) for k in (label, "probability")],
                      write)
    notes = Notes(predictor)

    def text(row: dict, width: int) -> str:
        return f"{row[noun]:<{width}}  " + "  ".join(f"{t[label]} {t['probability']:.3f}" for t in row["top"])

    def record(row: dict) -> list:
        return [row[noun]] + [v for t in row["top"] for v in (t[label], f"{t['probability']:.6f}")]

    for batch in batches(texts, args.batch_size):
        normalised = [normalise(item) for item in batch]
        notes.add(normalised)
        proba = predictor.batch_proba(normalised, adjust=True).double().numpy()
        best = np.argsort(-proba, axis=1, kind="stable")[:, :top]
        rows = [{noun: item, "top": [{label: predictor.class_names[j], "probability": float(proba[i, j])}
                                     for j in best[i]]} for i, item in enumerate(batch)]
        printer.batch(rows, text, max(map(len, batch)), record)
    if not printer.rows:
        raise InputError(f"stdin: no {plural(noun)} (one per line expected)" if "-" in args.inputs
                         else f"no {plural(noun)} given")
    printer.close()
    for line in notes.lines():
        warn(line)


def predict_series(predictor: Predictor, paths: list[Path], args, write, warn) -> None:
    names, noun, label = predictor.class_names, predictor.nouns["input"], predictor.nouns["label"]
    width = max(len(label), *map(len, names))
    title = f"{noun:>6}  {label:<{width}}  " + "  ".join(f"{n:>{max(len(n), 5)}}" for n in names)
    printer = Printer(args.format, [noun, label] + names, write, title)

    def text(row: dict, width: int) -> str:
        return f"{row[noun]:>6}  {row[label]:<{width}}  " + "  ".join(
            f"{row['probabilities'][n]:>{max(len(n), 5)}.3f}" for n in names)

    def record(row: dict) -> list:
        return [row[noun], row[label]] + [f"{row['probabilities'][n]:.6f}" for n in names]

    first = 0
    for path in paths:
        start = first
        for series in series_batches(path, predictor.layout, args.batch_size):
            try:
                proba = predictor.batch_proba(series, adjust=True, first=first - start).double().numpy()
            except InputError as exc:
                raise InputError(f"{path}: {exc}") from None
            rows = [{noun: first + i + 1, label: names[int(np.argmax(row))],
                     "probabilities": dict(zip(names, map(float, row)))} for i, row in enumerate(proba)]
            printer.batch(rows, text, width, record)
            first += len(series)
    printer.close()
    if predictor.cut:
        seq_len = predictor.layout.seq_len
        warn(f"note: {predictor.cut} {plural(noun)} longer than {seq_len} steps were cut to {seq_len}, as in training")


def task_word(inputs: list[str]) -> str | None:
    """A leading registered task's name (the old `predict names ...` form): it is checked, not read as input."""
    return inputs[0] if inputs[0] in REGISTRY else None


def run(args: argparse.Namespace, stdin=None, warn=lambda line: print(line, file=sys.stderr),
        write: Callable[[str], None] | None = None) -> str:
    """Predict, writing the output batch by batch to write (None: gather it and return it as one text); notes go
    to warn; bad input raises InputError, a bad model folder ModelError."""
    for name, minimum in (("batch_size", 1), ("threads", 1), ("top", 1)):
        if getattr(args, name) < minimum:
            raise InputError(f"--{name.replace('_', '-')} must be an int >= {minimum}, got {getattr(args, name)}")
    torch.set_num_threads(args.threads)
    parts: list[str] = []
    word = task_word(args.inputs)
    inputs = args.inputs[1:] if word else list(args.inputs)
    if word and not inputs:
        raise InputError(f"no INPUT after the task word {word!r}")
    texts = None
    if word and REGISTRY[word].kind == TEXT:  # arguments checked before the model folder is read
        texts = read_texts(inputs, stdin or sys.stdin, args.text_column, REGISTRY[word].notes.get("input", "text"))
    predictor = load_model(args.model)
    if word and predictor.task != word:
        raise ModelError(f"--model {args.model} holds a {predictor.task} model, not {word}")
    if not word and inputs[0] == predictor.task and len(inputs) > 1 and not Path(inputs[0]).exists():
        inputs = inputs[1:]  # the model's own task name (a user's study), as a report's example writes it
    if predictor.tau:
        warn(f"note: probabilities follow the model's decision rule, logit-adjusted with tau = {predictor.tau:g} "
             "(see model.md)")
    out = write or parts.append
    if predictor.kind == TEXT:
        if texts is None:
            texts = read_texts(inputs, stdin or sys.stdin, args.text_column, predictor.nouns["input"],
                               ((predictor.info.get("data") or {}).get("columns") or {}).get("text"))
        predict_texts(predictor, texts, args, out, warn)
    elif predictor.kind == SERIES:
        check_column_option(args.text_column, predictor.kind)
        paths = [Path(item) for item in inputs]
        for path in paths:
            if not path.exists():
                raise InputError(f"{path}: no such file or folder")
        predict_series(predictor, paths, args, out, warn)
    return "".join(parts).removesuffix("\n")


def main(argv: list[str] | None = None) -> None:
    signals.ctrl_c_raises()  # until here search/__init__.py made Ctrl-C end the process at once
    try:
        if hasattr(sys.stdout, "reconfigure"):  # a text the locale cannot encode is escaped, not a traceback
            sys.stdout.reconfigure(errors="backslashreplace")
        args = parse(argv)

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
