"""python -m search.predict: apply an exported model folder to surnames or to HAR signal windows."""
from __future__ import annotations

import argparse
import csv
import io
import json
import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from data import DataError
from data.har import CHANNELS, STEPS, read_signals
from data.names import normalise
from .export import BATCH, InputError, ModelError, Predictor, check_windows, load_model

WIDTH = STEPS * len(CHANNELS)
CSV_LAYOUT = (f"CSV: one window per row, {WIDTH} comma-separated numbers, no header, channel-major: values "
              f"1-{STEPS} are {CHANNELS[0]} at steps 1-{STEPS}, the next {STEPS} {CHANNELS[1]}, and so on in the "
              f"order {', '.join(CHANNELS)} (the 9 UCI files side by side)")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m search.predict",
                                description="Predict with a model folder written by search.export or search.report.")
    tasks = p.add_subparsers(dest="task", required=True, metavar="{names,har}")
    names = tasks.add_parser("names", help="surnames -> the most likely languages",
                             description="Print, for each surname, the most likely languages with probabilities.")
    names.add_argument("surnames", nargs="+", metavar="SURNAME",
                       help="surnames; - reads one surname per line from stdin")
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
        sub.add_argument("--batch-size", type=int, default=BATCH, help="inputs per forward pass (default %(default)s)")
        sub.add_argument("--threads", type=int, default=1, help="torch threads (default %(default)s)")
    return p


# ---------------------------------------------------------------------------------------------
# Reading inputs


def read_surnames(arguments: list[str], stdin) -> list[str]:
    """The surnames from the arguments, `-` standing for stdin's lines; an empty one names its place."""
    surnames = []
    for position, argument in enumerate(arguments, start=1):
        if argument == "-":
            for number, line in enumerate(stdin.read().splitlines(), start=1):
                if not normalise(line):
                    raise InputError(f"stdin line {number}: empty surname")
                surnames.append(line)
        elif not normalise(argument):
            raise InputError(f"surname argument {position}: empty surname ({argument!r})")
        else:
            surnames.append(argument)
    if not surnames:
        raise InputError("stdin: no surnames (one per line expected)")
    return surnames


def read_windows(path: Path) -> np.ndarray:
    """Raw windows (N, 128, 9) from a folder, .npy, .npz or .csv; anything wrong names the file and place."""
    if not path.exists():
        raise InputError(f"{path}: no such file or folder")
    if path.is_dir():
        inner = path / "Inertial Signals"
        windows = read_signals(inner if inner.is_dir() else path)
    elif path.suffix in (".npy", ".npz"):
        windows = read_array(path)
    elif path.suffix == ".csv":
        windows = read_csv(path)
    else:
        raise InputError(f"{path}: expected an 'Inertial Signals' folder, a .npy, .npz or .csv file")
    try:
        return check_windows(windows)
    except InputError as exc:
        raise InputError(f"{path}: {exc}") from None


def read_array(path: Path) -> np.ndarray:
    try:
        loaded = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise InputError(f"{path}: not a readable {path.suffix} file ({str(exc).splitlines()[0]})") from None
    if isinstance(loaded, np.ndarray):
        return loaded
    with loaded:
        keys = loaded.files
        if len(keys) != 1 and "x" not in keys:
            raise InputError(f"{path}: holds arrays {keys}; expected one array, or one named 'x'")
        try:
            return loaded["x" if "x" in keys else keys[0]]
        except (OSError, ValueError, EOFError) as exc:
            raise InputError(f"{path}: not a readable .npz file ({str(exc).splitlines()[0]})") from None


def read_csv(path: Path) -> np.ndarray:
    """Windows from a CSV (layout: CSV_LAYOUT); a row of the wrong length or a non-number names its line."""
    raw = path.read_bytes()
    try:
        table = pd.read_csv(io.BytesIO(raw), header=None, dtype=np.float32, engine="c").to_numpy()
    except (pd.errors.ParserError, ValueError, pd.errors.EmptyDataError):
        table = None
    if table is None or table.shape[1] != WIDTH or np.isnan(table).any():
        first_bad_line(raw, path)  # short rows also read as NaN: find the line, or let real NaN through
    return table.reshape(len(table), len(CHANNELS), STEPS).transpose(0, 2, 1)


def first_bad_line(raw: bytes, path: Path) -> None:
    try:
        lines = raw.decode("utf-8").splitlines()
    except UnicodeDecodeError:
        raise InputError(f"{path}: not UTF-8 text") from None
    if not lines:
        raise InputError(f"{path}: empty (one window of {WIDTH} values per line expected)")
    for number, line in enumerate(lines, start=1):
        fields = line.split(",")
        if len(fields) != WIDTH:
            raise InputError(f"{path}: line {number}: expected {WIDTH} comma-separated values "
                             f"({len(CHANNELS)} channels x {STEPS} steps), got {len(fields)}")
        for column, value in enumerate(fields, start=1):
            try:
                float(value)
            except ValueError:
                raise InputError(f"{path}: line {number}, value {column}: not a number: {value!r}") from None


# ---------------------------------------------------------------------------------------------
# Output


def surname_rows(predictor: Predictor, surnames: list[str], top: int, batch_size: int) -> list[dict]:
    proba = predictor.predict_proba(surnames, adjust=True, batch_size=batch_size)
    best = np.argsort(-proba, axis=1, kind="stable")[:, :top]
    return [{"surname": name, "top": [{"language": predictor.class_names[j], "probability": float(proba[i, j])}
                                      for j in best[i]]} for i, name in enumerate(surnames)]


def window_rows(predictor: Predictor, windows: np.ndarray, batch_size: int) -> list[dict]:
    proba = predictor.predict_proba(windows, adjust=True, batch_size=batch_size)
    names = predictor.class_names
    return [{"window": i + 1, "activity": names[int(np.argmax(row))],
             "probabilities": dict(zip(names, map(float, row)))} for i, row in enumerate(proba)]


def format_surnames(rows: list[dict], style: str) -> str:
    if style == "json":
        return json.dumps(rows, indent=1, ensure_ascii=False)
    if style == "csv":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        top = len(rows[0]["top"])
        writer.writerow(["surname"] + [f"{k}_{i}" for i in range(1, top + 1) for k in ("language", "probability")])
        for row in rows:
            writer.writerow([row["surname"]] + [v for t in row["top"] for v in (t["language"], f"{t['probability']:.6f}")])
        return out.getvalue().rstrip("\n")
    width = max(len(row["surname"]) for row in rows)
    return "\n".join(f"{row['surname']:<{width}}  " + "  ".join(f"{t['language']} {t['probability']:.3f}"
                                                                 for t in row["top"]) for row in rows)


def format_windows(rows: list[dict], names: list[str], style: str) -> str:
    if style == "json":
        return json.dumps(rows, indent=1)
    if style == "csv":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["window", "activity"] + names)
        for row in rows:
            writer.writerow([row["window"], row["activity"]] + [f"{row['probabilities'][n]:.6f}" for n in names])
        return out.getvalue().rstrip("\n")
    width = max(map(len, names))
    lines = [f"{'window':>6}  {'activity':<{width}}  " + "  ".join(f"{n:>{max(len(n), 5)}}" for n in names)]
    lines += [f"{row['window']:>6}  {row['activity']:<{width}}  "
              + "  ".join(f"{row['probabilities'][n]:>{max(len(n), 5)}.3f}" for n in names) for row in rows]
    return "\n".join(lines)


def notes(predictor: Predictor, surnames: list[str]) -> list[str]:
    """What the input lost on the way in, said once: unknown characters, surnames cut at seq_len."""
    found = []
    unknown = predictor.unknown_characters(surnames)
    if unknown:
        listed = ", ".join(f"{ch!r} ({n}x)" for ch, n in sorted(unknown.items(), key=lambda kv: (-kv[1], kv[0])))
        found.append(f"note: characters not in the training alphabet were read as the unknown character, "
                     f"as in training: {listed}")
    seq_len = predictor.preprocessing["seq_len"]
    cut = sum(len(normalise(name)) > seq_len for name in surnames)
    if cut:
        found.append(f"note: {cut} surname(s) longer than {seq_len} characters were cut to {seq_len}, as in training")
    return found


def run(args: argparse.Namespace, stdin=None, warn=lambda line: print(line, file=sys.stderr)) -> str:
    """The text to print; notes go to warn; bad input raises InputError, a bad model folder ModelError."""
    for name, minimum in (("batch_size", 1), ("threads", 1)) + ((("top", 1),) if args.task == "names" else ()):
        if getattr(args, name) < minimum:
            raise InputError(f"--{name.replace('_', '-')} must be an int >= {minimum}, got {getattr(args, name)}")
    torch.set_num_threads(args.threads)
    if args.task == "names":
        surnames = read_surnames(args.surnames, stdin or sys.stdin)  # before loading the model: bad input fails fast
    else:
        windows = read_windows(Path(args.input))
    predictor = load_model(args.model)
    if predictor.task != args.task:
        raise ModelError(f"--model {args.model} holds a {predictor.task} model, not {args.task}")
    if predictor.tau:
        warn(f"note: probabilities follow the model's decision rule, logit-adjusted with tau = {predictor.tau:g} "
             "(see model.md)")
    if args.task == "names":
        for line in notes(predictor, surnames):
            warn(line)
        rows = surname_rows(predictor, surnames, min(args.top, len(predictor.class_names)), args.batch_size)
        return format_surnames(rows, args.format)
    return format_windows(window_rows(predictor, windows, args.batch_size), predictor.class_names, args.format)


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    try:
        text = run(args)
    except (InputError, ModelError, DataError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    try:
        print(text, flush=True)
    except BrokenPipeError:  # `| head`: the reader left; say nothing more
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(1)


if __name__ == "__main__":
    main()
