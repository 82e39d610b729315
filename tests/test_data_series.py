"""A user's numeric sequences: UCR/UEA .ts files (the problems aeon's wheel ships) and NumPy .npz files.

Every file here is real data: aeon's BasicMotions (multivariate), JapaneseVowels (unequal lengths) and
GunPoint (univariate), and windows of UCI HAR written as an .npz with their subjects as groups.
"""
from __future__ import annotations

import re
from pathlib import Path

import aeon.datasets
import numpy as np
import pytest
import torch
from aeon.datasets import load_from_ts_file

from conftest import HAR_CHANNELS
from data import DataError, Split, Task, load_file
from data.har import read_signals
from data.splits import FOLDS

AEON = Path(aeon.datasets.__file__).parent / "data"


def ts_file(problem: str, split: str = "TRAIN") -> Path:
    return AEON / problem / f"{problem}_{split}.ts"


def raw(split: Split, info: dict) -> np.ndarray:
    """The series as they were in the file: the loader's standardisation undone, padding left at zero."""
    stats = info["standardisation"]
    x = split.x.numpy().astype(np.float64) * np.array(stats["std"]) + np.array(stats["mean"])
    steps = np.arange(x.shape[1])[None, :] < split.lengths.numpy()[:, None]
    return x * steps[:, :, None]


def origin(split: Split, info: dict, file_x: np.ndarray) -> np.ndarray:
    """For each series of a split, its row in the file's (N, T, C) array, found as the nearest series."""
    x = raw(split, info)
    steps = min(x.shape[1], file_x.shape[1])
    distance = ((x[:, None, :steps] - file_x[None, :, :steps]) ** 2).sum((2, 3))
    found = distance.argmin(1)
    assert distance[np.arange(len(x)), found].max() < 1e-6  # each series is in the file, up to float32 rounding
    return found


def real_steps(split: Split) -> np.ndarray:
    """(steps, C): every real step of a split, padding excluded."""
    return np.concatenate([split.x[i, :n].numpy() for i, n in enumerate(split.lengths.tolist())])


def assert_padding_is_zero(task: Task) -> None:
    for name in ("train", "val", "test"):
        part = getattr(task, name)
        after = torch.arange(task.seq_len)[None, :] >= part.lengths[:, None]
        assert float(part.x[after].abs().sum()) == 0, name
        assert int(part.lengths.min()) >= 1 and int(part.lengths.max()) <= task.seq_len


def test_univariate_gunpoint_with_its_test_file_beside_it():
    task = load_file(ts_file("GunPoint"))
    x_train, y_train = load_from_ts_file(str(ts_file("GunPoint")))
    x_test, y_test = load_from_ts_file(str(ts_file("GunPoint", "TEST")))
    assert task.name == "GunPoint" and task.info["kind"] == "series" and task.info["format"] == "ts"
    assert task.class_names == ["1", "2"] and task.input_size == 1 and task.seq_len == 150
    assert task.info["test_source"] == str(ts_file("GunPoint", "TEST"))
    assert len(task.train) + len(task.val) == len(y_train) == 50
    # The test file is the test split, in its order, untouched but for the training split's standardisation.
    np.testing.assert_allclose(raw(task.test, task.info), x_test.transpose(0, 2, 1), rtol=0, atol=1e-5)
    assert task.test.y.tolist() == [task.class_names.index(label) for label in y_test]
    # Standardised with the training split's statistics: mean 0 and std 1 there, not on validation or test.
    steps = real_steps(task.train)
    np.testing.assert_allclose(steps.mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(steps.std(0), 1, atol=1e-4)
    train_rows = origin(task.train, task.info, x_train.transpose(0, 2, 1))
    np.testing.assert_allclose(task.info["standardisation"]["mean"], [x_train[train_rows].mean()], rtol=1e-5)
    assert task.info["file"] == {"path": str(ts_file("GunPoint").resolve()), "split_seed": 0}


def test_multivariate_basic_motions_keeps_channels_and_the_header_class_names():
    task = load_file(ts_file("BasicMotions"))
    assert task.input_size == 6 and task.seq_len == 100
    assert task.info["channels"] == task.info["standardisation"]["channels"] == [f"dim_{c}" for c in range(6)]
    # The header's @classLabel order and spelling (aeon reads labels lowercase).
    assert task.class_names == ["Standing", "Running", "Walking", "Badminton"]
    counts = task.counts()
    assert [t + v for t, v in zip(counts["train"], counts["val"])] == [10, 10, 10, 10]
    assert counts["val"] == [2, 2, 2, 2]  # stratified: each class gives its fifth to validation
    assert counts["test"] == [10, 10, 10, 10]
    steps = real_steps(task.train)
    np.testing.assert_allclose(steps.mean(0), np.zeros(6), atol=1e-5)
    np.testing.assert_allclose(steps.std(0), np.ones(6), atol=1e-4)


@pytest.mark.slow
def test_unequal_lengths_are_padded_with_zeros_and_the_statistics_skip_the_padding():
    task = load_file(ts_file("JapaneseVowels"))
    x_train, _ = load_from_ts_file(str(ts_file("JapaneseVowels")))
    x_test, _ = load_from_ts_file(str(ts_file("JapaneseVowels", "TEST")))
    train_lengths = sorted(s.shape[1] for s in x_train)
    assert task.info["lengths"]["equal"] is False
    assert task.seq_len == task.info["standardisation"]["seq_len"] == max(task.train.lengths.tolist())
    assert sorted(task.train.lengths.tolist() + task.val.lengths.tolist()) == train_lengths
    # Test series longer than the longest training series are cut there, and counted.
    test_lengths = [s.shape[1] for s in x_test]
    assert task.test.lengths.tolist() == [min(n, task.seq_len) for n in test_lengths]
    assert task.info["truncated"]["test"] == sum(n > task.seq_len for n in test_lengths)
    assert_padding_is_zero(task)
    # The statistics are those of the training series' real steps; with the padding they would differ.
    padded = np.zeros((len(x_train), max(train_lengths), 12))
    for i, s in enumerate(x_train):
        padded[i, :s.shape[1]] = s.T
    rows = origin(task.train, task.info, padded)
    steps = np.concatenate([x_train[i].T for i in rows])
    np.testing.assert_allclose(task.info["standardisation"]["mean"], steps.mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(task.info["standardisation"]["std"], steps.std(0), rtol=1e-5)
    assert not np.allclose(task.info["standardisation"]["mean"], padded[rows].mean((0, 1)), rtol=0.05)


def test_folds_rotate_validation_through_the_training_file_and_keep_the_test_split():
    x_train, _ = load_from_ts_file(str(ts_file("GunPoint")))
    file_x = x_train.transpose(0, 2, 1)
    tasks = [load_file(ts_file("GunPoint"), fold=k) for k in range(FOLDS)]
    held = [set(origin(t.val, t.info, file_x).tolist()) for t in tasks]
    for k, task in enumerate(tasks):
        trained = set(origin(task.train, task.info, file_x).tolist())
        assert not trained & held[k] and trained | held[k] == set(range(len(file_x)))
        assert torch.equal(task.test.y, tasks[0].test.y)
        assert task.info["fold"] == k and f"part {k} of {FOLDS}" in task.info["split"]
    assert sum(map(len, held)) == len(file_x) and set.union(*held) == set(range(len(file_x)))  # disjoint, cover all
    with pytest.raises(ValueError, match=f"fold must be an int from 0 to {FOLDS - 1}, got {FOLDS}"):
        load_file(ts_file("GunPoint"), fold=FOLDS)


def test_split_seed_is_recorded_and_decides_the_validation_split():
    x_train, _ = load_from_ts_file(str(ts_file("BasicMotions")))
    file_x = x_train.transpose(0, 2, 1)
    first, other = load_file(ts_file("BasicMotions")), load_file(ts_file("BasicMotions"), split_seed=1)
    assert other.info["split_seed"] == 1 and "split seed 1" in other.info["split"]
    assert other.info["file"]["split_seed"] == 1
    assert set(origin(first.val, first.info, file_x)) != set(origin(other.val, other.info, file_x))
    again = load_file(ts_file("BasicMotions"), split_seed=1)
    assert torch.equal(again.val.x, other.val.x) and torch.equal(again.train.y, other.train.y)


# --- NumPy .npz: windows of UCI HAR, with their subjects as groups ---


@pytest.fixture(scope="module")
def har(tiny_har_dir) -> dict[str, np.ndarray]:
    """Every 50th window of the real UCI HAR train and test files: raw signals, activity ids and subjects."""
    arrays = {}
    for split in ("train", "test"):
        folder = tiny_har_dir / split
        arrays[f"x_{split}"] = read_signals(folder / "Inertial Signals")
        arrays[f"y_{split}"] = np.loadtxt(folder / f"y_{split}.txt", dtype=np.int64) - 1
        arrays[f"subjects_{split}"] = np.loadtxt(folder / f"subject_{split}.txt", dtype=np.int64)
    return arrays


ACTIVITIES = ["WALKING", "WALKING_UPSTAIRS", "WALKING_DOWNSTAIRS", "SITTING", "STANDING", "LAYING"]


def write_npz(path: Path, **arrays) -> Path:
    np.savez(path, **arrays)
    return path


def test_npz_with_groups_and_test_arrays(har, tmp_path):
    path = write_npz(tmp_path / "har_windows.npz", x_train=har["x_train"], y_train=har["y_train"],
                     groups_train=har["subjects_train"], x_test=har["x_test"], y_test=har["y_test"],
                     classes=np.array(ACTIVITIES))
    task = load_file(path)
    assert task.name == "har_windows" and task.info["format"] == "npz" and task.info["group_noun"] == "groups"
    assert task.class_names == ACTIVITIES and task.input_size == len(HAR_CHANNELS) and task.seq_len == 128
    assert "groups_train (21 groups)" in task.info["split"]
    # Validation is drawn from training by subject: no subject trains and validates.
    subject = {name: har["subjects_train"][origin(getattr(task, name), task.info, har["x_train"])]
               for name in ("train", "val")}
    assert not set(subject["train"]) & set(subject["val"])
    assert len(subject["train"]) + len(subject["val"]) == len(har["y_train"])
    # Stratified: each activity's share of validation is close to its share of the training file.
    share = np.bincount(task.val.y, minlength=6) / len(task.val)
    np.testing.assert_allclose(share, np.bincount(har["y_train"], minlength=6) / len(har["y_train"]), atol=0.08)
    # The test arrays are the test split, in order.
    assert task.test.y.tolist() == har["y_test"].tolist()
    np.testing.assert_allclose(raw(task.test, task.info), har["x_test"], atol=1e-5)


def test_npz_without_test_arrays_holds_out_a_fifth_of_the_groups(har, tmp_path):
    labels = np.array(ACTIVITIES)[har["y_train"]]  # string labels: the classes are their sorted names
    path = write_npz(tmp_path / "walks.npz", x_train=har["x_train"], y_train=labels,
                     groups_train=har["subjects_train"].astype(str))
    task = load_file(path)
    assert task.class_names == sorted(ACTIVITIES) and task.info["test_source"] is None
    subject = {name: set(har["subjects_train"][origin(getattr(task, name), task.info, har["x_train"])])
               for name in ("train", "val", "test")}
    assert not subject["train"] & subject["val"] and not subject["train"] & subject["test"]
    assert not subject["val"] & subject["test"]
    assert len(subject["test"]) == round(len(set(har["subjects_train"])) / 5)
    assert "20% of the groups held out" in task.info["split"]


def test_npz_with_lengths_pads_after_each_length(har, tmp_path):
    rng = np.random.default_rng(0)
    x = har["x_train"].copy()
    lengths = rng.integers(64, 129, len(x))
    for i, n in enumerate(lengths):
        x[i, n:] = np.nan  # beyond a series' length: never read
    path = write_npz(tmp_path / "cut.npz", x_train=x, y_train=har["y_train"], lengths_train=lengths,
                     x_test=har["x_test"], y_test=har["y_test"])
    task = load_file(path)
    assert_padding_is_zero(task)
    rows = {name: origin(getattr(task, name), task.info, np.nan_to_num(x)) for name in ("train", "val")}
    assert task.train.lengths.tolist() == lengths[rows["train"]].tolist()
    assert task.seq_len == lengths[rows["train"]].max()
    expected = np.concatenate([x[i, :lengths[i]] for i in rows["train"]]).mean(0)
    np.testing.assert_allclose(task.info["standardisation"]["mean"], expected, rtol=1e-4, atol=1e-6)


# --- Refused files: one line naming the file and the problem, nothing written ---


def corrupt_ts(tmp_path: Path, problem: str, edit) -> Path:
    """Copies of a real problem's training and test files, both edited (the training file is read first)."""
    tmp_path.mkdir()
    for split in ("TRAIN", "TEST"):
        text = ts_file(problem, split).read_text(encoding="utf-8")
        (tmp_path / f"{problem}_{split}.ts").write_text(edit(text), encoding="utf-8")
    return tmp_path / f"{problem}_TRAIN.ts"


TS_CASES = {
    "dimensions": ("BasicMotions", lambda text: text.replace("@dimensions 6", "@dimensions 5"),
                   r"BasicMotions_TRAIN\.ts: the header says @dimensions 5, but the series have 6 channel\(s\)$"),
    "class label": ("BasicMotions", lambda text: text.replace(" Badminton\n", "\n", 1),
                    r"BasicMotions_TRAIN\.ts: the header's @classLabel lists Standing Running Walking, but series "
                    r"\d+ is labelled 'badminton'$"),
    "series length": ("GunPoint", lambda text: text.replace("@seriesLength 150", "@seriesLength 140"),
                      r"GunPoint_TRAIN\.ts: the header says @seriesLength 140, but the series are 150 steps long$"),
    "univariate": ("BasicMotions", lambda text: text.replace("@univariate false", "@univariate true"),
                   r"BasicMotions_TRAIN\.ts: not a readable \.ts file \(Seen 6 in case 2\.Expecting univariate"),
    "equal length": ("JapaneseVowels", lambda text: text.replace("@equalLength false", "@equalLength true"),
                     r"JapaneseVowels_TRAIN\.ts: not a readable \.ts file \(.*equal length == True"),
    "missing value": ("GunPoint", lambda text: re.sub(r"(@data\n[^,]*,[^,]*,)[^,]*", r"\1NaN", text),
                      r"GunPoint_TRAIN\.ts: series 1 step 2 channel 0 is nan \(missing or infinite values are refused"),
    "declared class never seen": ("GunPoint", lambda text: text.replace("true 1 2\n", "true 1 2 3\n"),
                                  r"GunPoint_TRAIN\.ts: class '3' has no training example$"),
    "one class": ("GunPoint", lambda text: re.sub(r":2\n", ":1\n", text).replace("true 1 2\n", "true 1\n"),
                  r"GunPoint_TRAIN\.ts: one class only \('1'\); classification needs at least 2$"),
}


@pytest.mark.parametrize("case", list(TS_CASES))
def test_a_ts_file_that_lies_is_refused_in_one_line(case, tmp_path, isolated_data_env):
    problem, edit, message = TS_CASES[case]
    path = corrupt_ts(tmp_path / "files", problem, edit)
    before = sorted(p.name for p in tmp_path.rglob("*"))
    with pytest.raises(DataError, match=message) as refused:
        load_file(path)
    assert "\n" not in str(refused.value)
    assert sorted(p.name for p in tmp_path.rglob("*")) == before  # nothing written, no cache either


def test_a_test_file_with_a_class_the_training_file_lacks(tmp_path):
    test = tmp_path / "GunPoint_TEST.ts"
    test.write_text(ts_file("GunPoint", "TEST").read_text().replace("@classLabel true 1 2", "@classLabel true 1 2 3")
                    .replace(":2\n", ":3\n", 1))
    with pytest.raises(DataError, match=r"GunPoint_TEST\.ts: label '3' is not a class of the training file "
                                        r"GunPoint_TRAIN\.ts \(1 2\)$"):
        load_file(ts_file("GunPoint"), test=test)


def npz_cases(har) -> dict[str, tuple[dict, str]]:
    x, y = har["x_train"], har["y_train"]
    nan = x.copy()
    nan[7, 30, 2] = np.nan
    ragged = np.empty(2, dtype=object)
    ragged[0], ragged[1] = x[0], x[1, :100]
    return {
        "nan": (dict(x_train=nan, y_train=y), r"x_train\[7\] step 30 channel 2 is nan \(missing or infinite values"),
        "ragged": (dict(x_train=ragged, y_train=y[:2]), r"array 'x_train' is ragged or holds Python objects"),
        "one class": (dict(x_train=x, y_train=np.zeros_like(y)), r"one class only \('0'\)"),
        "class without training example": (dict(x_train=x, y_train=y, classes=np.array(ACTIVITIES + ["RUNNING"])),
                                           r"class 'RUNNING' has no training example$"),
        "test label unseen": (dict(x_train=x[y != 5], y_train=y[y != 5], x_test=har["x_test"], y_test=har["y_test"]),
                              r"y_test holds label '5', which is not in y_train \(0, 1, 2, 3, 4\)$"),
        "rows disagree": (dict(x_train=x, y_train=y[:-1]), r"y_train has \d+ rows but x has \d+$"),
        "float labels": (dict(x_train=x, y_train=y.astype(float)), r"y_train must hold integers or strings, got "
                                                                   r"dtype float64$"),
        "a typo": (dict(x_train=x, y_train=y, group_train=har["subjects_train"]),
                   r"unexpected array\(s\) \['group_train'\]; an \.npz holds x_train, y_train, groups_train"),
        "no labels": (dict(x_train=x), r"no array 'y_train' \(arrays found: x_train\)$"),
        "length beyond the steps": (dict(x_train=x, y_train=y, lengths_train=np.full(len(y), 129)),
                                    r"lengths_train\[0\] is 129, outside 1\.\.128"),
    }


def test_a_bad_npz_is_refused_in_one_line(har, tmp_path):
    for case, (arrays, message) in npz_cases(har).items():
        folder = tmp_path / case.replace(" ", "_")
        folder.mkdir()
        path = write_npz(folder / "bad.npz", **arrays)
        with pytest.raises(DataError, match=rf"^{re.escape(str(path))}: {message}") as refused:
            load_file(path)
        assert "\n" not in str(refused.value), case
        assert [p.name for p in folder.iterdir()] == ["bad.npz"], case


def test_the_entry_point_refuses_what_it_cannot_read(tmp_path):
    with pytest.raises(DataError, match=r"missing\.ts: no such file$"):
        load_file(tmp_path / "missing.ts")
    (tmp_path / "data.parquet").write_bytes(b"PAR1")
    with pytest.raises(DataError, match=r"data\.parquet: unknown file type '\.parquet'; expected one of \.ts, \.npz"):
        load_file(tmp_path / "data.parquet")
    with pytest.raises(DataError, match=r"GunPoint_TRAIN\.ts: label_column apply to text files"):
        load_file(ts_file("GunPoint"), label_column="class")
    with pytest.raises(DataError, match=r"GunPoint_TEST\.ts: a _TEST file; pass its _TRAIN file"):
        load_file(ts_file("GunPoint", "TEST"))
    with pytest.raises(ValueError, match=r"split_seed must be an int, got '1'"):
        load_file(ts_file("GunPoint"), split_seed="1")
