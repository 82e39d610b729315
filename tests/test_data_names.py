"""Surnames -> language: split by surname, duplicates policy, stratification, alphabet from train only."""
from __future__ import annotations

import unicodedata
import zipfile
from collections import defaultdict
from pathlib import Path

import pytest
import torch

from conftest import NAMES_DIR, NAMES_ZIP
from data import DataError, Task, load_names
from data.names import normalise

UNKNOWN = "\N{REPLACEMENT CHARACTER}"


def rows(task: Task, split: str) -> list[tuple[str, str]]:
    """Decode a split's one-hot rows back to (surname, language); the unknown slot reads as U+FFFD."""
    part = getattr(task, split)
    symbols = UNKNOWN + task.info["alphabet"]
    index = part.x.argmax(2)
    return [("".join(symbols[i] for i in index[r, :part.lengths[r]].tolist()), task.class_names[part.y[r]])
            for r in range(len(part))]


def raw_lines(folder: Path = NAMES_DIR) -> dict[str, list[str]]:
    """The data read without the loader: {language: normalised surnames, one per non-empty line}."""
    return {file.stem: [normalise(line) for line in file.read_text(encoding="utf-8").splitlines() if line.strip()]
            for file in sorted(folder.glob("*.txt"))}


@pytest.fixture(scope="module")
def decoded(names_task) -> dict[str, list[tuple[str, str]]]:
    return {split: rows(names_task, split) for split in ("train", "val", "test")}


def test_sizes_and_encoding(names_task):
    assert names_task.num_classes == 18 and names_task.class_names[0] == "Arabic"
    assert names_task.info["lines"] == 20074
    assert names_task.input_size == len(names_task.info["alphabet"]) + 1  # + the unknown slot
    part = names_task.train
    # One hot per real character, zeros after the length (the padding symbol is the zero vector).
    steps = torch.arange(names_task.seq_len)[None, :] < part.lengths[:, None]
    assert torch.equal(part.x.sum(2), steps.float())
    assert int(part.lengths.max()) == names_task.seq_len


def test_no_surname_in_two_splits(decoded):
    names = {split: {name for name, _ in decoded[split]} for split in decoded}
    assert not names["train"] & names["val"]
    assert not names["train"] & names["test"]
    assert not names["val"] & names["test"]


def test_duplicates_kept_once_and_multi_language_surnames_stay_together(names_task, decoded):
    every_row = [row for split in decoded.values() for row in split]
    assert len(every_row) == len(set(every_row))  # identical (surname, language) lines kept once
    raw = raw_lines()
    assert len(raw["Arabic"]) == 2000
    assert sum(language == "Arabic" for _, language in every_row) == len(set(raw["Arabic"])) == 108
    # Every surname listed under several languages keeps all its labels, in a single split.
    languages = defaultdict(set)
    for language, names in raw.items():
        for name in names:
            languages[name].add(language)
    several = {name: langs for name, langs in languages.items() if len(langs) > 1}
    assert len(several) >= 400
    split_of = defaultdict(set)
    labels = defaultdict(set)
    for split, split_rows in decoded.items():
        for name, language in split_rows:
            split_of[name].add(split)
            labels[name].add(language)
    # A real example: "Abel" is listed as English, French, German, Russian and Spanish.
    assert labels["Abel"] == {"English", "French", "German", "Russian", "Spanish"} and len(split_of["Abel"]) == 1
    alphabet = set(names_task.info["alphabet"])
    for name, langs in several.items():
        if len(name) <= names_task.seq_len and set(name) <= alphabet:  # decodes back to itself
            assert labels[name] == langs, name
            assert len(split_of[name]) == 1, name
    assert names_task.info["rows_after_dedup"] == len(every_row)


def test_split_is_about_70_10_20_within_each_language(decoded):
    for language in sorted({language for _, language in decoded["train"]}):
        sizes = {split: sum(lang == language for _, lang in decoded[split]) for split in decoded}
        total = sum(sizes.values())
        share = {split: n / total for split, n in sizes.items()}
        tolerance = 0.02 if total > 500 else 0.06
        assert share["train"] == pytest.approx(0.7, abs=tolerance), (language, sizes)
        assert share["val"] == pytest.approx(0.1, abs=tolerance), (language, sizes)
        assert share["test"] == pytest.approx(0.2, abs=tolerance), (language, sizes)


@pytest.mark.slow
def test_split_seed_is_recorded_and_decides_the_split(names_task):
    assert names_task.info["split_seed"] == 0 and "split seed 0" in names_task.info["split"]
    other = load_names(NAMES_DIR, split_seed=1)
    assert other.info["split_seed"] == 1
    assert {n for n, _ in rows(other, "test")} != {n for n, _ in rows(names_task, "test")}
    again = load_names(NAMES_DIR, split_seed=1)
    for split in ("train", "val", "test"):
        assert torch.equal(getattr(again, split).x, getattr(other, split).x)
        assert torch.equal(getattr(again, split).y, getattr(other, split).y)


@pytest.mark.slow
def test_folds_rotate_validation_through_train_and_validation_and_keep_the_test_split(names_task, decoded):
    tasks = {0: names_task, 1: load_names(NAMES_DIR, fold=1), 6: load_names(NAMES_DIR, fold=6)}
    folds = {k: {s: rows(t, s) for s in ("train", "val", "test")} for k, t in tasks.items()}
    held_out = {k: {name for name, _ in split["val"]} for k, split in folds.items()}
    for k, split in folds.items():
        # Each fold's alphabet is its own training split's: compare on the letters both know.
        known = set(tasks[k].info["alphabet"]) & set(names_task.info["alphabet"])

        def same(part: list[tuple[str, str]]) -> list[tuple[str, str]]:
            return sorted(("".join(c if c in known else UNKNOWN for c in name), lang) for name, lang in part)
        assert same(split["test"]) == same(decoded["test"])  # the test surnames never move
        assert not held_out[k] & {name for name, _ in split["train"]}  # no surname in train and validation
        assert same(split["train"] + split["val"]) == same(decoded["train"] + decoded["val"])
    assert not held_out[0] & held_out[1] and not held_out[1] & held_out[6] and not held_out[0] & held_out[6]
    with pytest.raises(ValueError, match="fold must be an int from 0 to 6, got 7"):
        load_names(NAMES_DIR, fold=7)


@pytest.mark.slow
def test_folder_and_tutorial_zip_give_the_same_split(names_task):
    from_zip = load_names(NAMES_ZIP)
    assert from_zip.class_names == names_task.class_names
    assert from_zip.info["alphabet"] == names_task.info["alphabet"]
    for split in ("train", "val", "test"):
        assert torch.equal(getattr(from_zip, split).x, getattr(names_task, split).x)
        assert torch.equal(getattr(from_zip, split).y, getattr(names_task, split).y)


def write_languages(folder: Path, languages: dict[str, list[str]]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for language, names in languages.items():
        (folder / f"{language}.txt").write_text("".join(n + "\n" for n in names), encoding="utf-8")
    return folder


def test_alphabet_comes_from_train_only(tmp_path):
    # "q" appears in one surname only; find a split seed that puts it outside train.
    folder = write_languages(tmp_path / "names", {
        "Alpha": ["Ab", "Abb", "Aba", "Abab", "Aqa", "Aab", "Abba", "Aaa", "Baab", "Bbb"],
        "Beta": ["Ba", "Bab", "Bba", "Baba", "Bbab", "Babb", "Bbba", "Bab", "Aabb", "Bbbb"],
    })
    for seed in range(50):
        task = load_names(folder, split_seed=seed)
        if "q" not in task.info["alphabet"]:
            break
    else:
        pytest.fail("no split seed in 0..49 put 'Aqa' outside the training split")
    assert set(task.info["alphabet"]) == {ch for name, _ in rows(task, "train") for ch in name}
    assert float(task.train.x[:, :, 0].sum()) == 0  # train never needs the unknown slot
    hits = [(split, name, language) for split in ("val", "test") for name, language in rows(task, split)
            if UNKNOWN in name]
    assert hits == [(hits[0][0], "A" + UNKNOWN + "a", "Alpha")]  # "q" -> index 0, its neighbours known


def test_non_ascii_letters_lose_their_accents(tmp_path):
    assert normalise("Müller") == "Muller"
    assert normalise(" Émile ") == "Emile"
    assert normalise("Nuñez") == "Nunez"
    assert unicodedata.normalize("NFC", normalise("Groß")) == "Groß"  # no decomposition: kept as is
    # Composed (NFC) and decomposed (NFD) spellings and the plain one are one surname after normalising.
    # (Five more surnames each: a language needs a test example.)
    folder = write_languages(tmp_path / "names", {
        "German": ["M\u00fcller", "Mu\u0308ller", "Muller", "Bauer", "Koch", "Wolf", "Klein", "Schulz"],
        "French": ["\u00c9mile", "E\u0301mile", "Petit", "Durand", "Moreau", "Simon", "Laurent"],
    })
    task = load_names(folder)
    assert task.info["lines"] == 15 and task.info["rows_after_dedup"] == task.info["distinct_surnames"] == 12
    assert task.info["alphabet"].isascii() and task.info["alphabet"].isalpha()  # no accent, no combining mark


@pytest.mark.parametrize("content", [b"", b"\n  \n"], ids=["no bytes", "blank lines only"])
def test_empty_language_file(content, tmp_path):
    folder = write_languages(tmp_path / "names", {"Alpha": ["Ab", "Ac"], "Gamma": ["Ga", "Gb"]})
    (folder / "Beta.txt").write_bytes(content)
    with pytest.raises(DataError, match=r"Beta\.txt: empty language file"):
        load_names(folder)


def test_file_not_utf8_names_file_and_line(tmp_path):
    folder = write_languages(tmp_path / "names", {"Alpha": ["Ab", "Ac"]})
    (folder / "German.txt").write_bytes("Schmidt\nWeber\nM\u00fcller\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"German\.txt: line 3: not valid UTF-8 \(byte 2\)$"):
        load_names(folder)


def test_truncated_zip_and_folder_without_languages(tmp_path):
    data = NAMES_ZIP.read_bytes()
    (tmp_path / "names.zip").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match=r"names\.zip: not a valid zip archive"):
        load_names(tmp_path / "names.zip")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"empty: no <Language>\.txt files"):
        load_names(tmp_path / "empty")


def copy_zip(source: Path, target: Path, extra: dict[str, str]) -> Path:
    """The real tutorial zip with extra members (name -> text) added."""
    with zipfile.ZipFile(source) as real, zipfile.ZipFile(target, "w") as copy:
        for info in real.infolist():
            copy.writestr(info, real.read(info))
        for member, text in extra.items():
            copy.writestr(member, text)
    return target


@pytest.mark.parametrize("member", ["data/names/../Evil.txt", "data/names/../../names/Evil.txt",
                                    "data/names\\..\\names\\Evil.txt", "/data/names/Evil.txt"])
def test_a_zip_member_outside_the_archive_folders_is_refused_not_a_class(tmp_path, member):
    archive = copy_zip(NAMES_ZIP, tmp_path / "names.zip", {member: "Mallory\nEve\n" * 10})
    with pytest.raises(DataError) as error:
        load_names(archive)
    assert str(error.value) == f"{archive}: member {member!r}: a path with '..' or an absolute path is refused"


def test_a_language_without_a_test_example_is_refused(tmp_path):
    # 3 distinct surnames: 2 go to training, 1 to validation, none to the 20% test split.
    folder = write_languages(tmp_path / "names", {"Tiny": ["Aab", "Bba", "Cca"]})
    for language in ("English", "German"):
        (folder / f"{language}.txt").write_bytes((NAMES_DIR / f"{language}.txt").read_bytes())
    with pytest.raises(DataError) as error:
        load_names(folder)
    assert str(error.value) == (f"{folder}: no test example of class Tiny (the test split holds 20% of each "
                                "language's surnames: give it at least 6 distinct ones)")
    write_languages(folder, {"Tiny": ["Aab", "Bba", "Cca", "Ddo", "Eeo", "Ffo"]})
    assert load_names(folder).class_names == ["English", "German", "Tiny"]

