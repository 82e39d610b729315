"""The objective: suggest, build, train K seeds, report, return the mean validation metric.

Budget strategies (how a trial spends its seed-epochs; the pruner decides on what they report):
- lockstep: all K seeds train epoch by epoch; each epoch reports their mean to the pruner.
- racing:   seed 1 trains alone with per-epoch pruning on its curve; each further seed is
            added only while the running mean stays at or above the median of finished trials.
Either way a completed trial's value is the mean over all K seeds.
"""
from __future__ import annotations

import math
import os
import socket
import statistics
import time
from dataclasses import asdict
from typing import Callable

import optuna

from data import Task
from .space import Suggest
from .train import SeedResult, TrialSpec, parameter_count, train_seeds

METRICS = ("accuracy", "balanced_accuracy", "macro_f1")
STRATEGIES = ("lockstep", "racing")


def mean_curve(results: list[SeedResult], key: str) -> float:
    return statistics.fmean(r.history[key][-1] for r in results)


class Objective:
    def __init__(self, task: Task, space: Callable[[Suggest], None], seeds: int = 3, metric: str = "accuracy",
                 strategy: str = "lockstep", device: str = "cpu", fixed: dict | None = None,
                 grid: dict | None = None, suggest: Callable[[optuna.Trial], Suggest] | None = None,
                 on_progress: Callable[[dict], None] | None = None):
        if metric not in METRICS:
            raise ValueError(f"metric must be one of {list(METRICS)}, got {metric!r}")
        if strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {list(STRATEGIES)}, got {strategy!r}")
        self.task, self.space, self.metric, self.strategy, self.device = task, space, metric, strategy, device
        self.seeds = list(range(seeds))
        self.suggest = suggest or (lambda trial: Suggest(trial, fixed, grid))
        self.on_trial_end: list[Callable[[optuna.Trial, dict], None]] = []  # e.g. dashboard artifacts
        # After every seed-epoch: {"trial", "seed", "epoch", "epochs", "metric", "value"} (progress lines).
        self.on_progress = on_progress or (lambda event: None)

    def __call__(self, trial: optuna.Trial) -> float:
        self.space(self.suggest(trial))
        spec = TrialSpec(**trial.params)
        started = time.perf_counter()
        results, ended = (self._racing if self.strategy == "racing" else self._lockstep)(trial, spec)
        summary = self.record(trial, spec, results, ended, time.perf_counter() - started)
        for hook in self.on_trial_end:
            hook(trial, summary)
        if ended.startswith("diverged"):
            return math.nan  # Optuna marks the trial FAIL; the study goes on
        if ended != "finished":
            raise optuna.TrialPruned(ended)
        return summary["metric_mean"]

    def _progress(self, trial: optuna.Trial, epoch: int, results: list[SeedResult], epochs: int) -> bool:
        for r in results:
            self.on_progress({"trial": trial.number, "seed": r.seed, "epoch": epoch, "epochs": epochs,
                              "metric": self.metric, "value": r.history[f"val_{self.metric}"][-1]})
        return False

    def _report(self, trial: optuna.Trial, epoch: int, results: list[SeedResult], epochs: int) -> bool:
        """Report the seeds' mean validation metric for this epoch; True when the pruner stops the trial.

        The last epoch is reported but never pruned: its training is already paid for, and a
        complete trial's value still informs the sampler."""
        self._progress(trial, epoch, results, epochs)
        trial.report(mean_curve(results, f"val_{self.metric}"), epoch)
        return epoch < epochs and trial.should_prune()

    def _lockstep(self, trial: optuna.Trial, spec: TrialSpec) -> tuple[list[SeedResult], str]:
        results = train_seeds(spec, self.task, self.seeds, self.device,
                              on_epoch=lambda epoch, rs: self._report(trial, epoch, rs, spec.epochs))
        return results, self._ended(results)

    def _racing(self, trial: optuna.Trial, spec: TrialSpec) -> tuple[list[SeedResult], str]:
        results = train_seeds(spec, self.task, self.seeds[:1], self.device,
                              on_epoch=lambda epoch, rs: self._report(trial, epoch, rs, spec.epochs))
        if self._ended(results) != "finished":
            return results, self._ended(results)
        finished = [t.value for t in trial.study.get_trials(deepcopy=False, states=[optuna.trial.TrialState.COMPLETE])]
        bar = statistics.median(finished) if len(finished) >= 5 else -math.inf
        for seed in self.seeds[1:]:
            running = statistics.fmean(r.final[self.metric] for r in results)
            if running < bar:
                return results, f"raced out after {len(results)} of {len(self.seeds)} seeds"
            results += train_seeds(spec, self.task, [seed], self.device,
                                   on_epoch=lambda epoch, rs: self._progress(trial, epoch, rs, spec.epochs))
            if self._ended(results) != "finished":
                break
        return results, self._ended(results)

    @staticmethod
    def _ended(results: list[SeedResult]) -> str:
        for status in ("diverged", "stopped"):
            for r in results:
                if r.status.startswith(status):
                    return r.status.replace("stopped", "pruned") + (f" (seed {r.seed})" if status == "diverged" else "")
        return "finished"

    def record(self, trial: optuna.Trial, spec: TrialSpec, results: list[SeedResult], ended: str,
               seconds: float) -> dict:
        """Keep in the trial what reports and the dashboard need."""
        per_seed = {m: [r.final.get(m, math.nan) for r in results] for m in METRICS}
        values = [v for v in per_seed[self.metric] if math.isfinite(v)]
        confusion = [[sum(r.confusion[i][j] for r in results if r.confusion) for j in range(self.task.num_classes)]
                     for i in range(self.task.num_classes)]
        summary = {
            "spec": asdict(spec),
            "seeds": [r.seed for r in results],
            "seed_metrics": per_seed,
            "metric": self.metric,
            "metric_mean": statistics.fmean(values) if values else math.nan,
            "metric_std": statistics.pstdev(values) if len(values) > 1 else 0.0,
            "curves": [r.history for r in results],
            "confusion": confusion,  # validation, summed over seeds
            "params": parameter_count(spec, self.task),
            "train_seconds": round(seconds, 2),
            "seed_epochs": sum(len(r.history.get("train_loss", [])) for r in results),
            "strategy": self.strategy,
            "ended": ended,
            "worker": f"{socket.gethostname()}:{os.getpid()}",  # several processes or machines may share a study
        }
        for key, value in summary.items():
            trial.set_user_attr(key, _finite(value))
        return summary


def _finite(value):
    """JSON has no NaN: Optuna's storage would refuse it, so NaN/inf become None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value
