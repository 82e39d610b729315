"""python -m search.predict on a real exported HAR model: windows as a UCI folder, .npy, .npz or CSV give the
library's probabilities in every output format, read batch by batch; bad windows, bad paths, hostile array files
and a model of the other task are refused in one line with exit code 2."""
from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from data.har import CHANNELS, read_signals
from conftest import assert_refused
from search.export import load_model
from search.predictor import InputError
from search.train import TrialSpec
from test_predict import export, in_process, predict

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def har_model(har_task, tmp_path_factory) -> Path:
    return export(har_task, TrialSpec(family="conv1d", width=16, epochs=1), tmp_path_factory.mktemp("har") / "model")


@pytest.fixture(scope="module")
def windows(tiny_har_dir) -> np.ndarray:
    """Raw windows of real test recordings (every 50th), as the UCI files hold them."""
    return read_signals(tiny_har_dir / "test" / "Inertial Signals")


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


@pytest.mark.slow
def test_a_model_of_the_other_task_is_refused(har_model, command):
    assert_refused(command("names", "--model", str(har_model), "Abe"), f"--model {har_model} holds a har model, not names")


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
