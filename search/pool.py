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
import sys
import time
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from multiprocessing import get_context
from typing import Any, Callable

import torch
from threadpoolctl import threadpool_limits  # scikit-learn's dependency

from data import Task
from .tasks import Folds, load
from .train import SeedResult, TrialSpec, resolve_device, train_seeds

_folds: Folds | None = None  # this worker process's task by validation fold (fold 0 loaded at start)


def _init_worker(task_name: str, source: str | None, threads: int) -> None:
    global _folds
    torch.set_num_threads(threads)
    _folds = Folds(load(task_name, source), source)


def _train(spec: TrialSpec, seeds: list[int], device: str, test: bool, keep_models: bool,
           label: str, fold: int = 0, refit: bool = False) -> list[SeedResult]:
    def progress(epoch: int, results) -> bool:
        shown = f"seed {seeds[0]}" if len(seeds) == 1 else f"seeds {seeds[0]}-{seeds[-1]}"
        print(f"{label}: {shown}, epoch {epoch}/{spec.epochs}", file=sys.stderr, flush=True)
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


class Pool:
    """`workers` processes, each with one torch thread and the task loaded once (task_name, source)."""

    def __init__(self, task_name: str, source: str | None, device: str = "cpu", workers: int = 1):
        self.task_name, self.source, self.device, self.workers = task_name, source, device, workers
        self.stacked = resolve_device(device).type == "cuda"  # seeds stack there: one job per configuration
        self._queued: list[_Job] = []
        self._order = itertools.count()  # equal rank: first queued, first run
        self._running: dict[Future, tuple[Callable, float]] = {}  # future -> (then, when it was submitted)
        self.jobs, self.busy, self.started = 0, 0.0, time.perf_counter()  # for `usage`
        self._executor: ProcessPoolExecutor | None = None

    def __enter__(self) -> "Pool":
        self._executor = ProcessPoolExecutor(self.workers, mp_context=get_context("spawn"),  # no forked torch state
                                             initializer=_init_worker, initargs=(self.task_name, self.source, 1))
        return self

    def __exit__(self, *exc) -> None:
        self._executor.shutdown(cancel_futures=True)

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
            while self._queued and len(self._running) < self.workers:
                job = min(self._queued)
                self._queued.remove(job)
                self._running[self._executor.submit(job.fn, *job.args)] = job.then, time.perf_counter()
            done, _ = wait(self._running, return_when=FIRST_COMPLETED)
            for future in done:
                then, submitted = self._running.pop(future)
                self.jobs, self.busy = self.jobs + 1, self.busy + time.perf_counter() - submitted
                then(future.result())

    def usage(self) -> str:
        """How busy the workers were: the jobs' seconds over workers x seconds since the pool was made."""
        wall = time.perf_counter() - self.started
        return (f"{self.jobs} job(s) in {wall / 60:.1f} min, {self.workers} worker(s) busy "
                f"{self.busy / max(self.workers * wall, 1e-9):.0%} of the time")

    def _queue(self, fn: Callable, args: tuple, then: Callable, cost: float, urgent: bool) -> None:
        if self._executor is None:
            raise RuntimeError("Pool.train/call outside `with Pool(...)`")
        self._queued.append(_Job((not urgent, -cost, next(self._order)), fn, args, then))
