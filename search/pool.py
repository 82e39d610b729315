"""The report's worker processes: one (configuration, seed) per job, the costliest job first.

A report trains several configurations for a few seeds each (re-ranking, final evaluations) and fits
its baselines. With one configuration per job, one worker trained a slow configuration's last seeds
for minutes while the other idled, and each stage waited for the one before. Here every stage feeds
one pool: a job is one seed of one configuration (all its seeds where they train as one stacked
computation, on CUDA), jobs wait in this process and go to a worker as one frees, first the urgent
ones (re-ranking: the recommendation's own evaluations wait on it), then the costliest by estimate.
Results come back to this process, which assembles and caches them.

    with Pool("har", source, "cpu", workers=2) as pool:
        pool.train(spec, [100, 101], "label", then=print)   # then(results), in seed order
        pool.call(fit, then=print)                                      # fit(task) in a worker
        pool.wait()
"""
from __future__ import annotations

import itertools
import math
import multiprocessing
import multiprocessing.connection
import os
import signal
import sys
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from threadpoolctl import threadpool_limits  # scikit-learn's dependency

from data import Task
from . import defaults, signals
from .tasks import Folds, load
from .train import SeedResult, TrialSpec, resolve_device, train_seeds

_folds: Folds | None = None  # this worker process's task by validation fold (fold 0 loaded at start)


def _serve(parent, task_name: str, source: str | None, threads: int) -> None:
    """A worker: load the task once, then run each (fn, args) that comes through the pipe and send back
    ("ok", result) or ("error", exception, traceback), until the pool closes its end."""
    global _folds
    # A worker whose parent died ends at once: its results have nowhere to go. (Before this, the kernel's
    # SIGTERM ends it: search/signals.py.)
    signals.when_parent_dies(lambda: os._exit(1))
    torch.set_num_threads(threads)
    _folds = Folds(load(task_name, source), source)
    while True:
        try:
            fn, args = parent.recv()
        except EOFError:
            break
        try:
            reply = ("ok", fn(*args))
        except Exception as exc:  # raised again in the pool's process, with this traceback
            reply = ("error", exc, traceback.format_exc())
        try:
            parent.send(reply)
        except Exception as exc:  # a result or exception that does not pickle
            parent.send(("error", RuntimeError(f"cannot send the result back: {exc}"), traceback.format_exc()))
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # nothing left to clean up; the interpreter's teardown takes seconds with torch loaded


def _train(spec: TrialSpec, seeds: list[int], device: str, test: bool, keep_models: bool,
           label: str, fold: int = 0, refit: bool = False) -> list[SeedResult]:
    def progress(epoch: int, results) -> bool:
        shown = f"seed {seeds[0]}" if len(seeds) == 1 else f"seeds {seeds[0]}-{seeds[-1]}"
        # One write per line: the workers share the terminal, and print's separate newline could interleave.
        sys.stderr.write(f"{label}: {shown}, epoch {epoch}/{spec.epochs}\n")
        sys.stderr.flush()
        return False
    results = train_seeds(spec, _folds(fold, refit), seeds, device, on_epoch=progress, test=test, keep_models=keep_models)
    for r in results:  # weights travel as a CPU state dict, not as a module
        r.model = {k: v.detach().cpu() for k, v in r.model.state_dict().items()} if r.model is not None else None
    return results


def _call(fn: Callable[[Task], Any]) -> Any:
    with threadpool_limits(1):  # one core per worker, as for training (scikit-learn's OpenMP would take all)
        return fn(_folds(0))


@dataclass(order=True)
class _Job:
    rank: tuple  # smaller first: (not urgent, -cost, order submitted)
    fn: Callable = field(compare=False)
    args: tuple = field(compare=False)
    then: Callable = field(compare=False)


@dataclass(eq=False)
class _Worker:
    process: multiprocessing.Process
    pipe: multiprocessing.connection.Connection  # the pool's end


class Pool:
    """`workers` processes, each with one torch thread and the task loaded once (task_name, source).

    Each worker has a pipe to this process (no multiprocessing queue: its named semaphores outlive a
    parent killed with SIGKILL, as "leaked semaphore" warnings). Workers ignore Ctrl-C (this process
    stops them), and end with this process, or with the thread that entered the pool, even on SIGKILL.
    """

    def __init__(self, task_name: str, source: str | None, device: str = defaults.DEVICE, workers: int = 1):
        self.task_name, self.source, self.device, self.workers = task_name, source, device, workers
        self.stacked = resolve_device(device).type == "cuda"  # seeds stack there: one job per configuration
        self._queued: list[_Job] = []
        self._order = itertools.count()  # equal rank: first queued, first run
        self._running: dict[_Worker, tuple[_Job, float]] = {}  # worker -> (its job, when it was sent)
        self.jobs, self.busy, self.started = 0, 0.0, time.perf_counter()  # for `usage`
        self._workers: list[_Worker] | None = None

    def __enter__(self) -> "Pool":
        context = multiprocessing.get_context("spawn")  # no forked torch state
        self._workers = []
        ignored = signal.signal(signal.SIGINT, signal.SIG_IGN)  # inherited: a terminal's Ctrl-C is this process's
        try:
            for _ in range(self.workers):
                ours, theirs = context.Pipe()
                process = context.Process(target=_serve, args=(theirs, self.task_name, self.source, 1), daemon=True)
                process.start()
                theirs.close()  # the worker's copy is its own: the pipe closes when it ends
                self._workers.append(_Worker(process, ours))
        except BaseException:
            self.__exit__(*sys.exc_info())
            raise
        finally:
            signal.signal(signal.SIGINT, ignored)
        return self

    def __exit__(self, kind, value, tb) -> None:
        for worker in self._workers or []:
            worker.pipe.close()  # an idle worker ends on it
            if kind is not None:
                worker.process.terminate()  # a job still running is of no use any more
        for worker in self._workers or []:
            worker.process.join()
        self._workers = None

    def train(self, spec: TrialSpec, seeds: list[int], label: str, then: Callable[[list[SeedResult]], None],
              test: bool = False, keep_models: bool = False, cost: float = 0.0, urgent: bool = False,
              fold: int = 0, refit: bool = False) -> None:
        """Train spec on seeds in the workers; then(results in seed order) once every seed is in.

        cost: an estimate of one seed's seconds (jobs with larger costs start first); result.model holds
        the weights as a state dict with keep_models; fold: the task's validation fold (search.tasks.load);
        refit: train on the fold's training and validation rows (data.Task.refit)."""
        found: list[SeedResult] = []

        def collect(results: list[SeedResult]) -> None:
            found.extend(results)
            if len(found) == len(seeds):
                then(sorted(found, key=lambda r: seeds.index(r.seed)))
        for part in ([seeds] if self.stacked else [[s] for s in seeds]):
            self._queue(_train, (spec, part, self.device, test, keep_models, label, fold, refit), collect, cost, urgent)

    def call(self, fn: Callable[[Task], Any], then: Callable[[Any], None], cost: float = math.inf) -> None:
        """fn(task) in a worker (fn must be importable: a module-level function or a partial of one)."""
        self._queue(_call, (fn,), then, cost, False)

    def wait(self, until: Callable[[], bool] = lambda: False) -> None:
        """Run jobs until none is left, or until until() holds after a job's results were handled."""
        while (self._queued or self._running) and not until():
            for worker in self._workers:
                if self._queued and worker not in self._running:
                    job = min(self._queued)
                    self._queued.remove(job)
                    worker.pipe.send((job.fn, job.args))
                    self._running[worker] = job, time.perf_counter()
            ends = {w.pipe: w for w in self._running} | {w.process.sentinel: w for w in self._running}
            for worker in {ends[ready] for ready in multiprocessing.connection.wait(list(ends))}:
                job, sent = self._running.pop(worker)
                try:
                    reply = worker.pipe.recv()
                except EOFError:  # it died: killed, out of memory
                    worker.process.join()
                    raise RuntimeError(f"a pool worker ended in a job (exit code {worker.process.exitcode})") from None
                self.jobs, self.busy = self.jobs + 1, self.busy + time.perf_counter() - sent
                if reply[0] == "error":
                    raise reply[1] from RuntimeError(f"in a pool worker:\n{reply[2]}")
                job.then(reply[1])

    def usage(self) -> str:
        """How busy the workers were: the jobs' seconds over workers x seconds since the pool was made."""
        wall = time.perf_counter() - self.started
        return (f"{self.jobs} job(s) in {wall / 60:.1f} min, {self.workers} worker(s) busy "
                f"{self.busy / max(self.workers * wall, 1e-9):.0%} of the time")

    def _queue(self, fn: Callable, args: tuple, then: Callable, cost: float, urgent: bool) -> None:
        if self._workers is None:
            raise RuntimeError("Pool.train/call outside `with Pool(...)`")
        self._queued.append(_Job((not urgent, -cost, next(self._order)), fn, args, then))
