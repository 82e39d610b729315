"""Storage URLs: passwords masked everywhere, SQLite paths, one-line errors, nothing created by looking."""
from __future__ import annotations

import os
import socket
import time

import optuna
import pytest

from search.storage import (StorageError, artifact_dir, can_share, check_reachable, hide_password, open_storage,
                            sqlite_path)

PG = "postgresql://postgres@127.0.0.1:5432/test"


def closed_port() -> int:
    """A loopback port nothing listens on: an unreachable database."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_hide_password_masks_every_url_in_a_text():
    line = ("python -m search.har --storage postgresql://postgres:secret@127.0.0.1:5432/test "
            "--other 'mysql+pymysql://u:p@ss/w@db.example/x' sqlite:///studies.db")
    shown = hide_password(line)
    assert shown == ("python -m search.har --storage postgresql://postgres:***@127.0.0.1:5432/test "
                     "--other 'mysql+pymysql://u:***@db.example/x' sqlite:///studies.db")
    assert hide_password("postgresql://postgres@127.0.0.1/test") == "postgresql://postgres@127.0.0.1/test"


@pytest.mark.parametrize("url, path, shared, figures", [
    ("sqlite:///studies.db", "studies.db", True, "artifacts"),
    ("sqlite:////data/runs/studies.db", "/data/runs/studies.db", True, "/data/runs/artifacts"),
    ("sqlite:///file:runs/s.db?mode=ro&uri=true", "runs/s.db", True, "runs/artifacts"),
    ("sqlite://", None, False, None),  # an in-memory study ends with its process: no figure would be referenced
    ("sqlite:///:memory:", None, False, None),
    (PG, None, True, "artifacts"),
])
def test_sqlite_path_sharing_and_figure_folder(url, path, shared, figures):
    assert sqlite_path(url) == path and can_share(url) == shared and artifact_dir(url) == figures


@pytest.mark.parametrize("url, message", [
    ("notaurl", "is not a valid SQLAlchemy URL"),
    ("nosuchdb://x", "is not a valid SQLAlchemy URL"),
    ("postgresql://postgres:secret@127.0.0.1:{port}/test", "cannot reach the database"),
    ("sqlite:///{tmp}/missing/studies.db", "the folder"),
    ("sqlite:///{tmp}", "is a folder, not a SQLite file"),
])
def test_unusable_storage_is_one_line_without_the_password(url, message, tmp_path):
    url = url.format(port=closed_port(), tmp=tmp_path)
    with pytest.raises(StorageError) as error:
        check_reachable(url)
    text = str(error.value)
    assert message in text and "\n" not in text and "secret" not in text
    assert list(tmp_path.iterdir()) == []  # nothing created


def test_opening_an_existing_storage_creates_no_file(tmp_path):
    missing = tmp_path / "typo.db"
    with pytest.raises(StorageError, match="no such SQLite file"):
        open_storage(f"sqlite:///{missing}", must_exist=True)
    assert not missing.exists()


def test_read_only_sqlite_file_is_refused(tmp_path):
    db = tmp_path / "s.db"
    optuna.create_study(storage=f"sqlite:///{db}", study_name="x")
    os.chmod(db, 0o444)
    try:
        if os.access(db, os.W_OK):
            pytest.skip("running as root: permissions do not stop writes (the mode=ro test covers the error)")
        with pytest.raises(StorageError, match="read-only"):
            check_reachable(f"sqlite:///{db}")
    finally:
        os.chmod(db, 0o644)


@pytest.mark.slow
def test_in_memory_storage_runs_without_heartbeat_errors():
    storage = open_storage("sqlite://", heartbeat=1)
    study = optuna.create_study(storage=storage)
    study.optimize(lambda trial: trial.suggest_float("x", 0, 1), n_trials=2)
    assert storage.get_heartbeat_interval() is None  # its thread would open another, empty in-memory database
    assert len(study.trials) == 2


@pytest.mark.slow
def test_postgresql_with_a_password_opens_and_the_error_path_hides_it():
    url = "postgresql://postgres:secret@127.0.0.1:5432/test"  # trust auth accepts any password
    check_reachable(url)
    name = f"pytest-storage-{os.getpid()}-{time.time_ns()}"
    storage = open_storage(url)
    try:
        optuna.create_study(storage=storage, study_name=name)
        assert name in optuna.get_all_study_names(storage)
    finally:
        optuna.delete_study(study_name=name, storage=storage)
