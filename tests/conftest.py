"""Shared fixtures: the real data sets (read-only, never copied into the repository), loaded once.

Every test gets its own empty DATA_CACHE and none of the data-location environment variables, so
no test writes into the repository's data/cache and no developer setting leaks into a test.
"""
from __future__ import annotations

import csv
import io
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
import torch

from data import Split, Task, load_har, load_names

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
HAR_ZIP = SHARED / "UCI_HAR_Dataset.zip"
NAMES_DIR = SHARED / "names"
NAMES_ZIP = SHARED / "names_data.zip"
HAR_PREFIX = "UCI HAR Dataset/"
HAR_CHANNELS = [f"{kind}_{axis}" for kind in ("body_acc", "body_gyro", "total_acc") for axis in "xyz"]
DATA_ENV = ("HAR_DATA", "NAMES_DATA", "HAR_DATA_URL", "NAMES_DATA_URL")


def languages(only=None, folder: Path = NAMES_DIR) -> dict[str, list[str]]:
    """{language: its file's surnames, one per non-empty line, as written} of a names folder."""
    return {file.stem: [line.strip() for line in file.read_text(encoding="utf-8").splitlines() if line.strip()]
            for file in sorted(folder.glob("*.txt")) if only is None or file.stem in only}


def names_rows(only=None, folder: Path = NAMES_DIR) -> list[list[str]]:
    """A names folder as (surname, language) rows, as a user's CSV holds them."""
    return [[name, language] for language, names in languages(only, folder).items() for name in names]


def write_csv(path: Path, rows: list[list[str]], header=("surname", "language"), delimiter=",") -> Path:
    with open(path, "w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file, delimiter=delimiter)
        writer.writerow(header)
        writer.writerows(rows)
    return path


@pytest.fixture(autouse=True)
def isolated_data_env(tmp_path, monkeypatch):
    """A fresh cache folder per test, and no data location taken from the developer's environment."""
    for name in DATA_ENV:
        monkeypatch.delenv(name, raising=False)
    cache = tmp_path / "cache"
    monkeypatch.setenv("DATA_CACHE", str(cache))
    return cache


@pytest.fixture(scope="module")
def one_torch_thread():
    """Train on one intra-op thread: the machine's two cores are shared, and two spinning OpenMP
    threads on a busy machine make small models many times slower. Restored after the module."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def data_cache(tmp_path_factory):
    """One data cache for the module's studies and reports; no data location from the environment."""
    folder = tmp_path_factory.mktemp("report-data-cache")
    with pytest.MonkeyPatch.context() as mp:
        for name in DATA_ENV:
            mp.delenv(name, raising=False)
        mp.setenv("DATA_CACHE", str(folder))
        yield folder


@pytest.fixture(scope="session")
def shared_data() -> Path:
    assert HAR_ZIP.is_file() and NAMES_ZIP.is_file() and NAMES_DIR.is_dir(), (
        f"the real data sets are expected in {SHARED} (names/, names_data.zip, UCI_HAR_Dataset.zip)")
    return SHARED


@pytest.fixture(scope="session")
def har_cache(tmp_path_factory) -> Path:
    """The cache folder of the session's HAR load (the smoke test reuses it to skip a second parse)."""
    return tmp_path_factory.mktemp("har-cache")


@pytest.fixture(scope="session")
def har_task(shared_data, har_cache) -> Task:
    """The full HAR task, parsed once from the real zip into a session cache folder."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DATA_CACHE", str(har_cache))
        started = time.perf_counter()
        task = load_har(HAR_ZIP)
        task.info["first_load_seconds"] = time.perf_counter() - started
    return task


def names_from(folder: Path, tmp_path_factory) -> Task:
    """The surname task of a folder of <Language>.txt files, split seed 0, cached in a folder of its own."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DATA_CACHE", str(tmp_path_factory.mktemp("names-cache")))
        return load_names(folder)


@pytest.fixture(scope="session")
def names_task(shared_data, tmp_path_factory) -> Task:
    """The full surname task from the folder of <Language>.txt files."""
    return names_from(NAMES_DIR, tmp_path_factory)


@pytest.fixture(scope="session")
def small_names_dir(shared_data, tmp_path_factory) -> Path:
    """The names folder layout with every third surname of each language (about 6,700): the commands' whole path
    on real data in a third of the time."""
    folder = tmp_path_factory.mktemp("small-names")
    for file in sorted(NAMES_DIR.glob("*.txt")):
        lines = file.read_text(encoding="utf-8").splitlines()
        (folder / file.name).write_text("\n".join(lines[::3]) + "\n", encoding="utf-8")
    return folder


@pytest.fixture(scope="session")
def small_names_task(small_names_dir, tmp_path_factory) -> Task:
    """The surname task of small_names_dir."""
    return names_from(small_names_dir, tmp_path_factory)


def head(split: Split, n: int) -> Split:
    """The first n examples of a split, as independent tensors."""
    return Split(split.x[:n].clone(), split.y[:n].clone(), split.lengths[:n].clone())


@pytest.fixture(scope="session")
def small_har(har_task) -> Task:
    """A small real task: the first 600 training windows, 200 validation and 200 test windows."""
    return Task("har", head(har_task.train, 600), head(har_task.val, 200), head(har_task.test, 200),
                list(har_task.class_names), dict(har_task.info))


@pytest.fixture(scope="session")
def tiny_har_dir(shared_data, tmp_path_factory) -> Path:
    """A tiny folder in the UCI HAR layout: every 50th window of the real train and test files.

    Every 50th window keeps every subject (each has ~280-410 windows), so the default validation
    subjects 5, 11, 17, 23, 29 exist in it.
    """
    root = tmp_path_factory.mktemp("tiny-har") / "UCI HAR Dataset"
    with zipfile.ZipFile(HAR_ZIP) as archive:
        for member in archive.namelist():
            if member.endswith("/"):
                continue
            text = archive.read(member).decode()
            if "/train/" in member or "/test/" in member:
                text = "".join(line + "\n" for line in text.splitlines()[::50])
            target = root / member[len(HAR_PREFIX):]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
    return root


def call_main(main, args, capsys, monkeypatch, stdin: str = "") -> subprocess.CompletedProcess:
    """A command's main(args) in this process (no interpreter start, no imports again): its exit code, stdout, stderr."""
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    try:
        main(list(args))
        code = 0
    except SystemExit as exc:
        code = exc.code
    captured = capsys.readouterr()
    return subprocess.CompletedProcess(args, code, captured.out, captured.err)


@pytest.fixture
def command(capsys, monkeypatch):
    """search.predict's main() in this process: command(*args, stdin="") -> returncode, stdout and stderr."""
    from search.predict import main
    return lambda *args, stdin="": call_main(main, args, capsys, monkeypatch, stdin)


@pytest.fixture
def cli(capsys, monkeypatch):
    """Any command's main() in this process: cli("search.export", *args) -> returncode, stdout and stderr."""
    import importlib
    return lambda module, *args, stdin="": call_main(importlib.import_module(module).main, args, capsys, monkeypatch,
                                                     stdin)


def foreground() -> None:
    """Popen's preexec_fn for a command that gets Ctrl-C: a terminal's foreground job, whose SIGINT is not ignored
    even where pytest runs as a shell's background job (`pytest &`), which would pass it on ignored."""
    import signal
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def assert_refused(result: subprocess.CompletedProcess, message: str) -> None:
    """Exit code 2, nothing on stdout, and one line on stderr holding the message."""
    assert result.returncode == 2, result.stderr
    assert result.stdout == "" and result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith("error: ") and message in result.stderr, result.stderr
