"""Text to one-hot characters, and labelled text from a user's `.csv`/`.tsv` file (read by pandas).

Policies (README, "Your own data"; the names loader, data/names.py, shares the encoding):
- Text: UTF-8; letters are NFKD-normalised and combining accents dropped ("Müller" -> "Muller"); what
  remains and is not in the training alphabet maps to the unknown-character slot.
- Columns: a header row names them; the text column is the first and the label column the second unless
  named (text_column, label_column); group_column optional.
- Duplicates: identical (text, label[, group]) rows are kept once. A text under several labels keeps each.
- Groups: the group column's values, else identical texts form a group; no group is in two splits
  (data/splits.py: stratified, a test file or 20 % held out, validation folds from training).
- Encoding: one vector per character (training alphabet + 1 unknown slot); padding is the zero vector
  after the last character. Texts are cut at the longest training text, at most MAX_CHARS characters.
"""
from __future__ import annotations

import io
import unicodedata
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from . import splits
from .series import name_of
from .task import DataError, Split, Task

# The one-hot input is N x MAX_CHARS x alphabet floats: 256 keeps a 10,000-line file with a 100-character
# alphabet at 1 GB. Longer texts are cut (counted in info["truncated"]).
MAX_CHARS = 256


def normalise(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text.strip())
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch)).strip()


def decode_utf8(raw: bytes, where: str) -> str:
    """The text of a file's bytes; invalid UTF-8 is one error naming the line and byte."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        for number, line in enumerate(raw.split(b"\n"), start=1):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise DataError(f"{where}: line {number}: not valid UTF-8 (byte {exc.start + 1})") from None
        raise DataError(f"{where}: not valid UTF-8") from None


def build_alphabet(texts: list[str]) -> dict[str, int]:
    """Every character of the (training) texts, sorted, numbered from 1 (0 is the unknown character)."""
    return {ch: i + 1 for i, ch in enumerate(sorted(set("".join(texts))))}


def encode(texts: list[str], alphabet: dict[str, int], seq_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """One-hot (N, seq_len, len(alphabet) + 1); index 0 is the unknown character, padding is all zeros."""
    x = torch.zeros(len(texts), seq_len, len(alphabet) + 1)
    lengths = torch.tensor([min(len(n), seq_len) for n in texts], dtype=torch.long)
    for i, text in enumerate(texts):
        for t, ch in enumerate(text[:seq_len]):
            x[i, t, alphabet.get(ch, 0)] = 1.0
    return x, lengths


def _column(found: list[str], name: str | None, default: int | None, option: str, path: Path) -> str | None:
    """A column's name: the one asked for (it must exist), else the default position's."""
    if name is None:
        if default is None:
            return None
        if default >= len(found):
            raise DataError(f"{path}: {len(found)} column(s) ({', '.join(found)}); a text file needs a text and "
                            f"a label column (a header row names them)")
        return found[default]
    if name not in found:
        raise DataError(f"{path}: no column {name!r} ({option}); columns found: {', '.join(found)}")
    return name


def read_table(path: Path, text_column: str | None, label_column: str | None, group_column: str | None
               ) -> tuple[pd.DataFrame, dict[str, str | None]]:
    """The rows as (text, label, group) strings, texts normalised, and the columns they came from."""
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    text = decode_utf8(path.read_bytes(), str(path))
    try:
        # Blank lines are read (as empty rows, dropped below) so that a row's index gives its line number.
        table = pd.read_csv(io.StringIO(text), sep="\t" if path.suffix.lower() == ".tsv" else ",", dtype=str,
                            keep_default_na=False, skip_blank_lines=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        problem = str(exc).strip().replace("\n", " ")
        raise DataError(f"{path}: not a readable {path.suffix.lower()} table ({problem})") from None
    found = [str(c) for c in table.columns]
    columns = {"text": _column(found, text_column, 0, "text_column", path),
               "label": _column(found, label_column, 1, "label_column", path),
               "group": _column(found, group_column, None, "group_column", path)}
    if columns["text"] == columns["label"]:
        raise DataError(f"{path}: the text and label columns are both {columns['text']!r}")
    rows = pd.DataFrame({"text": table[columns["text"]].map(normalise),
                         "label": table[columns["label"]].str.strip(),
                         "group": table[columns["group"]].str.strip() if columns["group"] else None})
    rows = rows[(table.apply(lambda column: column.str.strip()) != "").any(axis=1)]  # not a blank line
    for key in ("text", "label"):
        empty = rows.index[rows[key] == ""]
        if len(empty):  # the header is line 1
            raise DataError(f"{path}: line {empty[0] + 2}: empty {key} (column {columns[key]!r})")
    if rows.empty:
        raise DataError(f"{path}: no rows below the header")
    return rows, columns


def load_text(path: str | Path, test: str | Path | None = None, fold: int = 0, text_column: str | None = None,
              label_column: str | None = None, group_column: str | None = None, split_seed: int = 0) -> Task:
    """A Task from a .csv/.tsv of labelled texts (see the module's policies); fold 0 is the search's split."""
    path = Path(path)
    rows, columns = read_table(path, text_column, label_column, group_column)
    lines = len(rows)
    key = ["text", "label"] + (["group"] if group_column else [])
    rows = rows.drop_duplicates(subset=key).reset_index(drop=True)
    class_names = sorted(rows["label"].unique())
    index = {name: i for i, name in enumerate(class_names)}
    y = rows["label"].map(index).to_numpy(dtype=np.int64)
    groups = rows["group" if group_column else "text"].to_numpy()
    noun = "groups" if group_column else "strings"
    picked = splits.assign(y, groups, class_names, test is None, fold, split_seed, str(path), noun)
    texts = {name: rows["text"].to_numpy()[index_].tolist() for name, index_ in picked.items()}
    labels = {name: y[index_] for name, index_ in picked.items()}
    if test is not None:
        test = Path(test)
        held, _ = read_table(test, columns["text"], columns["label"], None)
        unknown = sorted(set(held["label"]) - set(index))
        if unknown:
            raise DataError(f"{test}: label {unknown[0]!r} is not a class of the training file {path.name} "
                            f"({', '.join(class_names)})")
        held = held.drop_duplicates(subset=["text", "label"])
        texts["test"] = held["text"].tolist()
        labels["test"] = np.array(held["label"].map(index), dtype=np.int64)
    alphabet = build_alphabet(texts["train"])
    seq_len = min(max(map(len, texts["train"])), MAX_CHARS)
    split = {}
    for name in ("train", "val", "test"):
        x, lengths = encode(texts[name], alphabet, seq_len)
        split[name] = Split(x, torch.from_numpy(labels[name]), lengths)
    grouped = f"column {group_column!r}" if group_column else "identical texts"
    info = {
        "kind": "text",
        "source": str(path),
        "test_source": str(test) if test is not None else None,
        "format": path.suffix.lower().lstrip("."),
        "columns": columns,
        "split": splits.rule(test is None, fold, split_seed, grouped),
        "split_seed": split_seed,
        "fold": fold,
        "folds": splits.FOLDS,
        "group_noun": noun,
        "lines": lines,
        "rows_after_dedup": len(rows),
        "distinct_texts": int(rows["text"].nunique()),
        "alphabet": "".join(alphabet),
        "seq_len": seq_len,
        "truncated": {name: sum(len(t) > seq_len for t in texts[name]) for name in ("train", "val", "test")},
        "encoding": "NFKD, accents dropped; one-hot over the training alphabet + 1 unknown slot; zero padding",
    }
    return Task(name_of(path), split["train"], split["val"], split["test"], class_names, info)
