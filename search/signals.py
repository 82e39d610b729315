"""How the commands' processes meet Ctrl-C and their parent's death.

Ctrl-C: one line on stderr and exit code 130 at any moment, never a traceback. `python -m
search.<command>` imports this package (torch, optuna: seconds) before the command's own code runs,
so search/__init__.py calls on_import() first: until the command's main() calls ctrl_c_raises(),
Ctrl-C ends the process at once (nothing is written yet). From there on it raises
KeyboardInterrupt, so `finally` blocks clean up and main() says what was kept; one that main()
does not catch (an argument check, the interpreter's teardown) still becomes the one line.

Parent's death: a spawned worker (search/workers.py, search/pool.py) gets SIGTERM from the kernel
when the process that started it dies, even `kill -9`ed (Linux: prctl PR_SET_PDEATHSIG), from the
moment it starts importing this package; no worker searches on alone.

Light on purpose: os, signal and sys only at import (the interpreter has them loaded already).
"""
from __future__ import annotations

import os
import signal
import sys

EXIT = 130  # 128 + SIGINT: what a shell reports for a process that Ctrl-C ended
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def exit_interrupted(line: str = "interrupted") -> None:
    """One line on stderr, then exit 130 without the interpreter's teardown (seconds with torch loaded)."""
    try:
        sys.stdout.flush()
    except (OSError, ValueError):
        pass  # a closed or broken stdout must not turn the line into a traceback
    try:
        os.write(2, (line + "\n").encode())  # not print(): the interrupted call may be a print holding its lock
    finally:
        os._exit(EXIT)


def _quit(signum, frame) -> None:
    exit_interrupted()


def _excepthook(kind, value, traceback) -> None:
    if issubclass(kind, KeyboardInterrupt):
        exit_interrupted()
    sys.__excepthook__(kind, value, traceback)


def _unraisablehook(unraisable) -> None:
    if isinstance(unraisable.exc_value, KeyboardInterrupt):  # in an atexit callback or a finalizer
        exit_interrupted()
    sys.__unraisablehook__(unraisable)


def _set_sigint(handler) -> None:
    """An ignored Ctrl-C (a background job, a worker) stays ignored; other threads than the main one leave it."""
    try:
        if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
            signal.signal(signal.SIGINT, handler)
    except ValueError:  # not the main thread: only it may set a handler
        pass


def ctrl_c_raises() -> None:
    """From here on Ctrl-C raises KeyboardInterrupt (main() catches it and says what was kept)."""
    _set_sigint(signal.default_int_handler)


def die_with_parent(signum: int = signal.SIGTERM) -> bool:
    """Ask the kernel for signum when this process's parent dies (Linux); False where it cannot."""
    if not sys.platform.startswith("linux"):
        return False
    import ctypes
    try:
        return ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(signum), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def when_parent_dies(then) -> None:
    """then() in a daemon thread once this spawned worker's parent is gone, even `kill -9`ed (its sentinel)."""
    import multiprocessing.connection
    import threading

    def watch() -> None:
        multiprocessing.connection.wait([multiprocessing.parent_process().sentinel])  # ready once it is gone
        then()
    threading.Thread(target=watch, daemon=True).start()


def on_import() -> None:
    """Called by search/__init__.py before its heavy imports."""
    if sys.argv[:1] == ["-m"]:  # runpy's argv[0] while it imports the package of `python -m search.<command>`
        _set_sigint(_quit)
        sys.excepthook, sys.unraisablehook = _excepthook, _unraisablehook
    elif sys.orig_argv[-1:] == ["--multiprocessing-fork"]:  # a worker started by multiprocessing's spawn
        die_with_parent()
