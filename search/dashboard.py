"""python -m search.dashboard: optuna-dashboard on the studies' storage, with their artifact store.

Plain `optuna-dashboard sqlite:///studies.db` shows the same studies and notes, but it has no
artifact store, so the trials' figures do not show.
"""
from __future__ import annotations

import argparse
import os
import socket
import sys

from optuna_dashboard import run_server

from .artifacts import AtomicFileStore, check_dir
from .options import common
from .storage import StorageError, artifact_dir, hide_password, is_memory, open_storage
from .study import quiet_optuna
from .studyconfig import StudyError


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m search.dashboard", parents=[common("storage", "artifacts")],
                                description="Browse the studies in optuna-dashboard, trial figures included.")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default %(default)s)")
    p.add_argument("--port", type=int, default=8080, help="port to listen on (default %(default)s)")
    return p


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
    folder = args.artifacts or artifact_dir(args.storage)
    try:
        if is_memory(args.storage):
            raise StudyError(f"--storage {args.storage!r} is an in-memory database, empty in every new process; "
                             "give the studies' SQLite file or database server")
        storage = open_storage(args.storage, must_exist=True)  # never an empty SQLite file made by looking
        check_dir(folder, create=False, writable=False)  # missing is fine: no study has written figures yet
        check_port(args.host, args.port)
    except (StudyError, StorageError, ValueError) as exc:
        print(f"error: {hide_password(str(exc))}", file=sys.stderr)
        sys.exit(2)
    print(f"optuna-dashboard on {hide_password(args.storage)} with artifacts from {os.path.abspath(folder)}")
    print(f"open http://{args.host}:{args.port}/dashboard   (Ctrl-C stops it)", flush=True)
    try:
        run_server(storage, host=args.host, port=args.port, artifact_store=AtomicFileStore(folder))
    except OSError as exc:  # the port was taken since check_port
        print(f"error: cannot listen on --host {args.host} --port {args.port} ({exc.strerror or exc})", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
