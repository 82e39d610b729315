"""Re-ranking: the study's top trials retrained on other validation folds, before one is recommended.

A study's best value is the largest of many noisy means (each over a few seeds, on one validation split),
so it flatters the trial that reached it: the winner's curse. The report therefore retrains its top
configurations on the re-ranking seeds (50, 51, ...: neither a search seed nor a final seed), seed i on
validation fold i + 1 (search.tasks.load(fold=...): other held-out subjects or surnames taken from train +
validation; the test split never changes), measures each on its fold's validation split only (tau chosen
on that fold's validation logits), and recommends the one with the best choice value: the mean over the
folds of each fold's mean, the search's own split (fold 0, the search seeds) counting as one fold. The
final seeds (100, 101, ...), which choose nothing, then measure the curse on fold 0: search value minus
the same configuration's validation value on the final seeds.

Cache file (reranking.json), one entry per (spec, seeds, data, metric, code fingerprint), keyed as in
search/evaluate.py:
    {"format": 3, "entries": {"<key>": {"spec", "seeds", "folds", "metric", "taus", "values", "losses",
                                         "statuses", "data", "fingerprint"}}}
values: each re-ranking seed's validation metric on its fold under the decision rule (null for a diverged
seed); taus: the tau chosen there; losses: its validation cross-entropy after the last epoch.
"""
from __future__ import annotations

import math
import statistics
import sys
from dataclasses import asdict
from functools import partial
from pathlib import Path
from typing import Callable

import optuna

from data import Task
from . import defaults
from .cache import TRAINING_CODE, JsonCache, cache_key, code_fingerprint
from .evaluate import search_losses, spec_of
from .objective import validation_values
from .pool import Pool
from .tasks import Folds, folds as folds_offered
from .train import SeedResult, TrialSpec, log_prior, train_seeds
from .util import json_safe

FORMAT = 3


def folds_of(task: Task, seeds: list[int]) -> list[int]:
    """The validation fold of each re-ranking seed: 1, 2, ... (fold 0 is the search's), cycling."""
    return cycle_folds(folds_offered(task), seeds)


def cycle_folds(count: int, seeds: list[int]) -> list[int]:
    """Folds 1 .. count - 1 for the seeds in turn."""
    return [1 + i % (count - 1) for i in range(len(seeds))]


def rerank_spec(spec: TrialSpec, folds: Folds, seeds: list[int], metric: str, device: str = defaults.DEVICE) -> dict:
    """Train spec on the re-ranking seeds, each on its fold; each seed's validation metric (no test split)."""
    fold_numbers = folds_of(folds(0), seeds)
    results = [train_seeds(spec, folds(fold), [seed], device)[0] for seed, fold in zip(seeds, fold_numbers)]
    return summarise(spec, folds, results, fold_numbers, metric)


def summarise(spec: TrialSpec, folds: Folds, results: list[SeedResult], fold_numbers: list[int], metric: str
              ) -> dict:
    """The cache entry of one configuration's re-ranking runs: per seed, tau chosen on its fold's validation
    logits, as the search chooses it, and the validation metric there (None for a diverged seed)."""
    taus, values = [], []
    for result, fold in zip(results, fold_numbers):
        task = folds(fold)
        tau, found = (validation_values(spec, [result], task, log_prior(task.train, task.num_classes), metric)
                      if not result.diverged else (None, [None]))
        taus.append(tau)
        values.append(found[0])
    losses = [None if r.diverged else r.history["val_loss"][-1] for r in results]
    return json_safe({"spec": asdict(spec), "seeds": [r.seed for r in results], "folds": fold_numbers,
                      "metric": metric, "taus": taus, "values": values, "losses": losses,
                      "statuses": [r.status for r in results]})


def search_values(trial: optuna.trial.FrozenTrial, metric: str) -> list[float]:
    """The trial's per-seed validation values from the search (its mean, once per seed, for a bare trial)."""
    values = (trial.user_attrs.get("seed_metrics") or {}).get(metric)
    if not values:
        return [trial.value] * len(trial.user_attrs.get("seeds") or [0])
    return [v for v in values if v is not None and math.isfinite(v)]


def choice_value(trial: optuna.trial.FrozenTrial, entry: dict | None, metric: str) -> float:
    """The mean over validation folds of each fold's mean: fold 0 from the search seeds, the others from the
    re-ranking seeds (diverged seeds left out). The search's fold, on which the trial was selected, so
    counts once, not once per seed."""
    return by_folds(search_values(trial, metric), entry, "values", -math.inf)


def choice_loss(trial: optuna.trial.FrozenTrial, entry: dict | None) -> float:
    """The validation loss averaged as the choice value is (inf if unknown): the tie-break of equal choice values."""
    return by_folds(search_losses(trial), entry, "losses", math.inf)


def by_folds(search: list[float], entry: dict | None, field: str, unknown: float) -> float:
    """The mean over folds of each fold's mean of `field`: fold 0 the search seeds' values, the others the entry's."""
    means = fold_means(search, entry, field)
    return statistics.fmean(means.values()) if means else unknown


def fold_means(search: list[float], entry: dict | None, field: str) -> dict[int, float]:
    """Fold -> the mean of `field` there: fold 0 the search seeds' values, the others the entry's (non-finite
    values left out)."""
    found = {0: search}
    for fold, value in zip((entry or {}).get("folds", []), (entry or {}).get(field, [])):
        if value is not None and math.isfinite(value):
            found.setdefault(fold, []).append(value)
    return {fold: statistics.fmean(values) for fold, values in found.items() if values}


def recommend(leaders: list[optuna.trial.FrozenTrial], entries: dict[int, dict | None], metric: str,
              standard: optuna.trial.FrozenTrial | None = None, examples: int = 0) -> optuna.trial.FrozenTrial:
    """The leader with the best choice value (ties: the lower choice loss, then the better search value, then the
    lower trial number). Choice values are compared to 1e-12: equal means of different folds' fractions may differ
    in their last bits. The standard (a leader: the field's first try) is kept unless the best beats it by more
    than one standard error (the larger of standard_errors): the one-standard-error rule (Hastie et al., "The
    Elements of Statistical Learning", 7.10), which departs from the field's default only on evidence beyond the
    noise of a small validation split and of training itself.

    entries: trial number -> its re-ranking entry (None: not re-ranked, the search seeds alone)."""
    best = best_of(leaders, entries, metric)
    if standard is None or standard.number == best.number:
        return best
    top = choice_value(best, entries.get(best.number), metric)
    errors = standard_errors(best, standard, entries, metric, examples)
    kept = choice_value(standard, entries.get(standard.number), metric) >= top - max(errors.values())
    return standard if kept else best


def best_of(leaders: list[optuna.trial.FrozenTrial], entries: dict[int, dict | None], metric: str
            ) -> optuna.trial.FrozenTrial:
    """The leader with the best choice value, ties broken as `recommend` says."""
    return max(leaders, key=lambda t: (round(choice_value(t, entries.get(t.number), metric), 12),
                                       -choice_loss(t, entries.get(t.number)), t.value, -t.number))


def first_try(leaders: list[optuna.trial.FrozenTrial], standard: TrialSpec | None) -> optuna.trial.FrozenTrial | None:
    """The leader whose configuration is the standard (the field's first try), if one is."""
    return next((t for t in leaders if spec_of(t) == standard), None) if standard is not None else None


def standard_errors(best: optuna.trial.FrozenTrial, standard: optuna.trial.FrozenTrial, entries: dict[int, dict | None],
                    metric: str, examples: int) -> dict[str, float]:
    """The two errors of best's lead over the standard, of which the rule takes the larger: "examples", margin(best's
    choice value, examples), the sampling of validation examples; "folds", the standard error of the mean over the
    folds both were trained on of best's fold mean minus the standard's (0 on fewer than two folds), the noise of
    the training runs themselves: a seed or a fold moves one configuration more than the examples' margin says."""
    top = choice_value(best, entries.get(best.number), metric)
    ours, theirs = (fold_means(search_values(t, metric), entries.get(t.number), "values") for t in (best, standard))
    leads = [ours[fold] - theirs[fold] for fold in ours if fold in theirs]
    folds = statistics.stdev(leads) / math.sqrt(len(leads)) if len(leads) > 1 else 0.0
    return {"examples": margin(top, examples), "folds": folds}


def margin(value: float, examples: int) -> float:
    """One standard error of a proportion `value` of `examples` validation examples (Agresti-Coull: two of each
    outcome added, so that a perfect score on a few examples still has an error; approximate for a metric that
    is not a plain proportion)."""
    p = (value * examples + 2) / (examples + 4)
    return math.sqrt(p * (1 - p) / (examples + 4))


class Reranking:
    """Re-ranking runs of configurations, cached in `path`; `run` (or `submit` to a shared search.pool.Pool)
    trains only what is missing, one (configuration, seed, fold) per job in `workers` processes.

    data: what identifies the data (as for search.evaluate.Evaluations); task: the loaded task (fold 0);
    source lets this process and the worker processes load the other folds."""

    def __init__(self, path: Path, data: dict, seeds: list[int], metric: str, task: Task,
                 source: str | None = None, device: str = defaults.DEVICE, workers: int = 1,
                 write: Callable[[str], None] = lambda line: print(line, file=sys.stderr, flush=True),
                 standard: TrialSpec | None = None):
        self.path, self.data, self.seeds, self.metric, self.task = Path(path), data, list(seeds), metric, task
        self.source, self.device, self.workers, self.write = source, device, workers, write
        self.folds, self.fold_numbers = Folds(task, source), folds_of(task, self.seeds)
        self.fingerprint = code_fingerprint([*TRAINING_CODE, "search/rerank.py", "search/objective.py"])
        self.trained = 0
        self.standard = standard  # the field's first try, kept within a standard error when a leader (recommend)
        self.pending = 0  # configurations submitted and not yet in
        self.cache = JsonCache(self.path, {"format": FORMAT}, "entries", "re-ranking cache")
        self.entries: dict[str, dict] = self.cache.load({})

    def key(self, spec: TrialSpec) -> str:
        return cache_key(spec, self.seeds, self.data, self.metric, self.fingerprint)

    def run(self, specs: list[TrialSpec]) -> None:
        if not self.seeds or all(self.key(s) in self.entries for s in specs):
            return  # nothing to train: no worker processes
        with Pool(self.task.name, self.source, self.device, self.workers) as pool:
            self.submit(pool, specs)
            pool.wait()

    def submit(self, pool: Pool, specs: list[TrialSpec], cost: Callable[[TrialSpec], float] = lambda spec: 0.0
               ) -> None:
        """Queue what `run` would train in pool, ahead of other work (the recommendation waits on it);
        `pending` counts what is not in yet. cost(spec): an estimate of one seed's seconds."""
        todo = [s for s in dict.fromkeys(specs) if self.key(s) not in self.entries] if self.seeds else []
        if todo:
            self.write(f"re-ranking {len(todo)} configuration(s) on seeds {self.seeds}, validation folds "
                       f"{self.fold_numbers}, {pool.workers} process(es)")
        self.pending += len(todo)
        for i, spec in enumerate(todo, start=1):
            found: list[SeedResult] = []  # each seed trains on its own fold: one job each, also on CUDA
            for seed, fold in zip(self.seeds, self.fold_numbers):
                pool.train(spec, [seed], f"re-ranking {i}/{len(todo)} ({spec.family}, fold {fold})",
                           partial(self._collect, spec, found), cost=cost(spec), urgent=True, fold=fold)

    def _collect(self, spec: TrialSpec, found: list[SeedResult], results: list[SeedResult]) -> None:
        found.extend(results)
        if len(found) == len(self.seeds):
            self._done(spec, sorted(found, key=lambda r: self.seeds.index(r.seed)))

    def _done(self, spec: TrialSpec, results: list[SeedResult]) -> None:
        self.entries[self.key(spec)] = {**summarise(spec, self.folds, results, self.fold_numbers, self.metric),
                                        "data": self.data, "fingerprint": self.fingerprint}
        self.trained += 1
        self.pending -= 1
        self.cache.save(self.entries)  # after each: an interrupted report resumes
        self.write(f"re-ranked {spec.family}: {self.pending} to go")

    def get(self, spec: TrialSpec) -> dict | None:
        return self.entries.get(self.key(spec)) if self.seeds else None

    def choose(self, leaders: list[optuna.trial.FrozenTrial]) -> tuple[optuna.trial.FrozenTrial, dict[int, dict | None]]:
        """The recommended leader and each leader's entry (by trial number), re-ranking what is missing."""
        self.run([spec_of(t) for t in leaders])
        entries = {t.number: self.get(spec_of(t)) for t in leaders}
        return recommend(leaders, entries, self.metric, first_try(leaders, self.standard), self.examples()), entries

    def examples(self) -> int:
        """The validation examples a choice value counts: each fold's (fold 0 and the re-ranking folds)."""
        return len(self.task.val) * len({0, *self.fold_numbers}) if self.seeds else len(self.task.val)
