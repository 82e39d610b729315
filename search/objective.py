"""The objective: suggest, build, train K seeds, report, return the mean validation metric.

Budget strategies (how a trial spends its seed-epochs; the pruner decides on what they report):
- lockstep: all K seeds train epoch by epoch; each epoch reports their mean to the pruner.
- racing:   seed 1 trains alone with per-epoch pruning on its curve; if it finishes at or above the
            median of finished trials, the other K-1 seeds train together in one call (on CUDA
            as one stacked computation), without pruning; below it, the trial is raced out.
Either way a completed trial's value is the mean over all K seeds.

A warm start (a known-good configuration the study queued first, user attribute `warm_start`) is
trained in full: its epochs are reported and counted at the pruner's rungs like any trial's, but it is
never pruned or raced out: it is queued to be measured, and a one-epoch dip of its first seed would
otherwise discard it.

Racing checks the median once, after seed 1, so that the other seeds can train together: a trial whose
first seed passes always trains all K seeds.

Pruning is fair across epoch budgets: a trial reports at step = epoch * max_epochs / its epochs,
so a 20-epoch trial and a 10-epoch trial are compared at the same share of their budget (and
schedule), never a slow but better curve against one that is further along.
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
from . import defaults
from .decision import choose_tau
from .space import Suggest
from .train import METRICS, SeedResult, TrialSpec, log_prior, parameter_count, train_seeds
from .util import json_safe

STRATEGIES = ("lockstep", "racing")


def validation_values(spec: TrialSpec, results: list[SeedResult], task: Task, prior, metric: str
                      ) -> tuple[float, list[float]]:
    """(decision tau, each seed's validation metric after its last epoch) under the trial's decision rule."""
    if spec.decision == "argmax":
        return 0.0, [r.history[f"val_{metric}"][-1] for r in results]
    return choose_tau([r.logits["val"] for r in results], task.val.y, prior, metric)


def is_warm_start(trial: optuna.Trial) -> bool:
    """Queued by the study as a known-good configuration (search/study.py queue_warm_start)."""
    return bool(trial.user_attrs.get("warm_start", False))


def budget_step(epoch: int, epochs: int, max_epochs: int) -> int:
    """The step a trial reports at: its share of its own budget, in epochs of the longest budget."""
    return round(epoch * max_epochs / epochs)


class Objective:
    def __init__(self, task: Task, space: Callable[[Suggest], None], seeds: int = defaults.SEEDS,
                 metric: str = "accuracy", strategy: str = defaults.STRATEGY, device: str = defaults.DEVICE,
                 fixed: dict | None = None, grid: dict | None = None,
                 suggest: Callable[[optuna.Trial], Suggest] | None = None, max_epochs: int = 10,
                 on_progress: Callable[[dict], None] | None = None,
                 should_stop: Callable[[], bool] = lambda: False):
        if metric not in METRICS:
            raise ValueError(f"metric must be one of {list(METRICS)}, got {metric!r}")
        if strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {list(STRATEGIES)}, got {strategy!r}")
        self.task, self.space, self.metric, self.strategy, self.device = task, space, metric, strategy, device
        self.seeds = list(range(seeds))
        self.max_epochs = max_epochs  # the pruner's max_resource: steps are epochs of the longest budget
        self.suggest = suggest or (lambda trial: Suggest(trial, fixed, grid))
        self.log_prior = log_prior(task.train, task.num_classes)
        self.on_trial_end: list[Callable[[optuna.Trial, dict], None]] = []  # e.g. dashboard artifacts
        # After every seed-epoch: {"trial", "seed", "epoch", "epochs", "metric", "value"} (progress lines).
        self.on_progress = on_progress or (lambda event: None)
        self.should_stop = should_stop  # asked between batches (Ctrl-C, SIGTERM)

    def __call__(self, trial: optuna.Trial) -> float:
        suggest = self.suggest(trial)
        self.space(suggest)
        spec = TrialSpec(**suggest.values)
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

    def values(self, spec: TrialSpec, results: list[SeedResult]) -> tuple[float, list[float]]:
        return validation_values(spec, results, self.task, self.log_prior, self.metric)

    def _train(self, trial: optuna.Trial, spec: TrialSpec, seeds: list[int], prune: bool) -> list[SeedResult]:
        protected = is_warm_start(trial)

        def on_epoch(epoch: int, results: list[SeedResult]) -> bool:
            tau, values = self.values(spec, results)
            for r, value in zip(results, values):
                self.on_progress({"trial": trial.number, "seed": r.seed, "epoch": epoch, "epochs": spec.epochs,
                                  "metric": self.metric, "value": value})
            if not prune:
                return False
            trial.report(statistics.fmean(values), budget_step(epoch, spec.epochs, self.max_epochs))
            # The last epoch is reported but never pruned: its training is already paid for, and a
            # complete trial's value still informs the sampler. A warm start asks too (Hyperband records
            # its value at the rung then) but trains on whatever the answer.
            return epoch < spec.epochs and trial.should_prune() and not protected
        return train_seeds(spec, self.task, seeds, self.device, on_epoch=on_epoch, should_stop=self.should_stop)

    def _lockstep(self, trial: optuna.Trial, spec: TrialSpec) -> tuple[list[SeedResult], str]:
        results = self._train(trial, spec, self.seeds, prune=True)
        return results, self._ended(results)

    def _racing(self, trial: optuna.Trial, spec: TrialSpec) -> tuple[list[SeedResult], str]:
        results = self._train(trial, spec, self.seeds[:1], prune=True)
        if self._ended(results) != "finished":
            return results, self._ended(results)
        finished = [t.value for t in trial.study.get_trials(deepcopy=False, states=[optuna.trial.TrialState.COMPLETE])]
        bar = statistics.median(finished) if len(finished) >= 5 and not is_warm_start(trial) else -math.inf
        if len(self.seeds) > 1:  # the bar is checked once, then the other seeds train together
            if statistics.fmean(self.values(spec, results)[1]) < bar:
                return results, f"raced out after 1 of {len(self.seeds)} seeds"
            results += self._train(trial, spec, self.seeds[1:], prune=False)
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
        tau = 0.0
        if not ended.startswith("diverged"):
            tau, per_seed[self.metric] = self.values(spec, results)
        values = [v for v in per_seed[self.metric] if math.isfinite(v)]
        confusion = [[sum(r.confusion[i][j] for r in results if r.confusion) for j in range(self.task.num_classes)]
                     for i in range(self.task.num_classes)]
        summary = {
            "spec": asdict(spec),
            "seeds": [r.seed for r in results],
            "seed_metrics": per_seed,  # the study metric under the decision rule; the others plain argmax
            "metric": self.metric,
            "metric_mean": statistics.fmean(values) if values else math.nan,
            "metric_std": statistics.pstdev(values) if len(values) > 1 else 0.0,
            "decision_tau": tau,
            "curves": [r.history for r in results],
            "confusion": confusion,  # validation, summed over seeds, plain argmax
            "params": parameter_count(spec, self.task),
            "train_seconds": round(seconds, 2),
            "seed_epochs": sum(len(r.history.get("train_loss", [])) for r in results),
            "strategy": self.strategy,
            "ended": ended,
            "worker": f"{socket.gethostname()}:{os.getpid()}",  # several processes or machines may share a study
        }
        for key, value in summary.items():
            trial.set_user_attr(key, json_safe(value))
        return summary
