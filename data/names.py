"""Surnames -> language: one-hot characters, split by surname so no string is in two splits.

Policies (documented in the README):
- Text: UTF-8; letters are NFKD-normalised and combining accents dropped ("Müller" -> "Muller");
  what remains and is not in the training alphabet maps to the unknown-character slot.
- Duplicates: identical (surname, language) lines are kept once. A surname listed under several
  languages keeps each of its labels, and all its rows go to the same split.
- Split: surnames are grouped; each group is assigned by its main language (most lines, ties
  alphabetical), 70/10/20 train/val/test within each language, shuffled with `split_seed`.
  Folds (`fold`, 0 to FOLDS - 1) rotate which tenth of the train+val surnames is validation; the test
  surnames never change. Fold 0 is the split every search uses; the others serve re-ranking
  (search/rerank.py), so that a recommendation is not chosen on one small validation set.
- Encoding: one vector per character (training alphabet + 1 unknown slot); padding is the zero
  vector after the last character. Sequences are cut at the longest training surname.
"""
from __future__ import annotations

import os
import random
import zipfile
from collections import Counter, defaultdict
from pathlib import Path, PurePosixPath

import torch

from .source import check_zip, resolve
from .task import DataError, Split, Task, check_fold
from .text import build_alphabet, decode_utf8, encode, normalise

NAMES_URL = "https://download.pytorch.org/tutorial/data.zip"
FRACTIONS = (0.7, 0.1, 0.2)
# Validation-sized parts of train+val: 8 in principle, but rounding leaves small languages fewer, and the
# rotation is cyclic; on this data folds 0-6 hold disjoint validation surnames (an 8th repeats some of fold 0's).
FOLDS = 7


def _decode(raw: bytes, where: str) -> list[str]:
    names = [normalise(line) for line in decode_utf8(raw, where).splitlines()]
    names = [n for n in names if n]
    if not names:
        raise DataError(f"{where}: empty language file (no surnames)")
    return names


def _language_members(source: Path, archive: zipfile.ZipFile) -> list[tuple[str, str]]:
    """(member, language) of the archive's .../names/<Language>.txt members. An archive is untrusted: a .txt
    member whose path leaves its folders ('..', absolute, also with Windows separators) is refused."""
    found = []
    for member in sorted(archive.namelist()):
        if not member.endswith(".txt") or member.startswith("__MACOSX"):
            continue
        path = PurePosixPath(member.replace("\\", "/"))
        if path.is_absolute() or ".." in path.parts:
            raise DataError(f"{source}: member {member!r}: a path with '..' or an absolute path is refused")
        if len(path.parts) >= 2 and path.parts[-2] == "names":
            found.append((member, path.stem))
    return found


def _read_files(source: Path) -> dict[str, list[str]]:
    """{language: surnames} from a folder of <Language>.txt or the tutorial zip (data/names/*.txt)."""
    files: dict[str, tuple[bytes, str]] = {}
    if source.is_dir():
        found = sorted(source.glob("*.txt")) or sorted(source.glob("**/names/*.txt"))
        for file in found:
            files[file.stem] = (file.read_bytes(), str(file))
    else:
        archive = check_zip(source)
        for member, language in _language_members(source, archive):
            try:
                files[language] = (archive.read(member), f"{source}:{member}")
            except (zipfile.BadZipFile, OSError) as exc:
                raise DataError(f"{source}: cannot read {member!r} ({exc})") from None
    if not files:
        raise DataError(f"{source}: no <Language>.txt files (expected a folder of them or data/names/*.txt in a zip)")
    return {language: _decode(raw, where) for language, (raw, where) in files.items()}


def _validate_download(path: Path) -> None:
    _read_files(path)


def split_surnames(by_language: dict[str, list[str]], split_seed: int, fold: int = 0
                   ) -> dict[str, list[tuple[str, str]]]:
    """Group identical surnames, assign each group to one split, stratified by its main language.

    fold k moves the validation window k validation-sizes back through the train+val surnames (cyclically)."""
    check_fold(fold, FOLDS)
    lines: dict[str, Counter] = defaultdict(Counter)
    for language, names in by_language.items():
        for name in names:
            lines[name][language] += 1
    groups_by_language: dict[str, list[str]] = defaultdict(list)
    for name, counts in lines.items():
        main = min(counts, key=lambda lang: (-counts[lang], lang))
        groups_by_language[main].append(name)
    rng = random.Random(split_seed)
    splits: dict[str, list[tuple[str, str]]] = {"train": [], "val": [], "test": []}
    for language in sorted(groups_by_language):
        names = sorted(groups_by_language[language])
        rng.shuffle(names)
        n_train = round(FRACTIONS[0] * len(names))
        n_val = max(1, round(FRACTIONS[1] * len(names))) if len(names) >= 3 else 0
        pool, test = names[:n_train + n_val], names[n_train + n_val:]
        shift = fold * n_val % len(pool) if pool else 0
        pool = pool[len(pool) - shift:] + pool[:len(pool) - shift]  # fold 0: unchanged
        parts = {"train": pool[:n_train], "val": pool[n_train:], "test": test}
        for split, members in parts.items():
            splits[split] += [(name, lang) for name in members for lang in sorted(lines[name])]
    return splits


def check_test_examples(source: Path, splits: dict[str, list[tuple[str, str]]], class_names: list[str]) -> None:
    """Every language needs a test example: a report's per-class test figures would be empty for it."""
    counts = Counter(language for _, language in splits["test"])
    missing = [language for language in class_names if counts[language] == 0]
    if missing:
        raise DataError(f"{source}: no test example of class {', '.join(missing)} (the test split holds "
                        f"{FRACTIONS[2]:.0%} of each language's surnames: give it at least 6 distinct ones)")


def load_names(path: str | os.PathLike | None = None, split_seed: int = 0, fold: int = 0) -> Task:
    source = resolve(path, "NAMES_DATA", "names_data.zip", "NAMES_DATA_URL", NAMES_URL, _validate_download)
    by_language = _read_files(source)
    class_names = sorted(by_language)
    index = {lang: i for i, lang in enumerate(class_names)}
    splits = split_surnames(by_language, split_seed, fold)
    check_test_examples(source, splits, class_names)
    train_names = [name for name, _ in splits["train"]]
    alphabet = build_alphabet(train_names)
    seq_len = max(map(len, train_names))

    def split(rows: list[tuple[str, str]]) -> Split:
        x, lengths = encode([n for n, _ in rows], alphabet, seq_len)
        return Split(x, torch.tensor([index[lang] for _, lang in rows], dtype=torch.long), lengths)

    raw_lines = sum(len(v) for v in by_language.values())
    info = {
        "source": str(source),
        "split": (f"surnames grouped (a string is in one split only), {FRACTIONS[0]:.0%}/{FRACTIONS[1]:.0%}/"
                  f"{FRACTIONS[2]:.0%} train/val/test per main language, split seed {split_seed}"
                  + (f", validation fold {fold} of {FOLDS}" if fold else "")),
        "split_seed": split_seed,
        "fold": fold,
        "lines": raw_lines,
        "rows_after_dedup": sum(len(rows) for rows in splits.values()),
        "distinct_surnames": len({n for rows in splits.values() for n, _ in rows}),
        "alphabet": "".join(alphabet),
        "seq_len": seq_len,
        "truncated": {s: sum(len(n) > seq_len for n, _ in rows) for s, rows in splits.items()},
        "encoding": "NFKD, accents dropped; one-hot over the training alphabet + 1 unknown slot; zero padding",
    }
    return Task("names", split(splits["train"]), split(splits["val"]), split(splits["test"]), class_names, info)
