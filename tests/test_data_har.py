"""UCI HAR: counts from the files, split by subject, standardised on train, cached, strict about bad input."""
from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import HAR_CHANNELS, HAR_PREFIX, HAR_ZIP
from data import DataError, load_har
from data.har import FOLDS, VAL_SUBJECTS, fold_subjects


def zip_lines(member: str) -> list[str]:
    with zipfile.ZipFile(HAR_ZIP) as archive:
        return archive.read(HAR_PREFIX + member).decode().splitlines()


def test_counts_come_from_the_files(har_task):
    train_labels, test_labels = zip_lines("train/y_train.txt"), zip_lines("test/y_test.txt")
    assert len(train_labels) == 7415 and len(test_labels) == 2996  # not the public archive's 7352 / 2947
    assert len(har_task.train) + len(har_task.val) == len(train_labels)
    assert len(har_task.test) == len(test_labels)
    train_subjects = np.array(zip_lines("train/subject_train.txt"), dtype=int)
    assert len(har_task.val) == np.isin(train_subjects, VAL_SUBJECTS).sum()
    # Shapes: (N, 128 steps, 9 channels), labels 0..5, every window full length.
    assert har_task.train.x.shape[1:] == (128, 9) and har_task.input_size == 9 and har_task.seq_len == 128
    assert har_task.num_classes == 6 and har_task.class_names[0] == "WALKING"
    assert bool((har_task.train.lengths == 128).all())
    # Class counts over train + val equal the label file's, shifted from 1..6 to 0..5.
    counts = har_task.counts()
    file_counts = np.bincount(np.array(train_labels, dtype=int) - 1, minlength=6)
    assert [a + b for a, b in zip(counts["train"], counts["val"])] == file_counts.tolist()


def test_no_subject_is_in_two_splits(har_task):
    subjects = har_task.info["subjects"]
    train, val, test = (set(subjects[s]) for s in ("train", "val", "test"))
    assert not train & val and not train & test and not val & test
    assert train | val | test == set(range(1, 31))
    assert val == set(VAL_SUBJECTS)
    assert test == {2, 4, 9, 10, 12, 13, 18, 20, 24}


@pytest.mark.slow
def test_folds_validate_on_other_training_subjects_and_keep_the_test_split(har_task, har_cache, monkeypatch):
    train_subjects = har_task.info["subjects"]["train"] + har_task.info["subjects"]["val"]
    folds = [set(fold_subjects(train_subjects, k)) for k in range(FOLDS)]
    assert folds[0] == set(VAL_SUBJECTS)  # fold 0 is the search's split
    assert set().union(*folds) == set(train_subjects) and sum(map(len, folds)) == len(train_subjects)
    monkeypatch.setenv("DATA_CACHE", str(har_cache))
    fold = load_har(HAR_ZIP, fold=2)
    assert set(fold.info["subjects"]["val"]) == folds[2] and fold.info["fold"] == 2
    assert set(fold.info["subjects"]["train"]) == set(train_subjects) - folds[2]
    assert torch.equal(fold.test.y, har_task.test.y) and len(fold.train) + len(fold.val) == len(har_task.train) + len(har_task.val)
    # Its own training subjects standardise it, so the test windows' values differ from fold 0's.
    assert fold.info["standardisation"] != har_task.info["standardisation"]
    with pytest.raises(ValueError, match="fold must be an int from 0 to 3, got 4"):
        load_har(HAR_ZIP, fold=4)


def test_refit_trains_on_the_training_and_validation_subjects_and_keeps_the_rest(har_task):
    refit = har_task.refit()
    counts, before = refit.counts(), har_task.counts()
    assert counts["train"] == [t + v for t, v in zip(before["train"], before["val"])]
    assert torch.equal(refit.train.x[len(har_task.train):], har_task.val.x)  # the validation windows, as they were
    assert refit.val is har_task.val and refit.test is har_task.test
    # Preprocessing keeps the training subjects' statistics: the windows are not re-standardised.
    assert refit.info["standardisation"] == har_task.info["standardisation"] and refit.info["refit"]
    assert "refit: train + validation" in refit.info["split"] and "refit" not in har_task.info


@pytest.mark.slow
def test_standardisation_uses_training_subjects_only(har_task):
    subjects = np.array(zip_lines("train/subject_train.txt"), dtype=int)
    is_train = np.isin(subjects, har_task.info["subjects"]["train"])
    stats = har_task.info["standardisation"]
    with zipfile.ZipFile(HAR_ZIP) as archive:
        for c, channel in enumerate(HAR_CHANNELS):
            raw = archive.read(f"{HAR_PREFIX}train/Inertial Signals/{channel}_train.txt")
            windows = np.loadtxt(io.BytesIO(raw), dtype=np.float64)[is_train]
            assert stats["mean"][c] == pytest.approx(windows.mean(), rel=1e-4, abs=1e-6), channel
            assert stats["std"][c] == pytest.approx(windows.std(), rel=1e-4), channel
    train_mean = har_task.train.x.double().mean(dim=(0, 1))
    train_std = har_task.train.x.double().std(dim=(0, 1))
    assert torch.allclose(train_mean, torch.zeros(9, dtype=torch.float64), atol=1e-4)
    assert torch.allclose(train_std, torch.ones(9, dtype=torch.float64), atol=1e-3)
    # Validation and test were scaled with the training statistics, not their own: not exactly centred.
    assert har_task.val.x.double().mean(dim=(0, 1)).abs().max() > 1e-2
    assert har_task.test.x.double().mean(dim=(0, 1)).abs().max() > 1e-2


@pytest.mark.slow
def test_second_load_reads_the_npz_cache(har_task, har_cache, monkeypatch):
    cached = Path(har_task.info["cache"])
    assert cached.parent == har_cache and cached.suffix == ".npz" and cached.exists()
    before = cached.stat()
    monkeypatch.setenv("DATA_CACHE", str(har_cache))
    started = time.perf_counter()
    again = load_har(HAR_ZIP)
    seconds = time.perf_counter() - started
    print(f"HAR load: first {har_task.info['first_load_seconds']:.2f} s (parse), second {seconds:.2f} s (npz cache)")
    assert again.info["cache"] == str(cached)
    after = cached.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)  # read, not rewritten
    assert sorted(p.name for p in har_cache.iterdir()) == [cached.name]
    for split in ("train", "val", "test"):
        assert torch.equal(getattr(again, split).x, getattr(har_task, split).x)
        assert torch.equal(getattr(again, split).y, getattr(har_task, split).y)


@pytest.mark.slow
def test_cache_follows_edits_of_a_folder_source(tiny_har_dir, tmp_path, isolated_data_env):
    """A file edited in place (the folder's own mtime does not change) must not serve stale arrays."""
    folder = shutil.copytree(tiny_har_dir, tmp_path / "UCI HAR Dataset")
    first = load_har(folder)
    labels = folder / "train" / "y_train.txt"
    lines = labels.read_text().splitlines()
    lines[0] = "6" if lines[0] != "6" else "1"
    labels.write_text("".join(line + "\n" for line in lines))
    second = load_har(folder)
    assert second.info["cache"] != first.info["cache"]
    first_labels = torch.cat([first.train.y, first.val.y])
    second_labels = torch.cat([second.train.y, second.val.y])
    assert int((first_labels != second_labels).sum()) == 1


def test_tiny_folder_loads_and_its_statistics_are_its_own(tiny_har_dir, isolated_data_env):
    task = load_har(tiny_har_dir)
    subjects = np.loadtxt(tiny_har_dir / "train" / "subject_train.txt", dtype=int)
    assert len(task.train) + len(task.val) == len(subjects) == 149
    assert len(task.test) == len(np.loadtxt(tiny_har_dir / "test" / "y_test.txt"))
    is_train = ~np.isin(subjects, VAL_SUBJECTS)
    for c, channel in enumerate(HAR_CHANNELS):
        windows = np.loadtxt(tiny_har_dir / "train" / "Inertial Signals" / f"{channel}_train.txt")[is_train]
        assert task.info["standardisation"]["mean"][c] == pytest.approx(windows.mean(), rel=1e-4, abs=1e-6)
    # Explicit validation subjects, and ones that are not UCI-train subjects.
    other = load_har(tiny_har_dir, val_subjects=(1, 3))
    assert other.info["subjects"]["val"] == [1, 3]
    with pytest.raises(DataError, match=r"val_subjects must be UCI-train subjects .*got \[2\]"):
        load_har(tiny_har_dir, val_subjects=(2,))  # subject 2 is a test subject


def zip_folder(folder: Path, archive: Path) -> Path:
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as out:
        for file in sorted(folder.rglob("*")):
            if file.is_file():
                out.write(file, f"{HAR_PREFIX}{file.relative_to(folder)}")
    return archive


@pytest.mark.slow
def test_zip_of_the_tiny_folder_loads_the_same(tiny_har_dir, tmp_path, isolated_data_env):
    from_folder = load_har(tiny_har_dir)
    from_zip = load_har(zip_folder(tiny_har_dir, tmp_path / "tiny.zip"))
    assert torch.equal(from_folder.train.x, from_zip.train.x) and torch.equal(from_folder.test.y, from_zip.test.y)


def edit_line(file: Path, number: int, change) -> None:
    lines = file.read_text().splitlines()
    lines[number - 1] = change(lines[number - 1])
    file.write_text("".join(line + "\n" for line in lines))


SIGNAL = "train/Inertial Signals/body_gyro_y_train.txt"
BAD_FOLDERS = {
    # name: (file, how it is broken, what the message must say)
    "127 values": (SIGNAL, lambda f: edit_line(f, 7, lambda l: " ".join(l.split()[:-1])),
                   r"body_gyro_y_train\.txt: line 7: expected 128 values, got 127"),
    "129 values": (SIGNAL, lambda f: edit_line(f, 3, lambda l: l + " 0.5"),
                   r"body_gyro_y_train\.txt: line 3: expected 128 values, got 129"),
    "label 7": ("train/y_train.txt", lambda f: edit_line(f, 12, lambda l: "7"),
                r"y_train\.txt: line 12: label 7 outside 1\.\.6"),
    "row dropped": ("test/Inertial Signals/total_acc_z_test.txt",
                    lambda f: f.write_text("".join(l + "\n" for l in f.read_text().splitlines()[:-1])),
                    r"total_acc_z_test\.txt: \d+ rows but .*y_test\.txt has \d+"),
    "subject row dropped": ("train/subject_train.txt",
                            lambda f: f.write_text("".join(l + "\n" for l in f.read_text().splitlines()[1:])),
                            r"subject_train\.txt: 148 rows but .*y_train\.txt has 149"),
    "not a number": (SIGNAL, lambda f: edit_line(f, 20, lambda l: l.replace(l.split()[5], "abc", 1)),
                     r"body_gyro_y_train\.txt: line 20: not a number in field 6: 'abc'$"),
    "inf value": ("test/Inertial Signals/body_acc_x_test.txt",
                  lambda f: edit_line(f, 9, lambda l: " ".join(l.split()[:99] + ["inf"] + l.split()[100:])),
                  r"body_acc_x_test\.txt: line 9: field 100: 'inf' is not a finite number$"),
    "nan value": (SIGNAL, lambda f: edit_line(f, 2, lambda l: "NaN " + " ".join(l.split()[1:])),
                  r"body_gyro_y_train\.txt: line 2: field 1: 'NaN' is not a finite number$"),
    "beyond float32": (SIGNAL, lambda f: edit_line(f, 4, lambda l: " ".join(l.split()[:-1] + ["1e39"])),
                       r"body_gyro_y_train\.txt: line 4: field 128: '1e39' is not a finite number$"),
    "missing file": ("test/y_test.txt", lambda f: f.unlink(), r"y_test\.txt: missing|missing member '.*y_test\.txt'"),
}


@pytest.mark.parametrize("case", list(BAD_FOLDERS))
@pytest.mark.slow
def test_bad_folder_names_file_and_line_and_caches_nothing(case, tiny_har_dir, tmp_path, isolated_data_env):
    member, breaks, message = BAD_FOLDERS[case]
    folder = shutil.copytree(tiny_har_dir, tmp_path / "UCI HAR Dataset")
    breaks(folder / member)
    with pytest.raises(DataError, match=message) as error:
        load_har(folder)
    print(error.value)
    assert "\n" not in str(error.value)
    assert not isolated_data_env.exists() or list(isolated_data_env.iterdir()) == []
    # The same break inside a zip archive names the archive member.
    with pytest.raises(DataError, match=message) as error:
        load_har(zip_folder(folder, tmp_path / "bad.zip"))
    assert "bad.zip:" in str(error.value)
    assert not isolated_data_env.exists() or list(isolated_data_env.iterdir()) == []


def test_truncated_or_corrupt_zip(tiny_har_dir, tmp_path, isolated_data_env):
    good = zip_folder(tiny_har_dir, tmp_path / "good.zip").read_bytes()
    truncated = tmp_path / "truncated.zip"
    truncated.write_bytes(good[: len(good) // 2])
    with pytest.raises(DataError, match=r"truncated\.zip: not a valid zip archive"):
        load_har(truncated)
    # Same length, a few bytes flipped inside the compressed data of a member: the CRC check or the
    # decompressor catches it, and either way it is one DataError line, never a traceback.
    with zipfile.ZipFile(io.BytesIO(good)) as archive:
        members = [info for info in archive.infolist() if info.compress_size > 64]
    for number, info in enumerate(members):
        name_and_extra = int.from_bytes(good[info.header_offset + 26:info.header_offset + 28], "little") + \
            int.from_bytes(good[info.header_offset + 28:info.header_offset + 30], "little")
        middle = info.header_offset + 30 + name_and_extra + info.compress_size // 2
        corrupt = bytearray(good)
        corrupt[middle:middle + 8] = bytes(b ^ 0xFF for b in corrupt[middle:middle + 8])
        (tmp_path / f"corrupt{number}.zip").write_bytes(bytes(corrupt))
        with pytest.raises(DataError, match=rf"corrupt{number}\.zip: (not a valid zip archive|corrupt member)"):
            load_har(tmp_path / f"corrupt{number}.zip")
    not_har = tmp_path / "other"
    not_har.mkdir()
    with pytest.raises(DataError, match=r"no 'train/y_train\.txt' below this folder"):
        load_har(not_har)
    assert not isolated_data_env.exists() or list(isolated_data_env.iterdir()) == []


@pytest.mark.parametrize("damage", ["truncated", "garbage", "wrong arrays"])
def test_damaged_cache_file_is_named_discarded_and_rebuilt(damage, tiny_har_dir, isolated_data_env, capfd):
    first = load_har(tiny_har_dir)
    cached = Path(first.info["cache"])
    if damage == "truncated":  # e.g. a disk that filled up, or a copy cut short
        cached.write_bytes(cached.read_bytes()[: cached.stat().st_size // 2])
    elif damage == "garbage":
        cached.write_bytes(b"not a zip at all")
    else:
        np.savez(cached, x_train=np.zeros((2, 5, 9)))
    capfd.readouterr()
    again = load_har(tiny_har_dir)
    warning = capfd.readouterr().err
    assert warning.count("\n") == 1 and str(cached) in warning and "damaged cache file" in warning
    assert torch.equal(again.train.x, first.train.x) and torch.equal(again.test.y, first.test.y)
    with np.load(cached) as npz:  # rebuilt whole
        assert npz["x_train"].shape[1:] == (128, 9)


@pytest.mark.slow
def test_stale_part_file_of_a_killed_write_is_removed(tiny_har_dir, isolated_data_env):
    first = load_har(tiny_har_dir)
    cached = Path(first.info["cache"])
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = cached.with_name(f".{cached.name}.{int(dead.stdout)}.part.npz")  # data/files.py's temporary name
    stale.write_bytes(b"half a cache file")
    mine = cached.with_name(f".{cached.name}.{os.getpid()}.part.npz")  # a write still going on: kept
    mine.write_bytes(b"in progress")
    load_har(tiny_har_dir)
    assert not stale.exists() and mine.exists()
    mine.unlink()
