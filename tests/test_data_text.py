"""A user's labelled text: the real names data written as a `surname,language` CSV (and TSV), read by pandas."""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import languages, names_rows, write_csv
from data import DataError, Task, load_file
from data.splits import FOLDS
from data.text import MAX_CHARS, encode, normalise

UNKNOWN = "\N{REPLACEMENT CHARACTER}"
SOME = ("Czech", "Dutch", "Greek", "Irish", "Polish", "Scottish")  # 6 of the 18 languages, for quick tests


def decoded(task: Task, split: str) -> list[tuple[str, str]]:
    """A split's one-hot rows back as (text, label); the unknown slot reads as U+FFFD."""
    part = getattr(task, split)
    symbols = UNKNOWN + task.info["alphabet"]
    index = part.x.argmax(2)
    return [("".join(symbols[i] for i in index[r, :part.lengths[r]].tolist()), task.class_names[part.y[r]])
            for r in range(len(part))]


def exact(task: Task, split: str) -> set[tuple[str, str]]:
    """The rows that decode to their text: no unknown character, not cut at seq_len."""
    return {(text, label) for text, label in decoded(task, split) if UNKNOWN not in text and len(text) < task.seq_len}


@pytest.fixture(scope="module")
def some_csv(tmp_path_factory) -> Path:
    return write_csv(tmp_path_factory.mktemp("text") / "surnames.csv", names_rows(SOME))


@pytest.fixture(scope="module")
def some_task(some_csv) -> Task:
    return load_file(some_csv)


def test_a_csv_is_read_as_the_names_loader_reads_its_folder(some_task, some_csv):
    task = some_task
    assert task.name == "surnames" and task.info["kind"] == "text" and task.info["format"] == "csv"
    assert task.class_names == sorted(SOME)
    assert task.info["columns"] == {"text": "surname", "label": "language", "group": None}
    assert task.info["file"] == {"path": str(some_csv.resolve()), "split_seed": 0}
    raw = languages(SOME)
    assert task.info["lines"] == sum(map(len, raw.values()))
    # Identical (surname, language) lines kept once, normalised as the names loader does ("Müller" -> "Muller").
    distinct = {(normalise(name), language) for language, names in raw.items() for name in names}
    assert task.info["rows_after_dedup"] == len(distinct) == len(task.train) + len(task.val) + len(task.test)
    assert set.union(*(exact(task, split) for split in ("train", "val", "test"))) <= distinct
    # The alphabet is the training split's; one-hot characters and zero padding, as names.
    assert set(task.info["alphabet"]) == {ch for text, _ in decoded(task, "train") for ch in text}
    assert task.input_size == len(task.info["alphabet"]) + 1 and task.seq_len == max(task.train.lengths.tolist())
    steps = torch.arange(task.seq_len)[None, :] < task.val.lengths[:, None]
    assert torch.equal(task.val.x.sum(2), steps.float())
    alphabet = {ch: i + 1 for i, ch in enumerate(task.info["alphabet"])}
    x, lengths = encode([text for text, _ in decoded(task, "train")[:20]], alphabet, task.seq_len)
    assert torch.equal(x, task.train.x[:20]) and torch.equal(lengths, task.train.lengths[:20])


def test_identical_strings_stay_in_one_split_with_all_their_labels(some_task):
    texts = {split: decoded(some_task, split) for split in ("train", "val", "test")}
    split_of, labels = defaultdict(set), defaultdict(set)
    for split, rows in texts.items():
        for text, label in rows:
            split_of[text].add(split)
            labels[text].add(label)
    # Train texts decode exactly (the alphabet is theirs): a validation or test text equal to one of them would too.
    assert all(len(split_of[text]) == 1 for text, _ in texts["train"])
    several = {name for name, ls in labels.items() if len(ls) > 1 and UNKNOWN not in name}
    assert len(several) >= 10  # surnames listed under several of these languages (e.g. Czech and Polish)
    raw = languages(SOME)
    for name in several:
        assert labels[name] == {language for language, names in raw.items() if name in map(normalise, names)}


def test_splits_are_stratified_and_a_fifth_is_held_out(some_task):
    counts = {split: np.array(c) for split, c in some_task.counts().items()}
    total = sum(counts.values())
    assert counts["test"].sum() / total.sum() == pytest.approx(0.2, abs=0.01)
    assert counts["val"].sum() / (counts["train"] + counts["val"]).sum() == pytest.approx(1 / FOLDS, abs=0.01)
    for split in ("train", "val", "test"):  # each class's share of a split is its share of the file
        np.testing.assert_allclose(counts[split] / counts[split].sum(), total / total.sum(), atol=0.01)


@pytest.mark.slow
def test_folds_rotate_validation_and_keep_the_test_split(some_csv, some_task):
    tasks = [some_task] + [load_file(some_csv, fold=k) for k in range(1, FOLDS)]
    held = [{text for text, _ in decoded(t, "val") if UNKNOWN not in text} for t in tasks]
    for k, task in enumerate(tasks):
        assert task.info["fold"] == k and torch.equal(task.test.y, some_task.test.y)
        # The same test strings: each fold's alphabet is its training split's, so compare on the letters both know.
        known = set(task.info["alphabet"]) & set(some_task.info["alphabet"])
        same = [["".join(c if c in known else UNKNOWN for c in text) for text, _ in decoded(t, "test")]
                for t in (task, some_task)]
        assert same[0] == same[1]
        assert not held[k] & {text for text, _ in decoded(task, "train")}
        for j in range(k):
            assert not held[k] & held[j]  # the folds' validation strings are disjoint


def test_a_group_column_keeps_each_group_in_one_split(tmp_path):
    rows = [[name, language, normalise(name)[0].upper()] for name, language in names_rows(SOME)]  # by initial
    path = write_csv(tmp_path / "by_initial.tsv", rows, header=("surname", "language", "initial"), delimiter="\t")
    task = load_file(path, group_column="initial")
    assert task.info["format"] == "tsv" and task.info["group_noun"] == "groups"
    assert "groups: column 'initial'" in task.info["split"]
    initials = {split: {text[0].upper() for text, _ in decoded(task, split) if text[0] != UNKNOWN}
                for split in ("train", "val", "test")}
    assert not initials["train"] & initials["val"] and not initials["train"] & initials["test"]
    assert not initials["val"] & initials["test"]
    assert task.info["file"]["group_column"] == "initial"


@pytest.mark.slow
def test_named_columns_and_a_test_file(tmp_path):
    rows = names_rows(SOME)
    train_rows, test_rows = rows[::2], rows[1::2]
    header = ("language", "surname", "note")
    train = write_csv(tmp_path / "train.csv", [[lang, name, "x"] for name, lang in train_rows], header=header)
    test = write_csv(tmp_path / "test.csv", [[lang, name, "y"] for name, lang in test_rows], header=header)
    task = load_file(train, test=test, text_column="surname", label_column="language")
    assert task.info["test_source"] == str(test) and "test: the given test data" in task.info["split"]
    expected = {(normalise(name), language) for name, language in test_rows}
    assert len(task.test) == len(expected)
    assert exact(task, "test") <= expected
    assert len(task.train) + len(task.val) == len({(normalise(n), lang) for n, lang in train_rows})


@pytest.mark.slow
def test_the_whole_names_data_as_a_csv(tmp_path, names_task):
    """The names folder written as `surname,language`: the same classes, rows and encoding as the names task."""
    task = load_file(write_csv(tmp_path / "names.csv", names_rows()))
    assert task.class_names == names_task.class_names
    assert task.info["rows_after_dedup"] == names_task.info["rows_after_dedup"]
    assert task.info["distinct_texts"] == names_task.info["distinct_surnames"]
    assert task.seq_len <= MAX_CHARS


# --- Refused files: one line naming the file and the problem, nothing written ---


def bad_files(tmp_path: Path) -> dict[str, tuple[Path, dict, str]]:
    rows = names_rows(SOME)
    latin1 = tmp_path / "latin1.csv"
    latin1.write_bytes(("surname,language\nSchmidt,German\nM\u00fcller,German\n").encode("latin-1"))
    ragged = tmp_path / "ragged.csv"
    lines = [f"{name},{language}" for name, language in rows[:40]]
    lines[2] += ",extra"  # the file's line 4, below the header
    ragged.write_text("surname,language\n" + "".join(line + "\n" for line in lines), encoding="utf-8")
    return {
        "label column missing": (write_csv(tmp_path / "cols.csv", rows), {"label_column": "lang"},
                                 r"cols\.csv: no column 'lang' \(label_column\); columns found: surname, language$"),
        "one column": (write_csv(tmp_path / "one.csv", [[n] for n, _ in rows], header=("surname",)), {},
                       r"one\.csv: 1 column\(s\) \(surname\); a text file needs a text and a label column"),
        "one class": (write_csv(tmp_path / "czech.csv", [r for r in rows if r[1] == "Czech"]), {},
                      r"czech\.csv: one class only \('Czech'\); classification needs at least 2$"),
        "rare class": (write_csv(tmp_path / "rare.csv", rows[:300] + [["Zzyzx", "Klingon"]] * 3), {},
                       r"rare\.csv: class 'Klingon' has 1 training strings; each class needs at least 3 \(to train on, "
                       r"to validate on and to test on\)$"),
        "empty label": (write_csv(tmp_path / "empty.csv", rows[:5] + [[], ["Novak", ""]] + rows[5:50]), {},
                        r"empty\.csv: line 8: empty label \(column 'language'\)$"),  # a blank line 7 is skipped
        "not utf-8": (latin1, {}, r"latin1\.csv: line 3: not valid UTF-8 \(byte 2\)$"),
        "ragged row": (ragged, {}, r"ragged\.csv: not a readable \.csv table \(Error tokenizing data\. C error: "
                                   r"Expected 2 fields in line 4, saw 3\)$"),
        "test class unseen": (write_csv(tmp_path / "train.csv", rows), {"test": write_csv(
            tmp_path / "test.csv", rows[:10] + [["Worf", "Klingon"]])},
            r"test\.csv: label 'Klingon' is not a class of the training file train\.csv \(Czech, Dutch, "),
    }


def test_a_bad_text_file_is_refused_in_one_line(tmp_path):
    folder = tmp_path / "files"
    folder.mkdir()
    cases = bad_files(folder)
    before = sorted(p.name for p in tmp_path.rglob("*"))
    for case, (path, options, message) in cases.items():
        with pytest.raises(DataError, match=message) as refused:
            load_file(path, **options)
        assert "\n" not in str(refused.value), case
    assert sorted(p.name for p in tmp_path.rglob("*")) == before  # nothing written, no cache either
