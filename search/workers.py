"""One study, several worker processes on one storage: how a search uses more than one core.

bench/README.md: one torch thread per process is faster than two threads in one process, so the
default is one single-threaded worker per core. The workers share the study through its storage
(SQLite waits for locks; PostgreSQL for several machines) and a counter of trials started, so
`--trials N` adds N trials in all and a worker that finishes early takes the next one.
"""
from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from dataclasses import replace

import torch

from data import load_task
from .study import StudyConfig, quiet_optuna, raise_interrupt, run_study


def default_workers() -> int:
    """The cores this process may use (its CPU affinity, not the machine's count)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def can_share(storage: str) -> bool:
    """An in-memory SQLite database exists in one process only."""
    return not (storage.startswith("sqlite") and (":memory:" in storage or storage.rstrip("/") == "sqlite:"))


def _exit_with_parent(parent: int) -> None:
    """A worker whose parent was killed (SIGKILL) interrupts itself instead of searching on alone."""
    while os.getppid() == parent:
        time.sleep(1.0)
    os.kill(os.getpid(), signal.SIGTERM)


def _worker(config: StudyConfig, data: str | None, threads: int, index: int, started, parent: int) -> None:
    signal.signal(signal.SIGTERM, raise_interrupt)
    threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True).start()
    torch.set_num_threads(threads)
    quiet_optuna()
    if config.sampler_seed is not None:  # distinct, reproducible streams per worker
        config = replace(config, sampler_seed=config.sampler_seed + index)

    def claim() -> bool:
        with started.get_lock():
            if config.trials is not None and started.value >= config.trials:
                return False
            started.value += 1
            return True

    try:
        run_study(config, load_task(config.task, data), claim=claim, setup=False)
    except KeyboardInterrupt:
        raise SystemExit(130)


def run_workers(config: StudyConfig, data: str | None, workers: int, threads: int) -> int:
    """Run config.trials trials over `workers` processes; the parent has called prepare_study.

    Returns 0, or 130 when interrupted: Ctrl-C reaches every worker; SIGTERM to this process is
    passed on; a SIGKILL of this process makes the workers stop their running trial themselves.
    """
    context = multiprocessing.get_context("spawn")  # no forked torch/SQLite state
    started = context.Value("i", 0)
    processes = [context.Process(target=_worker, args=(config, data, threads, i, started, os.getpid()),
                                 name=f"worker-{i}") for i in range(workers)]
    for process in processes:
        process.start()
    try:
        for process in processes:
            process.join()
    except KeyboardInterrupt:
        deadline = time.monotonic() + 5  # Ctrl-C already reached them; a SIGTERM to us did not
        for process in processes:
            process.join(max(0.0, deadline - time.monotonic()))
        for process in processes:
            if process.is_alive():
                process.terminate()
            process.join()
        return 130
    failed = [p for p in processes if p.exitcode not in (0, None)]
    return 130 if any(p.exitcode == 130 for p in failed) else (1 if failed else 0)
