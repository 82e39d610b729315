"""The study commands (`python -m search.har`, `search.names`) as a user meets them: bad arguments, too little
data and a read-only database refused in one line with exit code 2, before anything is created; in-memory storage;
progress as plain lines on a pipe and one line updated in place on a terminal; a database password kept out of
every output; the recorded command, free of absolute paths."""
from __future__ import annotations

import json
import os
import pty
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import torch

from search.study import StudyConfig
from test_study import NAMES, TINY, cache, search, search_here  # noqa: F401  (cache: the studies' fixture)

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # in-process studies train as the CLI does: 1 thread


@pytest.mark.parametrize("args, message", [
    (["--family", "transformer"], "family must be one of"),
    (["--trials", "-3"], "--trials must be an int >= 1, got -3"),
    (["--storage", "notaurl"], "--storage 'notaurl'"),
    (["--storage", "postgresql://postgres@127.0.0.1:1/test"], "cannot reach the database"),
    (["--width", "0"], "width must be an int >= 1, got 0"),
    (["--ngrams", "3"], "--ngrams needs text (one-hot characters), got task 'har' of numeric series"),
    (["--seeds", "51"], "--seeds must be an int from 1 to 50 (seeds 50 and up are the report's re-ranking and "
                        "final seeds), got 51"),
    (["--timeout", "-1"], "--timeout must be a finite number of seconds >= 0 (0: no limit), got -1.0"),
    (["--grid", "width"], "--grid takes NAME=V1,V2"),
    (["--lr", "fast"], "--lr must be a float"),
    (["--lr", "inf"], "--lr must be a finite number, got inf"),
    (["--study-name", ""], "--study-name must not be empty"),
    (["--grid", "lr=0.1", "--grid", "lr=0.2", "--family", "dense"], "--grid lr is given twice"),
    (["--width", "1000000000"], "parameters, over the limit of 100,000,000"),
    (["--device", "cuda"], "no CUDA device is available"),
    (["--storage", "postgresql://postgres:secret@127.0.0.1:{closed}/test"], "postgres:***@127.0.0.1"),
    (["--storage", "sqlite:///{tmp}/no/such/folder/s.db"], "does not exist"),
    (["--artifacts", "{tmp}/cache"], "--artifacts"),
])
@pytest.mark.slow
def test_bad_arguments_get_one_line_and_exit_2(tmp_path, cache, args, message, monkeypatch, capsys):
    """The command's main() in this process (the checks, without a subprocess's imports); the last case also runs
    as a user runs it, in its own process."""
    if "cuda" in args and torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device")
    (tmp_path / "cache").write_text("a file where a folder should be")
    args = ["--storage", f"sqlite:///{tmp_path / 's.db'}"] + [a.format(tmp=tmp_path, closed=closed_port())
                                                             for a in args]
    if args[-2:] == ["--artifacts", str(tmp_path / "cache")]:
        result = search(*args, cache=cache, check=False, cwd=tmp_path)
    else:
        result = search_here(*args, cache=cache, monkeypatch=monkeypatch, capsys=capsys, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and message in result.stderr
    assert "Traceback" not in result.stderr and "secret" not in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache"]  # nothing created: no database, no folder


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize("files, message", [
    ({"English.txt": None}, "1 class (English); a classifier needs at least 2"),
    # Two surnames a language: one for training, one for the test split, none for validation.
    ({"English.txt": "Smith\nJones\n", "German.txt": "Muller\nSchmidt\n"}, "the validation split is empty"),
    ({"English.txt": None, "Czech.txt": "Novak\nSvoboda\nDvorak\n"}, "no test example of class Czech"),
])
@pytest.mark.slow
def test_too_little_data_is_refused_before_anything_is_created(tmp_path, cache, files, message, monkeypatch, capsys):
    folder = tmp_path / "names"
    folder.mkdir()
    for name, text in files.items():
        (folder / name).write_text(text if text is not None else (NAMES / name).read_text())
    work = tmp_path / "work"
    work.mkdir()
    result = search_here("--trials", "1", task="names", data=folder, cache=cache, monkeypatch=monkeypatch,
                         capsys=capsys, cwd=work)
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and message in result.stderr, result.stderr
    assert list(work.iterdir()) == []  # no studies.db, no artifacts/


@pytest.mark.slow
def test_in_memory_storage_runs_quietly_in_one_process_and_leaves_nothing_behind(tmp_path, cache, monkeypatch,
                                                                                 capsys):
    args = ["--storage", "sqlite://", "--trials", "2", "--family", "linear", "--epochs", "1", "--seeds", "1"]
    result = search(*args, cache=cache, cwd=tmp_path)  # the default --workers: one per core, here 1
    assert result.stderr == ""  # no heartbeat tracebacks ("no such table: trial_heartbeats")
    assert "study 'har': 2 trials {'complete': 2}" in result.stdout and "workers x" not in result.stdout
    # No figures in ./artifacts that no kept study references, and no dashboard suggested on an empty database.
    assert list(tmp_path.iterdir()) == []
    assert result.stdout.splitlines()[-1] == \
        "in-memory storage: the study ends with this run (--storage sqlite:///FILE keeps it)"
    assert "dashboard" not in result.stdout
    two = search_here(*args, "--workers", "2", cache=cache, monkeypatch=monkeypatch, capsys=capsys,
                      cwd=tmp_path)  # asked for: refused, not ignored
    assert two.returncode == 2 and two.stdout == "" and two.stderr == (
        "error: --workers 2: the in-memory storage 'sqlite://' exists in one process only; use --workers 1, or a "
        "SQLite file (--storage sqlite:///studies.db) for several\n")


PROGRESS_ARGS = ["--trials", "2", "--workers", "1", "--family", "linear", "--epochs", "2", "--seeds", "2",
                 "--strategy", "lockstep", "--pruner", "none"]


@pytest.mark.slow
def test_progress_through_a_pipe_is_plain_lines(tmp_path, cache):
    result = search("--storage", f"sqlite:///{tmp_path / 's.db'}", *PROGRESS_ARGS, cache=cache)
    assert "\r" not in result.stdout and "\x1b" not in result.stdout
    lines = result.stdout.splitlines()
    epochs = [re.fullmatch(r"trial +(\d) seed (\d) epoch (\d)/2 val accuracy 0\.\d{4} \| (no complete trial yet|"
                           r"best 0\.\d{4} \(#\d\))", line) for line in lines]
    assert sorted((int(m[1]), int(m[2]), int(m[3])) for m in epochs if m) == [
        (t, s, e) for t in range(2) for s in range(2) for e in (1, 2)]  # every seed-epoch: nothing lost
    assert sum(bool(re.match(r"trial +\d linear ", line)) for line in lines) == 2
    assert "best 0." in next(line for line in lines if line.startswith("trial    1 seed"))  # trial 0's value


@pytest.mark.slow
def test_progress_on_a_terminal_updates_one_line_in_place(tmp_path, cache):
    controller, terminal = pty.openpty()
    process = subprocess.Popen([sys.executable, "-m", "search.har", "--data", str(TINY["har"]), "--storage",
                                f"sqlite:///{tmp_path / 's.db'}", *PROGRESS_ARGS],
                               stdout=terminal, stderr=subprocess.PIPE, env={**os.environ, "DATA_CACHE": str(cache)})
    os.close(terminal)
    output = b""
    while True:
        try:
            chunk = os.read(controller, 65536)
        except OSError:  # EIO: the process closed the terminal
            break
        if not chunk:
            break
        output += chunk
    os.close(controller)
    assert process.wait(timeout=300) == 0, process.stderr.read()
    text = output.decode()
    updates = re.findall(r"\r(trial +\d seed \d epoch \d/2 val accuracy 0\.\d{4} \| [^\r\n]*?)\x1b\[K", text)
    assert len(updates) == 8  # rewritten in place: no newline between the seed-epochs of a trial
    assert all("\n" not in update for update in updates)
    ended = re.findall(r"\r(trial +\d linear [^\r\n]*)\x1b\[K\r?\n", text)  # each trial's line replaces it and stays
    assert len(ended) == 2


@pytest.mark.slow
def test_password_never_leaves_the_url(tmp_path, cache):
    """PostgreSQL with a password (trust auth accepts any): no output, attribute, note, figure or report shows it."""
    url = "postgresql://postgres:secret@127.0.0.1:5432/test"
    name = f"pytest-masked-{os.getpid()}-{time.time_ns()}"
    figures = tmp_path / "figures"
    outputs = []
    try:
        run = search("--storage", url, "--study-name", name, "--artifacts", str(figures), "--trials", "2",
                     "--workers", "2", "--family", "linear", "--epochs", "1", "--seeds", "1", cache=cache)
        outputs += [run.stdout, run.stderr]
        assert "postgres:***@127.0.0.1" in run.stdout
        report = subprocess.run([sys.executable, "-m", "search.report", "har", "--storage", url, "--study-name", name,
                                 "--seeds", "1", "--top", "1", "--out", str(tmp_path / "reports"), "--data", str(TINY["har"]),
                                 "--baselines", "none"],
                                capture_output=True, text=True, env={**os.environ, "DATA_CACHE": str(cache)},
                                timeout=600)
        outputs += [report.stdout, report.stderr]
        assert report.returncode == 0, report.stderr
        study = optuna.load_study(study_name=name, storage=url.replace(":secret", ""))
        outputs.append(json.dumps([study.user_attrs, study._storage.get_study_system_attrs(study._study_id)],
                                  default=str))  # notes are study system attributes
        outputs += [json.dumps([t.user_attrs, t.system_attrs], default=str) for t in study.trials]
        files = [p for p in tmp_path.rglob("*") if p.is_file()]
        assert any(p.suffix == ".md" for p in files) and len(list(figures.iterdir())) == 4
        leaks = [str(p) for p in files if b"secret" in p.read_bytes()]
        leaks += [text[max(0, text.find("secret") - 80):][:160] for text in outputs if "secret" in text]
        assert not leaks
    finally:
        optuna.delete_study(study_name=name, storage=url.replace(":secret", ""))


@pytest.mark.slow
def test_read_only_database_is_one_line(tmp_path, cache, monkeypatch, capsys):
    db = tmp_path / "s.db"
    optuna.create_study(storage=f"sqlite:///{db}", study_name="har")
    before = db.read_bytes()
    # mode=ro: SQLite refuses every write, even root's (chmod would not stop root).
    result = search_here("--storage", f"sqlite:///file:{db}?mode=ro&uri=true", "--family", "linear", "--trials", "1",
                         cache=cache, monkeypatch=monkeypatch, capsys=capsys, cwd=tmp_path)
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert "the database is read-only" in result.stderr and "Traceback" not in result.stderr
    assert db.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["s.db"]


@pytest.mark.slow
def test_the_recorded_command_holds_no_absolute_path_and_runs_again_as_written(monkeypatch, tmp_path):
    monkeypatch.setattr(sys, "argv", ["search/names.py", "--data", str(tmp_path / "names"), "--trials", "3"])
    words = StudyConfig(task="names").command.split()
    assert words[:3] == ["python", "-m", "search.names"] and not any(os.path.isabs(w) for w in words)
    # Relative to the working folder, '..' and all: from there the recorded command finds the same data.
    data = words[words.index("--data") + 1]
    assert data.startswith("..") and (Path.cwd() / data).resolve() == (tmp_path / "names").resolve()
    # A SQLite URL too: relative to the working folder, inside it or outside it.
    inside = Path.cwd() / "bench" / "spread" / "names-1.db"
    monkeypatch.setattr(sys, "argv", ["search/names.py", "--storage", f"sqlite:///{tmp_path / 's.db'}",
                                      "--storage", f"sqlite:///{inside}"])
    assert StudyConfig(task="names").command == (f"python -m search.names --storage sqlite:///{os.path.relpath(tmp_path / 's.db')} "
                                                 "--storage sqlite:///bench/spread/names-1.db")
