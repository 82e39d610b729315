"""python -m search.predict on a real exported surname model: the three output formats, surnames as arguments and on
stdin, in batches, empty ones and characters outside the alphabet; damaged model folders and a logit-adjusted
model; invalid UTF-8, each batch printed before the input ends, and Ctrl-C. HAR windows: test_predict_har.py,
which shares this module's export and command helpers."""
from __future__ import annotations

import csv
import io
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from data import Split, Task
from conftest import assert_refused, foreground
from search.export import final_metrics, load_model, save_model
from search.predict import parse, run
from search.train import TrialSpec, train_seeds


ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def every(split: Split, step: int) -> Split:
    return Split(split.x[::step].clone(), split.y[::step].clone(), split.lengths[::step].clone())


def export(task: Task, spec: TrialSpec, folder: Path, tau: float = 0.0) -> Path:
    """A small real model: 1 epoch on every 10th-20th example, two final seeds."""
    small = Task(task.name, every(task.train, 10), every(task.val, 10), every(task.test, 10),
                 list(task.class_names), dict(task.info))
    models = [r.model for r in train_seeds(spec, small, [100, 101], test=True, keep_models=True)]
    return save_model(folder, spec, small, models, [100, 101], {"tau": tau}, final_metrics(models, small, tau),
                      {"study": task.name, "trial": 0})


@pytest.fixture(scope="module")
def names_model(names_task, tmp_path_factory) -> Path:
    return export(names_task, TrialSpec(family="gru", width=16, epochs=1), tmp_path_factory.mktemp("names") / "model")


def predict(*args: str, stdin: str = "") -> subprocess.CompletedProcess:
    """Run the command as a user does."""
    return subprocess.run([sys.executable, "-m", "search.predict", *args], input=stdin, capture_output=True,
                          text=True, cwd=ROOT, timeout=300)


def in_process(*args: str, stdin: str = "") -> str:
    """The library behind the command: the text it prints."""
    return run(parse(list(args)), stdin=io.StringIO(stdin), warn=lambda line: None)


@pytest.mark.slow
def test_names_text_lists_the_three_most_likely_languages(names_model):
    result = predict("names", "--model", str(names_model), "Nakamura", "O'Neill", "Schmidt")
    assert result.returncode == 0 and result.stderr == "", result.stderr
    proba = load_model(names_model).predict_proba(["Nakamura", "O'Neill", "Schmidt"])
    classes = load_model(names_model).class_names
    lines = result.stdout.splitlines()
    assert [line.split()[0] for line in lines] == ["Nakamura", "O'Neill", "Schmidt"]
    for line, row in zip(lines, proba):
        best = np.argsort(-row)[:3]
        assert line.split()[1:] == [v for j in best for v in (classes[j], f"{row[j]:.3f}")]


def test_names_json_and_csv_give_the_library_probabilities(names_model):
    surnames = ["Nakamura", "Abe", "Schmidt", "Kowalski"]
    proba = load_model(names_model).predict_proba(surnames)
    classes = load_model(names_model).class_names
    rows = json.loads(in_process("names", "--model", str(names_model), "--format", "json", *surnames))
    assert [row["surname"] for row in rows] == surnames
    for row, expected in zip(rows, proba):
        assert [t["language"] for t in row["top"]] == [classes[j] for j in np.argsort(-expected)[:3]]
        for t in row["top"]:
            assert t["probability"] == pytest.approx(expected[classes.index(t["language"])], abs=1e-6)
    table = list(csv.DictReader(io.StringIO(in_process("names", "--model", str(names_model), "--format", "csv",
                                                       "--top", "5", *surnames))))
    assert [row["surname"] for row in table] == surnames
    for row, expected in zip(table, proba):
        for k in range(1, 6):
            assert float(row[f"probability_{k}"]) == pytest.approx(expected[classes.index(row[f"language_{k}"])],
                                                                   abs=1e-6)


@pytest.mark.slow
def test_dash_reads_one_surname_per_line_from_stdin(names_model, command):
    stdin = "Nakamura\nSchmidt\nKowalski\n"
    result = command("names", "--model", str(names_model), "Abe", "-", "Zeller", stdin=stdin)
    assert result.returncode == 0, result.stderr
    assert [line.split()[0] for line in result.stdout.splitlines()] == ["Abe", "Nakamura", "Schmidt", "Kowalski",
                                                                        "Zeller"]


def test_thousands_of_surnames_in_batches_match_one_by_one(names_model):
    many = [f"{a}{b}ov" for a in ("Ab", "Ko", "Na", "Sch", "Mc") for b in map(str, range(500))]  # 2,500 inputs
    lines = in_process("names", "--model", str(names_model), "--format", "csv", "-", stdin="\n".join(many))
    assert len(lines.splitlines()) == 1 + len(many)
    predictor = load_model(names_model)
    batched = predictor.predict_proba(many)
    for i in (0, 1023, 1024, 2499):  # across the batch boundaries of 1024
        np.testing.assert_allclose(batched[i], predictor.predict_proba([many[i]])[0], rtol=0, atol=1e-6)


@pytest.mark.slow
def test_an_empty_surname_is_refused_naming_where_it_was(names_model, command):
    assert_refused(command("names", "--model", str(names_model), "-", stdin="Abe\nSchmidt\n\nZeller\n"),
                   "stdin line 3: empty surname")
    assert_refused(command("names", "--model", str(names_model), "Abe", "  ", "Zeller"),
                   "surname argument 2: empty surname ('  ')")
    assert_refused(command("names", "--model", str(names_model), "-", stdin=""), "stdin: no surnames")
    # Arguments are checked before the model folder is even looked at.
    assert_refused(command("names", "--model", str(names_model / "none"), "Abe", "  "),
                   "surname argument 2: empty surname ('  ')")


@pytest.mark.slow
def test_characters_outside_the_alphabet_go_to_the_unknown_slot_and_are_noted_once(names_model, command):
    result = command("names", "--model", str(names_model), "Øster", "Ødegård", "Wang")
    assert result.returncode == 0, result.stderr
    notes = result.stderr.splitlines()
    assert len(notes) == 1 and "not in the training alphabet" in notes[0] and "'Ø' (2x)" in notes[0]
    predictor = load_model(names_model)
    assert "Ø" not in predictor.alphabet and "å" not in predictor.alphabet  # å: NFKD turns it into a
    proba = predictor.predict_proba(["Øster", "Ødegard"])
    np.testing.assert_allclose(proba, predictor.predict_proba(["\x00ster", "\x00degard"]), atol=1e-7)


@pytest.mark.parametrize("damage, message", [
    ("missing", "no model folder there (make one with: python -m search.export STUDY --trial N)"),
    ("corrupt json", "model.json: corrupt (Expecting"),
    ("other format", "model format 99, but this version reads format 2 (or 1)"),
    ("missing weights", "seed-100.pt: missing; produce them with: python -m search.export STUDY --trial N"),
])
@pytest.mark.slow
def test_a_missing_corrupt_or_other_format_model_folder_is_refused(names_model, tmp_path, command, damage, message):
    folder = tmp_path / "model"
    if damage != "missing":
        shutil.copytree(names_model, folder)
    if damage == "corrupt json":
        (folder / "model.json").write_text("{\n")
    elif damage == "other format":
        card = json.loads((folder / "model.json").read_text())
        (folder / "model.json").write_text(json.dumps({**card, "format": 99}))
    elif damage == "missing weights":
        (folder / "weights" / "seed-100.pt").unlink()
    run_it = predict if damage == "missing" else command
    assert_refused(run_it("names", "--model", str(folder), "Abe"), message)


@pytest.mark.slow
def test_a_logit_adjusted_model_ranks_by_its_decision_rule(names_task, tmp_path, command):
    folder = export(names_task, TrialSpec(family="linear", epochs=1), tmp_path / "model", tau=1.0)
    predictor = load_model(folder)
    surnames = ["Nakamura", "Schmidt", "Smith", "Ivanov", "Nguyen", "Rossi"]
    result = command("names", "--model", str(folder), "--format", "json", *surnames)
    assert result.returncode == 0 and "logit-adjusted with tau = 1" in result.stderr
    rows = json.loads(result.stdout)
    assert [row["top"][0]["language"] for row in rows] == predictor.predict(surnames)
    adjusted = predictor.predict_proba(surnames, adjust=True)
    for row, expected in zip(rows, adjusted):
        assert row["top"][0]["probability"] == pytest.approx(expected.max(), abs=1e-6)


# ---------------------------------------------------------------------------------------------
# Streams, invalid UTF-8 and Ctrl-C


def raw_predict(*args, stdin: bytes = b"", env: dict | None = None) -> subprocess.CompletedProcess:
    """The command with bytes in and out (arguments may be bytes too), as a shell with any locale runs it."""
    result = subprocess.run([sys.executable, "-m", "search.predict", *args], input=stdin, capture_output=True,
                            cwd=ROOT, timeout=300, env={**os.environ, **(env or {})})
    return subprocess.CompletedProcess(result.args, result.returncode, result.stdout.decode(errors="replace"),
                                       result.stderr.decode(errors="replace"))


@pytest.mark.slow
def test_invalid_utf8_on_stdin_or_in_an_argument_is_refused_naming_it(names_model):
    # stdin under a strict decoder; an argument under the C locale (argv is decoded by the locale, not by stdin's).
    assert_refused(raw_predict("names", "--model", str(names_model), "-", stdin=b"Abe\n\xffNakamura\n",
                               env={"PYTHONIOENCODING": "utf-8:strict"}),
                   "stdin line 2: not valid UTF-8 (byte 0xff at position 1)")
    assert_refused(raw_predict("names", "--model", str(names_model), "Abe", b"Na\xffkamura",
                               env={"LC_ALL": "C", "LANG": "C"}),
                   "surname argument 2: not valid UTF-8 (byte 0xff at position 3)")
    # Valid UTF-8 goes through whatever the locale: a byte order mark is dropped, a name the locale cannot
    # print is escaped rather than a traceback.
    result = raw_predict("names", "--model", str(names_model), "-", stdin="\ufeffŚlusarski\nAbe\n".encode(),
                         env={"LC_ALL": "C", "LANG": "C", "PYTHONIOENCODING": "ascii"})
    assert result.returncode == 0, result.stderr
    assert [line.split()[0] for line in result.stdout.splitlines()] == ["\\u015alusarski", "Abe"]


def read_line(stream, seconds: float) -> str:
    """One line of a subprocess's unbuffered output (bufsize=0: select sees what Python has not read yet), or
    AssertionError when none comes within the seconds."""
    ready, _, _ = select.select([stream], [], [], seconds)
    assert ready, f"no output within {seconds} s"
    return stream.readline().decode()


@pytest.mark.slow
def test_names_prints_each_batch_before_the_input_ends(names_model):
    process = subprocess.Popen([sys.executable, "-m", "search.predict", "names", "--model", str(names_model),
                                "--format", "csv", "--batch-size", "2", "-"], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT, bufsize=0)
    try:
        process.stdin.write(b"Nakamura\nSchmidt\n")
        process.stdin.flush()  # stdin stays open: the command must answer these two without waiting for the rest
        lines = [read_line(process.stdout, 120) for _ in range(3)]
        assert lines[0].startswith("surname,language_1") and [l.split(",")[0] for l in lines[1:]] == ["Nakamura",
                                                                                                       "Schmidt"]
        process.stdin.write(b"Abe\n")
        process.stdin.close()
        rest = process.stdout.read().decode().splitlines()
        assert [line.split(",")[0] for line in rest] == ["Abe"] and process.wait(60) == 0
    finally:
        process.kill()
        process.wait()


@pytest.mark.slow
def test_ctrl_c_is_one_line_and_exit_130_while_importing_and_while_streaming(names_model):
    for moment in ("importing", "waiting for stdin"):
        process = subprocess.Popen([sys.executable, "-m", "search.predict", "names", "--model", str(names_model),
                                    "--batch-size", "1", "-"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, cwd=ROOT, bufsize=0, preexec_fn=foreground)
        try:
            if moment == "importing":
                time.sleep(0.5)  # torch takes seconds to import
            else:
                process.stdin.write(b"Nakamura\n")
                process.stdin.flush()
                assert read_line(process.stdout, 120).startswith("Nakamura")
            process.send_signal(signal.SIGINT)
            out, err = process.communicate(timeout=60)
        finally:
            process.kill()
        assert process.returncode == 130, (moment, err)
        assert err.decode() == "interrupted\n", (moment, err)
