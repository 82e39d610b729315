"""python -m search.dashboard: optuna-dashboard on the studies' storage, with their artifact store.

Plain `optuna-dashboard sqlite:///studies.db` shows the same studies and notes, but it has no
artifact store, so the trials' figures do not show.
"""
from __future__ import annotations

import argparse
import os
import socket
import sys

import sqlalchemy
from optuna_dashboard import run_server

from .artifacts import AtomicFileStore, check_dir, default_dir
from .study import DEFAULT_STORAGE, StudyError, open_storage, quiet_optuna


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m search.dashboard",
                                description="Browse the studies in optuna-dashboard, trial figures included.")
    p.add_argument("--storage", default=DEFAULT_STORAGE, help="the studies' SQLAlchemy URL (default %(default)s)")
    p.add_argument("--artifacts", default=None, metavar="DIR",
                   help="the studies' figure folder (default: artifacts/ beside a SQLite file, else ./artifacts)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default %(default)s)")
    p.add_argument("--port", type=int, default=8080, help="port to listen on (default %(default)s)")
    return p


def open_existing(url: str):
    """The storage, refusing a SQLite file that does not exist (Optuna would create an empty one)."""
    try:
        parsed = sqlalchemy.engine.make_url(url)
    except sqlalchemy.exc.ArgumentError:
        raise StudyError(f"--storage {url!r} is not a valid SQLAlchemy URL") from None
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:") \
            and not os.path.isfile(parsed.database):
        raise StudyError(f"--storage {url!r}: no such SQLite file {parsed.database!r} (run a study first)")
    return open_storage(url)


def check_port(host: str, port: int) -> None:
    """Bind once before starting, so a taken port is one line (bottle would print its banner first)."""
    if not 1 <= port <= 65535:
        raise StudyError(f"--port must be in 1..65535, got {port}")
    try:
        with socket.create_server((host, port), family=socket.AF_INET6 if ":" in host else socket.AF_INET):
            pass
    except OSError as exc:
        raise StudyError(f"cannot listen on --host {host} --port {port} ({exc.strerror or exc})") from None


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    quiet_optuna()
    folder = args.artifacts or default_dir(args.storage)
    try:
        storage = open_existing(args.storage)
        check_dir(folder, create=False)  # a missing folder is fine: no study has written figures yet
        check_port(args.host, args.port)
    except (StudyError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    print(f"optuna-dashboard on {args.storage} with artifacts from {os.path.abspath(folder)}")
    print(f"open http://{args.host}:{args.port}/dashboard   (Ctrl-C stops it)", flush=True)
    try:
        run_server(storage, host=args.host, port=args.port, artifact_store=AtomicFileStore(folder))
    except OSError as exc:  # the port was taken since check_port
        print(f"error: cannot listen on --host {args.host} --port {args.port} ({exc.strerror or exc})", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
