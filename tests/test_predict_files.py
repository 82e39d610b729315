"""Model folders of users' own files, by kind: numeric series (aeon's GunPoint and JapaneseVowels .ts files, .npz,
.npy, CSV; equal and unequal lengths) and text (a surname,language CSV of the names data: arguments, stdin, a CSV
column) are predicted as the trained models compute on the task's own tensors; damaged series folders and bad
inputs are refused in one line. The slow tests go through the commands: search.fit, search.export, search.predict."""
from __future__ import annotations

import csv
import io
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import aeon.datasets
import numpy as np
import pytest
import torch
from aeon.datasets import load_from_ts_file

from data import Task, load_file
from data.text import encode, normalise
from conftest import assert_refused
from search.modelfolder import load_model, save_model
from search.modelschema import ModelError
from search.predict import parse, run
from search.predictor import InputError
from search.train import TrialSpec, train_seeds

ROOT = Path(__file__).resolve().parents[1]
AEON = Path(aeon.datasets.__file__).parent / "data"
NAMES_DIR = ROOT.parent / "shared" / "data" / "names"
SEEDS = [100, 101]
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def ts_file(problem: str, split: str = "TRAIN") -> Path:
    return AEON / problem / f"{problem}_{split}.ts"


def file_series(problem: str) -> list[np.ndarray]:
    """The test file's series as aeon reads them, each (T_i, C)."""
    values, _ = load_from_ts_file(str(ts_file(problem, "TEST")))
    return [np.asarray(s, dtype=np.float64).T for s in values]


@torch.inference_mode()
def in_memory(models, x, lengths) -> np.ndarray:
    """The ensemble's probabilities computed directly from the trained modules on the task's tensors."""
    return torch.stack([model(x, lengths).softmax(1) for model in models]).mean(0).double().numpy()


def trained_folder(task: Task, spec: TrialSpec, folder: Path) -> tuple[Path, list]:
    models = [r.model for r in train_seeds(spec, task, SEEDS, keep_models=True)]
    return save_model(folder, spec, task, models, SEEDS, {"tau": 0.0}, {}, {"study": task.name, "trial": 0}), models


def json_proba(*args: str) -> tuple[list[dict], np.ndarray]:
    """The command's JSON rows (in this process) and their probabilities in the model's class order."""
    folder = args[args.index("--model") + 1]
    rows = json.loads(run(parse(["--format", "json", *args]), warn=lambda line: None))
    names = load_model(folder).class_names
    return rows, np.array([[row["probabilities"][n] for n in names] for row in rows])


@pytest.fixture(scope="module")
def gunpoint() -> Task:
    return load_file(ts_file("GunPoint"))


@pytest.fixture(scope="module")
def gunpoint_model(gunpoint, tmp_path_factory) -> tuple[Path, list]:
    return trained_folder(gunpoint, TrialSpec(family="conv1d", width=8, norm=True, epochs=1),
                          tmp_path_factory.mktemp("gunpoint") / "model")


@pytest.fixture(scope="module")
def vowels() -> Task:
    return load_file(ts_file("JapaneseVowels"))


@pytest.fixture(scope="module")
def vowels_model(vowels, tmp_path_factory) -> tuple[Path, list]:
    return trained_folder(vowels, TrialSpec(family="gru", width=8, epochs=1),
                          tmp_path_factory.mktemp("vowels") / "model")


def surnames_csv(path: Path, per_language: int = 80) -> Path:
    """The names data as surname,language rows: the first surnames of four languages."""
    with open(path, "w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(["surname", "language"])
        for language in ("Greek", "Italian", "Japanese", "Polish"):
            lines = (NAMES_DIR / f"{language}.txt").read_text(encoding="utf-8").splitlines()
            writer.writerows((line.strip(), language) for line in lines[:per_language] if line.strip())
    return path


@pytest.fixture(scope="module")
def text_model(tmp_path_factory) -> tuple[Path, list, Task, Path]:
    table = surnames_csv(tmp_path_factory.mktemp("text") / "surnames.csv")
    task = load_file(table)
    folder, models = trained_folder(task, TrialSpec(family="gru", width=8, epochs=1, ngrams=3),
                                    tmp_path_factory.mktemp("text-model") / "model")
    return folder, models, task, table




# ---------------------------------------------------------------------------------------------
# Series


def test_a_series_folder_records_its_preprocessing_and_reads_every_format_as_trained(gunpoint, gunpoint_model,
                                                                                     tmp_path):
    folder, models = gunpoint_model
    card = json.loads((folder / "model.json").read_text())
    pre = card["preprocessing"]
    assert card["format"] == 2 and card["task"] == "GunPoint" and pre["kind"] == "series"
    assert pre["channels"] == ["dim_0"] and pre["steps"] == pre["seq_len"] == 150 and pre["input_size"] == 1
    assert pre["mean"] == gunpoint.info["standardisation"]["mean"] and pre["std"] == gunpoint.info["standardisation"]["std"]
    assert card["nouns"] == {"input": "series", "label": "class"}
    text = (folder / "model.md").read_text() + (folder / "model.json").read_text()
    assert "--model" in text and "GunPoint_TEST.ts" in text and str(AEON) not in text  # no machine path
    expected = in_memory(models, gunpoint.test.x, gunpoint.test.lengths)
    series = np.stack(file_series("GunPoint"))  # (150, 150, 1), in the test file's order, as the task's test split
    np.testing.assert_allclose(load_model(folder).predict_proba(series), expected, rtol=0, atol=1e-6)
    np.savez(tmp_path / "x.npz", x_test=series)
    np.save(tmp_path / "x.npy", series[:, :, 0])  # (N, T): one channel
    (tmp_path / "x.csv").write_text("".join(",".join(map(repr, s[:, 0].tolist())) + "\n" for s in series))
    for path in (ts_file("GunPoint", "TEST"), tmp_path / "x.npz", tmp_path / "x.npy", tmp_path / "x.csv"):
        rows, found = json_proba("--model", str(folder), "--batch-size", "64", str(path))
        assert [row["series"] for row in rows] == list(range(1, 151)), path
        np.testing.assert_allclose(found, expected, rtol=0, atol=1e-6, err_msg=str(path))
        assert [row["class"] for row in rows] == load_model(folder).predict(series)
    # A leading task word: the model's own (as a report writes it), checked against the folder.
    rows, found = json_proba("GunPoint", "--model", str(folder), str(ts_file("GunPoint", "TEST")))
    np.testing.assert_allclose(found, expected, rtol=0, atol=1e-6)


def test_unequal_lengths_from_ts_npz_nan_or_lengths_predict_as_trained_and_padding_changes_nothing(
        vowels, vowels_model, tmp_path):
    folder, models = vowels_model
    pre = json.loads((folder / "model.json").read_text())["preprocessing"]
    assert pre["steps"] is None and pre["seq_len"] == vowels.seq_len and len(pre["channels"]) == 12
    expected = in_memory(models, vowels.test.x, vowels.test.lengths)
    series = file_series("JapaneseVowels")
    lengths = np.array([len(s) for s in series])
    assert len(set(lengths)) > 1 and lengths.max() > vowels.seq_len  # unequal, and a test series longer: cut
    nan_padded = np.full((len(series), lengths.max(), 12), np.nan)
    noisy = np.random.default_rng(0).normal(size=nan_padded.shape) * 1e3  # anything after a series' length
    for i, s in enumerate(series):
        nan_padded[i, :len(s)] = noisy[i, :len(s)] = s
    np.savez(tmp_path / "nan.npz", x=nan_padded)
    np.savez(tmp_path / "lengths.npz", x_test=noisy, lengths_test=lengths, y_test=np.zeros(len(series), int))
    for path in (ts_file("JapaneseVowels", "TEST"), tmp_path / "nan.npz", tmp_path / "lengths.npz"):
        _, found = json_proba("--model", str(folder), "--batch-size", "50", str(path))
        np.testing.assert_allclose(found, expected, rtol=0, atol=1e-6, err_msg=str(path))
    # A CSV row holds C x T_i values, channel-major; a row longer than the longest training series is refused.
    kept = [i for i, s in enumerate(series) if len(s) <= vowels.seq_len][:60]
    rows = [",".join(map(repr, series[i].T.ravel().tolist())) for i in kept]
    (tmp_path / "x.csv").write_text("".join(row + "\n" for row in rows))
    _, found = json_proba("--model", str(folder), "--batch-size", "16", str(tmp_path / "x.csv"))
    np.testing.assert_allclose(found, expected[kept], rtol=0, atol=1e-6)
    (tmp_path / "bad.csv").write_text(rows[0] + "\n" + rows[1] + ",1.5\n")
    with pytest.raises(InputError, match=r"bad.csv: line 2: \d+ values, not a multiple of the 12 channels"):
        json_proba("--model", str(folder), str(tmp_path / "bad.csv"))
    predictor = load_model(folder)
    np.testing.assert_allclose(predictor.predict_proba(series), expected, rtol=0, atol=1e-6)
    np.testing.assert_allclose(predictor.predict_proba(noisy, lengths=lengths), expected, rtol=0, atol=1e-6)
    # Padding never changes a prediction: each series alone (no padding) as in a batch padded to the longest.
    alone = np.concatenate([predictor.predict_proba([s]) for s in series[:40]])
    np.testing.assert_allclose(alone, expected[:40], rtol=0, atol=1e-6)


@pytest.mark.slow
def test_bad_series_inputs_are_refused_in_one_line(gunpoint_model, tmp_path, command):
    folder = str(gunpoint_model[0])
    series = np.stack(file_series("GunPoint"))[:5]
    np.savez(tmp_path / "two.npz", x=np.repeat(series, 2, axis=2))
    nan = series.copy()
    nan[1, 9, 0] = np.nan
    np.save(tmp_path / "nan.npy", nan)
    short = series.copy()
    short[3, 100:] = np.nan
    np.save(tmp_path / "short.npy", short)
    (tmp_path / "x.csv").write_text("1,2,3\n")
    for args, message in (
            ([str(tmp_path / "two.npz")], "two.npz (array 'x'): series must have shape (N, 150, 1) with N >= 1 "
                                          "(steps x channels dim_0), got (5, 150, 2)"),
            ([str(ts_file("JapaneseVowels", "TEST"))], "JapaneseVowels_TEST.ts: series 1: series must have shape "
                                                       "(N, 150, 1) with N >= 1 (steps x channels dim_0), got (1, 19, 12)"),
            ([str(tmp_path / "nan.npy")], "nan.npy: series 2, channel dim_0, step 10: nan is not a finite number"),
            ([str(tmp_path / "short.npy")], "short.npy: series 4: 100 steps (the steps before NaN padding); this "
                                            "model takes exactly 150"),
            ([str(tmp_path / "x.csv")], "x.csv: line 1: expected 150 comma-separated values (1 channels x 150 steps), "
                                        "got 3"),
            ([str(AEON / "GunPoint")], "GunPoint: a folder is read as a UCI HAR 'Inertial Signals' folder, for models "
                                       "of its 9 channels x 128 steps; this model takes a .npy, .npz, .ts or .csv file"),
            (["--text-column", "x", str(tmp_path / "x.csv")], "--text-column applies to text models; this is a "
                                                              "series model"),
            (["names", "Abe"], f"--model {folder} holds a GunPoint model, not names")):
        assert_refused(command("--model", folder, *args), message)


def damaged(folder: Path, tmp_path: Path, change) -> str:
    copy = tmp_path / "model"
    shutil.copytree(folder, copy)
    card = json.loads((copy / "model.json").read_text())
    change(card["preprocessing"])
    (copy / "model.json").write_text(json.dumps(card))
    with pytest.raises(ModelError) as error:
        load_model(copy)
    assert "\n" not in str(error.value)
    return str(error.value)


@pytest.mark.parametrize("change, message", [
    (lambda p: p["std"].__setitem__(0, 0.0),
     "field preprocessing.std.0: Input should be greater than or equal to 0.000000000001, got 0.0"),
    (lambda p: p.update(mean=[0.0, 1.0]), "field preprocessing.mean: must hold 1 numbers (one per channel), got 2"),
    (lambda p: p.update(std=[]), "field preprocessing.std: must hold 1 numbers (one per channel), got 0"),
    (lambda p: p.update(channels=["a", "b"]), "field preprocessing.input_size: must be 2 (one per channel), got 1"),
    (lambda p: p.update(steps=100), "field preprocessing.steps: must be seq_len (150) or null, got 100"),
    (lambda p: p.update(kind="image"), "field preprocessing.kind: must be one of ['series', 'text'], got 'image'"),
    (lambda p: p.pop("kind"), "field preprocessing.kind: must be one of ['series', 'text'], got None"),
    (lambda p: p.update(colour="red"), "field preprocessing.colour: Extra inputs are not permitted, got 'red'"),
    (lambda p: p.update(mean=[float("nan")]), "field preprocessing.mean.0: Input should be a finite number"),
    (lambda p: p.update(kind="text"), "field preprocessing.alphabet: Field required"),
], ids=["zero std", "wrong-length mean", "empty std", "channels against input_size", "steps", "unknown kind",
        "no kind", "unknown field", "NaN mean", "series fields as text"])
def test_a_damaged_series_preprocessing_is_refused_naming_the_field(gunpoint_model, tmp_path, change, message):
    assert message in damaged(gunpoint_model[0], tmp_path, change)


# ---------------------------------------------------------------------------------------------
# Text


@pytest.mark.slow
def test_a_text_folder_predicts_arguments_stdin_and_a_csv_column_as_trained(text_model, tmp_path, command):
    folder, models, task, table = text_model
    card = json.loads((folder / "model.json").read_text())
    assert card["preprocessing"]["kind"] == "text" and card["preprocessing"]["alphabet"] == task.info["alphabet"]
    assert card["nouns"] == {"input": "text", "label": "label"} and card["data"]["source"] == "surnames.csv"
    assert "--text-column surname surnames.csv" in (folder / "model.md").read_text()
    with open(table, encoding="utf-8") as file:
        surnames = [row["surname"] for row in csv.DictReader(file)]
    alphabet = {ch: i + 1 for i, ch in enumerate(task.info["alphabet"])}
    expected = in_memory(models, *encode([normalise(s) for s in surnames], alphabet, task.seq_len))
    predictor = load_model(folder)
    np.testing.assert_allclose(predictor.predict_proba(surnames), expected, rtol=0, atol=1e-6)
    classes = predictor.class_names

    def found(rows):
        return np.array([[next(t["probability"] for t in row["top"] if t["label"] == c) for c in classes]
                         for row in rows])

    tops = ["--top", str(len(classes))]
    for args, stdin in ((surnames[:5], ""), (["-"], "\n".join(surnames[:5])),
                        ([str(table)], ""), (["--text-column", "surname", str(table)], "")):
        out = run(parse(["--model", str(folder), "--format", "json", *tops, *args]), stdin=io.StringIO(stdin),
                  warn=lambda line: None)
        rows = json.loads(out)
        count = 5 if len(rows) == 5 else len(surnames)
        assert [row["text"] for row in rows] == surnames[:count]
        np.testing.assert_allclose(found(rows), expected[:count], rtol=0, atol=1e-6)
    tsv = tmp_path / "names.tsv"
    tsv.write_text("id\tname\n1\tNakamura\n2\tRossi\n", encoding="utf-8")
    for args, message in (
            (["--text-column", "nope", str(table)], "surnames.csv: no column 'nope' (--text-column); columns found: "
                                                     "surname, language"),
            ([str(tsv)], "names.tsv: which column holds the texts? give --text-column (columns found: id, name)"),
            ([str(tmp_path / "none.csv")], "none.csv: no such file (an argument ending in .csv or .tsv is read as a table)"),
            (["Abe", " "], "text argument 2: empty text (' ')"),
            (["--text-column", "name", "Abe"], "--text-column applies to a .csv or .tsv INPUT; none was given")):
        assert_refused(command("--model", str(folder), *args), message)
    result = command("--model", str(folder), "--text-column", "name", str(tsv))
    assert result.returncode == 0 and [line.split()[0] for line in result.stdout.splitlines()] == ["Nakamura", "Rossi"]


# ---------------------------------------------------------------------------------------------
# The commands end to end: search.fit, search.export, search.predict


def in_subprocess(module: str, *args: str) -> subprocess.CompletedProcess:
    """`python -m module args` as a user runs it."""
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True, cwd=ROOT, timeout=600)


def fit_and_export(run, path: Path, tmp_path: Path, *options: str) -> tuple[Path, str]:
    """run(module, *args): in_subprocess, or the cli fixture (the same main() in this process)."""
    storage = f"sqlite:///{tmp_path / 'studies.db'}"
    fit = run("search.fit", str(path), "--trials", "1", "--storage", storage, "--workers", "1", "--seeds", "1",
              "--sampler-seed", "0", *options)
    assert fit.returncode == 0, fit.stderr
    study = re.sub(r"_TRAIN$", "", path.name.split(".")[0])
    out = tmp_path / "model"
    export = run("search.export", study, "--trial", "0", "--storage", storage, "--seeds", "2", "--out", str(out))
    assert export.returncode == 0, export.stderr
    assert f"predict: python -m search.predict --model {out} " in export.stdout
    return out, export.stdout


def predicted(run, *args: str) -> list[dict]:
    result = run("search.predict", "--format", "json", *args)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.mark.slow
@pytest.mark.parametrize("problem", ["GunPoint", "JapaneseVowels"])
def test_a_ts_study_is_fitted_exported_and_predicted_by_the_commands(problem, tmp_path, cli, monkeypatch):
    monkeypatch.chdir(ROOT)
    run = in_subprocess if problem == "GunPoint" else cli  # one as a user runs it; the other in this process
    out, _ = fit_and_export(run, ts_file(problem), tmp_path, "--family", "conv1d", "--epochs", "2")
    predictor = load_model(out)
    task = load_file(ts_file(problem))  # the study's data, read as the study read it
    expected = in_memory(predictor.models, task.test.x, task.test.lengths)
    series = file_series(problem)
    np.savez(tmp_path / "x.npz", x=np.stack(series) if problem == "GunPoint" else
             np.stack([np.pad(s, ((0, max(map(len, series)) - len(s)), (0, 0)), constant_values=np.nan)
                       for s in series]))
    for path in (ts_file(problem, "TEST"), tmp_path / "x.npz"):
        rows = predicted(run, "--model", str(out), str(path))
        proba = np.array([[row["probabilities"][n] for n in predictor.class_names] for row in rows])
        np.testing.assert_allclose(proba, expected, rtol=0, atol=1e-6, err_msg=str(path))
        np.testing.assert_allclose(proba, predictor.predict_proba(series), rtol=0, atol=1e-6)
    card = json.loads((out / "model.json").read_text())
    assert card["metrics"]["examples"] == len(series) and card["source"]["study"] == problem


@pytest.mark.slow
def test_a_text_csv_study_is_fitted_exported_and_predicted_by_the_commands(tmp_path, cli, monkeypatch):
    monkeypatch.chdir(ROOT)
    table = surnames_csv(tmp_path / "surnames.csv")
    out, stdout = fit_and_export(cli, table, tmp_path, "--family", "gru", "--epochs", "1")
    assert stdout.rstrip().endswith("--text-column surname surnames.csv")
    predictor = load_model(out)
    top = str(len(predictor.class_names))
    for args in (["Nakamura", "Rossi", "Kowalski"], [str(table), "--text-column", "surname"]):
        rows = predicted(cli, "--model", str(out), "--top", top, *args)
        texts = [row["text"] for row in rows]
        expected = predictor.predict_proba(texts, adjust=True)
        proba = np.array([[next(t["probability"] for t in row["top"] if t["label"] == n)
                           for n in predictor.class_names] for row in rows])
        np.testing.assert_allclose(proba, expected, rtol=0, atol=1e-6)
    assert len(rows) == len(table.read_text(encoding="utf-8").splitlines()) - 1
