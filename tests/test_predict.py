"""python -m search.predict on real exported models: surnames and HAR windows in every accepted
form, the three output formats, and one line with exit code 2 for each kind of bad input."""
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
from data.har import CHANNELS, read_signals
from conftest import assert_refused, foreground
from search.export import final_metrics, load_model, save_model
from search.predict import parse, run
from search.predictor import InputError
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


@pytest.fixture(scope="module")
def har_model(har_task, tmp_path_factory) -> Path:
    return export(har_task, TrialSpec(family="conv1d", width=16, epochs=1), tmp_path_factory.mktemp("har") / "model")


@pytest.fixture(scope="module")
def windows(tiny_har_dir) -> np.ndarray:
    """Raw windows of real test recordings (every 50th), as the UCI files hold them."""
    return read_signals(tiny_har_dir / "test" / "Inertial Signals")


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


@pytest.mark.parametrize("form", ["folder", "uci split folder", "npy", "npz", "csv"])
def test_har_accepts_a_folder_npy_npz_or_csv_with_the_same_result(har_model, windows, tiny_har_dir, tmp_path, form):
    if form == "folder":
        path = tiny_har_dir / "test" / "Inertial Signals"
    elif form == "uci split folder":
        path = tiny_har_dir / "test"
    elif form == "npy":
        path = tmp_path / "windows.npy"
        np.save(path, windows)
    elif form == "npz":
        path = tmp_path / "windows.npz"
        np.savez(path, x=windows)
    else:  # one window per row, channel-major: the 9 UCI files side by side
        path = tmp_path / "windows.csv"
        rows = windows.transpose(0, 2, 1).reshape(len(windows), -1)
        path.write_text("".join(",".join(repr(float(v)) for v in row) + "\n" for row in rows))
    rows = json.loads(in_process("har", "--model", str(har_model), "--format", "json", str(path)))
    predictor = load_model(har_model)
    expected = predictor.predict_proba(windows)
    assert [row["window"] for row in rows] == list(range(1, len(windows) + 1))
    found = np.array([[row["probabilities"][name] for name in predictor.class_names] for row in rows])
    np.testing.assert_allclose(found, expected, rtol=0, atol=1e-6)
    assert [row["activity"] for row in rows] == predictor.predict(windows)


@pytest.mark.slow
def test_har_text_and_csv_print_the_activity_and_every_class_probability(har_model, windows, tiny_har_dir):
    folder = str(tiny_har_dir / "test" / "Inertial Signals")
    result = predict("har", "--model", str(har_model), folder)  # as a user runs it
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    predictor = load_model(har_model)
    assert lines[0].split() == ["window", "activity"] + predictor.class_names
    assert len(lines) == 1 + len(windows)
    assert [line.split()[1] for line in lines[1:]] == predictor.predict(windows)
    table = list(csv.reader(io.StringIO(in_process("har", "--model", str(har_model), "--format", "csv", folder))))
    assert table[0] == ["window", "activity"] + predictor.class_names
    np.testing.assert_allclose(np.array([row[2:] for row in table[1:]], dtype=float),
                               predictor.predict_proba(windows), atol=1e-6)


def bad_input(kind: str, windows: np.ndarray, tiny_har_dir: Path, tmp_path: Path) -> Path:
    if kind == "npy shape":
        np.save(tmp_path / "x.npy", windows[:3, :, :8])
        return tmp_path / "x.npy"
    if kind == "npy nan":
        bad = windows[:4].copy()
        bad[1, 9, CHANNELS.index("body_gyro_y")] = np.nan
        np.save(tmp_path / "x.npy", bad)
        return tmp_path / "x.npy"
    if kind in ("csv short row", "csv text"):
        rows = windows[:3].transpose(0, 2, 1).reshape(3, -1).astype(str).tolist()
        if kind == "csv short row":
            rows[1] = rows[1][:1000]
        else:
            rows[0][6] = "abc"
        (tmp_path / "x.csv").write_text("".join(",".join(row) + "\n" for row in rows))
        return tmp_path / "x.csv"
    folder = tmp_path / "Inertial Signals"
    shutil.copytree(tiny_har_dir / "test" / "Inertial Signals", folder)
    if kind == "folder nan":
        file = folder / "total_acc_z_test.txt"
        lines = file.read_text().splitlines()
        fields = lines[1].split()
        fields[4] = "nan"
        lines[1] = " ".join(fields)
        file.write_text("\n".join(lines) + "\n")
    elif kind == "folder missing channel":
        (folder / "body_gyro_x_test.txt").unlink()
    return folder


@pytest.mark.parametrize("kind, message", [
    ("npy shape", "x.npy: windows must have shape (N, 128, 9) with N >= 1 (steps x channels body_acc_x,"),
    ("npy nan", "x.npy: window 2, channel body_gyro_y, step 10: nan is not a finite number"),
    ("csv short row", "x.csv: line 2: expected 1152 comma-separated values (9 channels x 128 steps), got 1000"),
    ("csv text", "x.csv: line 1, value 7: not a number: 'abc'"),
    ("folder nan", "total_acc_z_test.txt: line 2: field 5: 'nan' is not a finite number"),
    ("folder missing channel", "body_gyro_x_test.txt: missing (an 'Inertial Signals' folder holds all 9 channels)"),
])
@pytest.mark.slow
def test_bad_windows_are_refused_naming_file_window_and_channel(har_model, windows, tiny_har_dir, tmp_path, command,
                                                                kind, message):
    path = bad_input(kind, windows, tiny_har_dir, tmp_path)
    # The two cases as a user meets them (a subprocess); the rest through main() in this process.
    run_it = predict if kind in ("npy shape", "npy nan") else command
    assert_refused(run_it("har", "--model", str(har_model), str(path)), message)


@pytest.mark.slow
def test_other_bad_paths_are_refused_in_one_line(har_model, windows, tmp_path, command):
    np.savez(tmp_path / "two.npz", a=windows, b=windows)
    (tmp_path / "w.txt").write_text("1 2 3\n")
    for path, message in ((tmp_path / "none.npy", "none.npy: no such file or folder"),
                          (tmp_path / "two.npz", "two.npz: holds arrays ['a', 'b']; expected one array, or one named 'x' or 'x_test'"),
                          (tmp_path / "w.txt", "w.txt: expected a .npy, .npz, .ts or .csv file, or a UCI HAR "
                                               "'Inertial Signals' folder")):
        assert_refused(command("har", "--model", str(har_model), str(path)), message)


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
def test_a_model_of_the_other_task_is_refused(har_model, command):
    assert_refused(command("names", "--model", str(har_model), "Abe"), f"--model {har_model} holds a har model, not names")


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
# Streams, hostile files and Ctrl-C


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


@pytest.mark.slow
def test_har_files_stream_in_batches_with_the_library_probabilities(har_model, windows, tmp_path):
    expected = load_model(har_model).predict_proba(windows, adjust=True)
    files = {"npy": tmp_path / "w.npy", "npz": tmp_path / "w.npz", "npz compressed": tmp_path / "c.npz",
             "csv": tmp_path / "w.csv"}
    np.save(files["npy"], windows.astype(np.float64))  # float64 too: read batch by batch, cast to float32
    np.savez(files["npz"], x=windows)
    np.savez_compressed(files["npz compressed"], windows=windows)
    rows = windows.transpose(0, 2, 1).reshape(len(windows), -1)
    files["csv"].write_text("".join(",".join(repr(float(v)) for v in row) + "\n" for row in rows))
    for kind, path in files.items():
        out = json.loads(in_process("har", "--model", str(har_model), "--format", "json", "--batch-size", "7", str(path)))
        found = np.array([[row["probabilities"][n] for n in load_model(har_model).class_names] for row in out])
        np.testing.assert_allclose(found, expected, rtol=0, atol=1e-6, err_msg=kind)
        assert [row["window"] for row in out] == list(range(1, len(windows) + 1)), kind
    # A bad row in a later chunk is named by its line in the file.
    lines = files["csv"].read_text().splitlines()
    lines[11] = lines[11][: lines[11].rindex(",")]
    files["csv"].write_text("\n".join(lines) + "\n")
    with pytest.raises(InputError, match=r"w.csv: line 12: expected 1152 comma-separated values .* got 1151"):
        in_process("har", "--model", str(har_model), "--batch-size", "5", str(files["csv"]))


@pytest.mark.slow
def test_hostile_array_files_are_refused_in_one_line_before_anything_is_allocated(har_model, windows, tmp_path,
                                                                                  command):
    huge = tmp_path / "huge.npy"  # a header claiming 10^12 windows (4.6 PB), then a few bytes
    with open(huge, "wb") as file:
        np.lib.format.write_array_header_1_0(file, {"descr": "<f4", "fortran_order": False,
                                                     "shape": (10**12, 128, 9)})
        file.write(b"\0" * 4096)
    assert_refused(command("har", "--model", str(har_model), str(huge)),
                   "huge.npy: truncated: its header says 1,000,000,000,000 windows of dtype float32 "
                   "(4,608,000,000,000,000 bytes), the file holds 4,096 bytes of data")
    np.savez(tmp_path / "cut.npz", x=windows)
    data = (tmp_path / "cut.npz").read_bytes()
    (tmp_path / "cut.npz").write_bytes(data[:len(data) // 2])
    (tmp_path / "text.npy").write_text("1 2 3\n4 5 6\n")
    np.save(tmp_path / "objects.npy", np.empty((2, 128, 9), dtype=object), allow_pickle=True)
    np.savez(tmp_path / "short.npz", x=windows)
    for path, message in (
            (tmp_path / "cut.npz", "cut.npz: not a readable .npz archive (File is not a zip file)"),
            (tmp_path / "text.npy", "text.npy: not a .npy array (no NumPy header); save windows with numpy.save"),
            (tmp_path / "objects.npy", "objects.npy: windows must hold real numbers, got dtype object")):
        result = command("har", "--model", str(har_model), str(path))
        assert_refused(result, message)
        assert "allow_pickle" not in result.stderr
