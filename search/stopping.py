"""Stopping a study cleanly: Ctrl-C and SIGTERM set a flag that the loops ask between batches and trials."""
from __future__ import annotations

import signal
import threading
from contextlib import contextmanager


class StopFlag:
    """Set by Ctrl-C (SIGINT) or SIGTERM. The training loop asks it between batches, the study loop
    between trials: nothing is raised inside a database call, so no SQLite lock stays held and the
    running trial ends FAIL through Optuna like any failed trial."""

    def __init__(self):
        self.requested = False

    def __call__(self) -> bool:
        return self.requested

    def request(self, signum=None, frame=None) -> None:
        self.requested = True

    @contextmanager
    def on_signals(self):
        """While inside, SIGINT and SIGTERM set the flag (main thread only; an ignored SIGINT stays ignored)."""
        previous = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                if signal.getsignal(sig) is not signal.SIG_IGN:  # a background job keeps ignoring Ctrl-C
                    previous[sig] = signal.signal(sig, self.request)
        try:
            yield self
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


class Interrupted(Exception):
    """The running trial was stopped by the StopFlag; Optuna marks it FAIL and the loop ends."""


def raise_interrupt(signum, frame):
    raise KeyboardInterrupt  # before a study runs (loading data), `kill` behaves like Ctrl-C
