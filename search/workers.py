"""One study, several worker processes on one storage: how a search uses more than one core.

bench/README.md: one torch thread per process is faster than two threads in one process, so the
default is one single-threaded worker per core. The workers share the study through its storage
(SQLite waits for locks; PostgreSQL for several machines) and a counter of trials started that this
process keeps (each worker asks it over a pipe), so `--trials N` adds N trials in all and a worker
that finishes early takes the next one. A worker ends with its parent, even one killed with SIGKILL.
"""
from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import os
import signal
import sys
import time
from collections import deque
from dataclasses import replace

import torch

from .tasks import load
from .storage import can_share  # noqa: F401  (re-exported: the CLI asks it before starting workers)
from .processes import fail_dead_trials
from .signals import when_parent_dies
from .stopping import StopFlag
from .study import create_study, quiet_optuna, run_study
from .studyconfig import StudyConfig


def default_workers() -> int:
    """The cores this process may use (its CPU affinity, not the machine's count)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


POP_TIMEOUT = 60  # seconds a worker waits for another to pop its trial; past it, a duplicate beats a deadlock
GRACE = 0.5  # seconds a worker whose parent died has to mark its running trial FAIL before it exits anyway
CLAIM, POPPED = "claim", "popped"  # a worker's messages to its parent


def _parent_gone(stop: StopFlag) -> None:
    """A worker whose parent died (even by SIGKILL) stops like on Ctrl-C, and ends GRACE s later at the latest.
    (Before the watch starts, the kernel's SIGTERM ends it: search/signals.py.)"""
    stop.request()
    # SIGALRM's default action ends the process whatever it is doing, even blocked writing to a full pipe.
    signal.setitimer(signal.ITIMER_REAL, GRACE)


def _worker(config: StudyConfig, data: str | None, threads: int, index: int, parent) -> None:
    """parent: this worker's end of its pipe to run_workers, which counts the trials and gives the turn to pop."""
    stop = StopFlag()
    with stop.on_signals():  # from here on, Ctrl-C and SIGTERM stop at the next batch
        when_parent_dies(lambda: _parent_gone(stop))
        torch.set_num_threads(threads)
        quiet_optuna()
        if config.sampler_seed is not None:  # distinct, reproducible streams per worker
            config = replace(config, sampler_seed=config.sampler_seed + index)

        held = False  # whether this worker has the turn to pop

        def claim() -> bool:
            nonlocal held
            try:
                parent.send(CLAIM)
                held = parent.recv()  # True: a trial is counted for this worker, and it may pop; False: none left
            except (EOFError, OSError):  # the parent is gone
                stop.request()
                return False
            return held

        def popped() -> None:
            nonlocal held
            if held:
                held = False
                try:
                    parent.send(POPPED)
                except OSError:
                    stop.request()

        try:
            task = load(config.task, data)
            if not stop.requested:
                run_study(config, task, claim=claim, setup=False, stop=stop, prefix=f"[w{index}] ", popped=popped)
        except KeyboardInterrupt:
            pass
    if stop.requested:
        exit_now(130)


class _Claims:
    """The parent's side of the pipes: it counts the trials started (config.trials in all) and gives one
    worker at a time the turn to pop a queued trial, from its claim until it says popped, ends, or has held
    the turn POP_TIMEOUT s. Pipes, not a multiprocessing Value and Lock: their named semaphores outlive a
    parent killed with SIGKILL ("leaked semaphore" warnings), a pipe closes with its processes."""

    def __init__(self, trials: int | None, connections: list):
        self.trials, self.started, self.connections = trials, 0, connections
        self.turn, self.since, self.queue = None, 0.0, deque()

    def handle(self, index: int, message: str | None) -> None:
        """A message from worker index; None: its pipe closed (it ended)."""
        if message == CLAIM:
            if self.trials is not None and self.started >= self.trials:
                self._send(index, False)
            else:
                self.started += 1
                self.queue.append(index)
        elif self.turn == index:  # popped, or ended while holding the turn
            self.turn = None
        elif message is None and index in self.queue:
            self.queue.remove(index)
        self.next_turn()

    def next_turn(self) -> None:
        if self.turn is not None and self.queue and time.monotonic() - self.since >= POP_TIMEOUT:
            self.turn = None
        if self.turn is None and self.queue:
            self.turn, self.since = self.queue.popleft(), time.monotonic()
            self._send(self.turn, True)

    def timeout(self) -> float | None:
        """Seconds until a waiting worker overtakes the turn's holder; None: nobody waits."""
        return None if self.turn is None or not self.queue else max(0.0, self.since + POP_TIMEOUT - time.monotonic())

    def _send(self, index: int, value: bool) -> None:
        try:
            self.connections[index].send(value)
        except OSError:
            pass  # the worker ended meanwhile


def exit_now(code: int) -> None:
    """Exit without the interpreter's teardown: with torch's ~4,000 modules loaded it takes 1-2 s of
    CPU here, and a stopped study has nothing left to write (every trial is committed)."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def run_workers(config: StudyConfig, data: str | None, workers: int, threads: int, study=None) -> int:
    """Run config.trials trials over `workers` processes; the parent has called prepare_study.

    Returns 0, 1 when a worker failed, or 130 when interrupted. Ctrl-C reaches every worker of the
    terminal's process group; a SIGINT or SIGTERM to this process alone is passed on at once; a
    second one kills the workers (the next run fails their trials). A SIGKILL of this process makes
    the workers stop by themselves within a second.
    """
    context = multiprocessing.get_context("spawn")  # no forked torch/SQLite state
    pipes = [context.Pipe() for _ in range(workers)]
    processes = [context.Process(target=_worker, args=(config, data, threads, i, pipes[i][1]), name=f"worker-{i}")
                 for i in range(workers)]
    signals = [0]

    def pass_on(signum, frame) -> None:
        signals[0] += 1
        for process in processes:
            if process.pid is not None and process.exitcode is None:
                os.kill(process.pid, signal.SIGTERM if signals[0] == 1 else signal.SIGKILL)

    # The workers start with Ctrl-C ignored (inherited): a terminal's Ctrl-C reaches them through
    # pass_on as SIGTERM, and one pressed while a worker still imports torch prints no traceback.
    ignored = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        for process, (_, child_end) in zip(processes, pipes):
            process.start()
            child_end.close()  # the worker's copy is its own: its end of the pipe closes when it ends
    finally:
        signal.signal(signal.SIGINT, ignored)
    previous = {sig: signal.signal(sig, pass_on) for sig in (signal.SIGINT, signal.SIGTERM)
                if signal.getsignal(sig) is not signal.SIG_IGN}
    claims = _Claims(config.trials, [parent_end for parent_end, _ in pipes])
    ends = {parent_end: i for i, (parent_end, _) in enumerate(pipes)}
    try:
        waiting = {process.sentinel: process for process in processes}
        while waiting:  # join in the order they end, so a killed worker is reaped (not a zombie) at once
            for ready in multiprocessing.connection.wait([*waiting, *ends], claims.timeout()):
                if ready in waiting:
                    waiting.pop(ready).join()
                    continue
                index = ends[ready]
                try:
                    message = ready.recv()
                except (EOFError, OSError):  # the worker ended
                    message = None
                    del ends[ready]
                claims.handle(index, message)
            claims.next_turn()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for parent_end, _ in pipes:
            parent_end.close()
    fail_dead_trials(study or create_study(config), config.heartbeat)  # a worker killed by a second signal or SIGKILL
    codes = [p.exitcode for p in processes]
    if signals[0] or 130 in codes:
        return 130
    return 1 if any(codes) else 0
