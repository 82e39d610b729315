"""One study, several worker processes on one storage: how a search uses more than one core.

bench/README.md: one torch thread per process is faster than two threads in one process, so the
default is one single-threaded worker per core. The workers share the study through its storage
(SQLite waits for locks; PostgreSQL for several machines) and a counter of trials started, so
`--trials N` adds N trials in all and a worker that finishes early takes the next one.
"""
from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import os
import signal
import sys
import threading
import time
from dataclasses import replace

import torch

from .tasks import load
from .storage import can_share  # noqa: F401  (re-exported: the CLI asks it before starting workers)
from .study import StopFlag, StudyConfig, fail_dead_trials, create_study, quiet_optuna, run_study


def default_workers() -> int:
    """The cores this process may use (its CPU affinity, not the machine's count)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _exit_with_parent(parent: int, stop: StopFlag) -> None:
    """A worker whose parent was killed (SIGKILL) stops like on Ctrl-C instead of searching on alone."""
    while os.getppid() == parent:
        time.sleep(0.5)
    stop.request()


POP_TIMEOUT = 60  # seconds a worker waits for another to pop its trial; past it, a duplicate beats a deadlock


def _worker(config: StudyConfig, data: str | None, threads: int, index: int, started, popping, parent: int) -> None:
    stop = StopFlag()
    with stop.on_signals():  # from here on, Ctrl-C and SIGTERM stop at the next batch
        threading.Thread(target=_exit_with_parent, args=(parent, stop), daemon=True).start()
        torch.set_num_threads(threads)
        quiet_optuna()
        if config.sampler_seed is not None:  # distinct, reproducible streams per worker
            config = replace(config, sampler_seed=config.sampler_seed + index)

        held = False  # whether this worker holds `popping`

        def claim() -> bool:
            nonlocal held
            with started.get_lock():
                if config.trials is not None and started.value >= config.trials:
                    return False
                started.value += 1
            held = popping.acquire(timeout=POP_TIMEOUT)  # released by popped(): one worker pops at a time
            return True

        def popped() -> None:
            nonlocal held
            if held:
                held = False
                popping.release()

        try:
            task = load(config.task, data)
            if not stop.requested:
                run_study(config, task, claim=claim, setup=False, stop=stop, prefix=f"[w{index}] ", popped=popped)
        except KeyboardInterrupt:
            pass
    if stop.requested:
        exit_now(130)


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
    started = context.Value("i", 0)
    popping = context.Lock()  # held from a worker's claim until its trial is RUNNING (see run_study)
    processes = [context.Process(target=_worker, args=(config, data, threads, i, started, popping, os.getpid()),
                                 name=f"worker-{i}") for i in range(workers)]
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
        for process in processes:
            process.start()
    finally:
        signal.signal(signal.SIGINT, ignored)
    previous = {sig: signal.signal(sig, pass_on) for sig in (signal.SIGINT, signal.SIGTERM)
                if signal.getsignal(sig) is not signal.SIG_IGN}
    try:
        waiting = {process.sentinel: process for process in processes}
        while waiting:  # join in the order they end, so a killed worker is reaped (not a zombie) at once
            for sentinel in multiprocessing.connection.wait(list(waiting)):
                waiting.pop(sentinel).join()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    fail_dead_trials(study or create_study(config), config.heartbeat)  # a worker killed by a second signal or SIGKILL
    codes = [p.exitcode for p in processes]
    del processes, started, popping  # releases the counter's semaphore now (exit_now skips the interpreter's cleanup)
    if signals[0] or 130 in codes:
        return 130
    return 1 if any(codes) else 0
