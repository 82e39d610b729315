"""Storage URLs: open one, show one without its password, and where a SQLite file lives.

Every place that prints, records or opens a storage URL goes through these functions, so a
password in `--storage postgresql://user:secret@host/db` never reaches the console, a study's
attributes, a note, a report or a log line.
"""
from __future__ import annotations

import os
import re

import optuna
import sqlalchemy
import sqlalchemy.exc

from . import defaults

# scheme://user:password@host in any text (a command line, a driver's error message).
# Greedy up to the token's last "@": a password may itself hold "@" or "/".
_CREDENTIALS = re.compile(r"(?P<head>\b[a-zA-Z][\w+.-]*://[^:/@\s'\"]*:)(?P<password>[^\s'\"]*)(?P<tail>@)")


class StorageError(ValueError):
    """A storage URL that cannot be used, as one line that never shows the password."""


def hide_password(text: str) -> str:
    """The text with the password of every URL in it replaced by ***."""
    return _CREDENTIALS.sub(lambda m: m["head"] + "***" + m["tail"], text)


def parse(url: str) -> sqlalchemy.engine.URL:
    try:
        return sqlalchemy.engine.make_url(url)
    except (sqlalchemy.exc.ArgumentError, ValueError) as exc:
        raise StorageError(f"--storage {hide_password(url)!r} is not a valid SQLAlchemy URL "
                           f"({hide_password(str(exc).splitlines()[0])})") from None


def is_sqlite(url: str) -> bool:
    try:
        return parse(url).get_backend_name() == "sqlite"
    except StorageError:
        return False


def sqlite_path(url: str) -> str | None:
    """The database file of a sqlite:///path URL; None for in-memory SQLite and other databases."""
    if not is_sqlite(url):
        return None
    database = parse(url).database
    if database in (None, "", ":memory:") or database.startswith("file::memory:"):
        return None
    return database.removeprefix("file:").split("?")[0]  # sqlite:///file:path?mode=ro&uri=true


def is_memory(url: str) -> bool:
    return is_sqlite(url) and sqlite_path(url) is None


def can_share(url: str) -> bool:
    """Several processes can use this storage: an in-memory SQLite database exists in one process only."""
    return not is_memory(url)


def artifact_dir(url: str) -> str | None:
    """Where figures go by default: artifacts/ beside the SQLite file, else ./artifacts; None for an
    in-memory database (its study ends with the process: no figure would be referenced by a kept study)."""
    if is_memory(url):
        return None
    path = sqlite_path(url)
    return os.path.join(os.path.dirname(path), "artifacts") if path else "artifacts"


def check_writable(url: str) -> None:
    """Refuse, before anything is created, a SQLite file (or its folder) that cannot be written."""
    path = sqlite_path(url)
    if path is None:
        return
    shown = hide_password(url)
    if os.path.exists(path):
        if os.path.isdir(path):
            raise StorageError(f"--storage {shown!r}: {path} is a folder, not a SQLite file")
        if not os.access(path, os.R_OK | os.W_OK):
            raise StorageError(f"--storage {shown!r}: the SQLite file {path} is read-only")
        return
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise StorageError(f"--storage {shown!r}: the folder {os.path.dirname(path) or '.'} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise StorageError(f"--storage {shown!r}: cannot create {path} (the folder is read-only)")


def describe_error(url: str, exc: BaseException) -> str:
    """One line for a database error, naming the storage without its password."""
    shown = hide_password(url)
    cause = exc
    while cause is not None and not isinstance(cause, sqlalchemy.exc.OperationalError):
        cause = cause.__cause__ or cause.__context__  # Optuna wraps a failed commit in StorageInternalError
    if cause is not None:
        detail = str(cause.orig or cause).strip().splitlines()[0]
        if "readonly" in detail or "read-only" in detail:
            return f"--storage {shown!r}: the database is read-only ({hide_password(detail)})"
        return f"--storage {shown!r}: cannot reach the database ({hide_password(detail)})"
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else "no detail"
    return f"--storage {shown!r}: {type(exc).__name__}: {hide_password(first)}"


def engine_options(url: str) -> dict:
    # SQLite: wait for a lock (the dashboard or a second worker reading) instead of failing at once.
    return {"connect_args": {"timeout": 60}} if is_sqlite(url) else {"pool_pre_ping": True}


def open_storage(url: str, heartbeat: int | None = defaults.HEARTBEAT, must_exist: bool = False
                 ) -> optuna.storages.RDBStorage:
    """An RDB storage; with heartbeats, a killed run's RUNNING trial is marked FAIL by the next run.

    must_exist: refuse a SQLite file that does not exist (Optuna would create an empty one just by looking).
    In-memory SQLite gets no heartbeat: the heartbeat thread's connection would see another, empty database.
    """
    parse(url)
    path = sqlite_path(url)
    if must_exist and path is not None and not os.path.isfile(path):
        raise StorageError(f"--storage {hide_password(url)!r}: no such SQLite file {path!r} (run a study first)")
    if is_memory(url):
        heartbeat = None
    try:
        return optuna.storages.RDBStorage(url, heartbeat_interval=heartbeat,
                                          grace_period=4 * heartbeat if heartbeat else None,
                                          engine_kwargs=engine_options(url))
    except (sqlalchemy.exc.ArgumentError, sqlalchemy.exc.NoSuchModuleError, ValueError) as exc:
        raise StorageError(f"--storage {hide_password(url)!r} is not a valid SQLAlchemy URL "
                           f"({hide_password(str(exc).splitlines()[0])})") from None
    except Exception as exc:  # driver errors differ by backend; all mean the same to the user
        raise StorageError(describe_error(url, exc)) from None


def check_reachable(url: str) -> None:
    """Connect once without creating anything: a bad URL, a closed port or a read-only file is one line."""
    parse(url)
    check_writable(url)
    if sqlite_path(url) is not None or is_memory(url):
        return  # connecting would create the file; check_writable has looked at it instead
    try:
        engine = sqlalchemy.create_engine(url, **engine_options(url))
        with engine.connect():
            pass
        engine.dispose()
    except (sqlalchemy.exc.ArgumentError, sqlalchemy.exc.NoSuchModuleError, ValueError) as exc:
        raise StorageError(f"--storage {hide_password(url)!r} is not a valid SQLAlchemy URL "
                           f"({hide_password(str(exc).splitlines()[0])})") from None
    except Exception as exc:
        raise StorageError(describe_error(url, exc)) from None
