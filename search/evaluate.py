"""Final evaluation of searched configurations on the test split (the baselines' is in search/baselines.py).

The search chooses configurations on validation metrics alone. A report then picks some of them
(`select`), retrains each on the final seeds (100, 101, ...: never a search seed) with
`train_seeds(..., test=True)` and keeps the results in a JSON cache, so regenerating a report
trains nothing it has already evaluated.

Cache file (evaluations.json), one entry per (spec, seeds, data, metric, code fingerprint):
    {"format": 2,
     "evaluations": {"<key>": {"spec", "seeds", "data", "metric", "fingerprint", "params",
                               "decision": {"rule", "tau"},
                               "runs": [{"seed", "status", "seconds", "history", "val_confusion",
                                         "val": metrics | null,
                                         "test": {loss, metrics, per class, confusion} | null}],
                               "ensemble": {"val": metrics, "test": metrics + confusion,
                                            "frontier": {"val": [points], "test": [points]}} | null}}}
A run's and the ensemble's test metrics are those of the decision rule (tau chosen on validation
with the final seeds' validation logits; tau = 0 for decision=argmax). The frontier points are
the ensemble's metrics at every tau of search.decision.TAUS. NaN is stored as null.
key = the first 16 hex digits of sha256(JSON of spec, seeds, data, metric and the fingerprint of
the training code, search/cache.py): a change to training, models or data loading never reuses stale
results, and a change to their comments alone keeps them.
"""
from __future__ import annotations

import math
import sys
from dataclasses import asdict, replace
from functools import partial
from pathlib import Path
from typing import Callable

import numpy as np
import optuna
import torch
import torch.nn.functional as F

from data import Task
from . import defaults
from .cache import JsonCache, cache_key, code_fingerprint
from .decision import choose_tau, decide, ensemble_log_probs, frontier
from .pool import Pool
from .space import spec_fields
from .tasks import load
from .train import (METRICS, DeviceSplit, SeedResult, TrialSpec, log_prior, parameter_count, per_class, predict,
                    scores, train_seeds)
from .storage import hide_password, open_storage
from .util import json_safe

FORMAT = 2


def spec_of(trial: optuna.trial.FrozenTrial) -> TrialSpec:
    """The full configuration a trial trained (the objective stores it; a bare trial has only its params)."""
    return TrialSpec(**trial.user_attrs.get("spec", spec_fields(trial.params)))


def ranked(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """COMPLETE trials with a finite value, best validation value first (ties: the lower validation loss, then
    the lower trial number)."""
    done = [t for t in study.get_trials(deepcopy=False, states=[optuna.trial.TrialState.COMPLETE])
            if t.value is not None and math.isfinite(t.value)]
    return sorted(done, key=lambda t: (-t.value, mean_or_inf(search_losses(t)), t.number))


def search_losses(trial: optuna.trial.FrozenTrial) -> list[float]:
    """Each search seed's validation loss (cross-entropy after its last epoch), as the objective recorded it.

    The tie-break of equal validation values: a metric counts whole examples, so on a small validation split
    many configurations tie (every one at 1.0 on 10 series), and the loss still tells them apart."""
    found = [curve["val_loss"][-1] for curve in trial.user_attrs.get("curves") or [] if curve.get("val_loss")]
    return [loss for loss in found if loss is not None and math.isfinite(loss)]


def mean_or_inf(values: list[float]) -> float:
    """The mean, or inf for none (an unknown loss ranks last)."""
    return float(np.mean(values)) if values else math.inf


def search_value(trial: optuna.trial.FrozenTrial) -> float:
    """A trial's validation value: its objective if COMPLETE, else the last value it reported (pruned)."""
    if trial.state == optuna.trial.TrialState.COMPLETE:
        return trial.value
    return trial.intermediate_values[max(trial.intermediate_values)]


def select(study: optuna.Study, top: int, standard: TrialSpec | None = None
           ) -> tuple[dict[str, optuna.trial.FrozenTrial], list[optuna.trial.FrozenTrial]]:
    """The best trial of each family and the `top` best distinct configurations, by validation value only, and
    after them the standard configuration (the field's first try) if the study completed it.

    A family none of whose trials completed (the pruner stopped them all) is represented by its
    pruned trial with the best last reported value, so that every family searched is evaluated."""
    best: dict[str, optuna.trial.FrozenTrial] = {}
    leaders, seen = [], set()
    done = ranked(study)
    for trial in done:
        spec = spec_of(trial)
        best.setdefault(spec.family, trial)
        if len(leaders) < top and spec not in seen:  # a repeated configuration is evaluated once
            seen.add(spec)
            leaders.append(trial)
    if standard is not None and standard not in seen:
        leaders += [t for t in done if spec_of(t) == standard][:1]
    pruned = [t for t in study.get_trials(deepcopy=False, states=[optuna.trial.TrialState.PRUNED])
              if t.intermediate_values and math.isfinite(search_value(t))]
    for trial in sorted(pruned, key=lambda t: (-search_value(t), t.number)):
        best.setdefault(spec_of(trial).family, trial)
    return best, leaders


def seed_seconds(study: optuna.Study) -> Callable[[TrialSpec], float]:
    """An estimate of one seed's training seconds for a configuration (0 if unknown), from the study's timings:
    its seconds per seed-epoch in the search (any imbalance strategy) times its epochs."""
    per_epoch = {}
    for trial in study.get_trials(deepcopy=False):
        if trial.user_attrs.get("seed_epochs"):
            key = replace(spec_of(trial), imbalance="none")
            per_epoch[key] = trial.user_attrs["train_seconds"] / trial.user_attrs["seed_epochs"]
    return lambda spec: per_epoch.get(replace(spec, imbalance="none"), 0.0) * spec.epochs


def decided(logits: torch.Tensor, y: torch.Tensor, prior: torch.Tensor, tau: float, num_classes: int) -> dict:
    """Metrics, per-class rates and confusion of one model's logits under the decision rule."""
    found = scores(y.numpy(), decide(logits, prior, tau), num_classes)
    return {"loss": F.cross_entropy(logits, y).item(), **found, **per_class(found["confusion"])}


def decided_metrics(logits: torch.Tensor, y: torch.Tensor, prior: torch.Tensor, tau: float, num_classes: int) -> dict:
    """Only the METRICS of one model's logits under the decision rule (no loss, per-class rates or confusion)."""
    found = scores(y.numpy(), decide(logits, prior, tau), num_classes)
    return {k: found[k] for k in METRICS}


def evaluate_spec(spec: TrialSpec, task: Task, seeds: list[int], metric: str, device: str = defaults.DEVICE,
                  keep_models: bool = False, on_epoch: Callable | None = None,
                  tau: float | None = None) -> tuple[dict, list[dict] | None]:
    """Train spec on the final seeds, decide tau on validation (unless given: a refit), measure the test split once.

    Returns the cache entry (without data/fingerprint) and, with keep_models, the seeds' state dicts."""
    results = train_seeds(spec, task, seeds, device, on_epoch=on_epoch, test=True, keep_models=keep_models)
    states = [{k: v.detach().cpu() for k, v in r.model.state_dict().items()} for r in results] if keep_models else None
    return final_entry(spec, task, results, metric, tau), states


def final_entry(spec: TrialSpec, task: Task, results: list[SeedResult], metric: str,
                tau: float | None = None) -> dict:
    """The cache entry of one configuration's final runs (trained with test=True).

    tau None: chosen here on the validation logits (decision=logit_adjust; else 0). A refit's runs, whose
    validation rows were training data, get the tau their train-only evaluation chose, and no validation
    metrics."""
    ok = [r for r in results if r.test is not None]
    prior, classes = log_prior(task.train, task.num_classes), task.num_classes
    refit = tau is not None
    if not refit:
        tau = 0.0
        if spec.decision == "logit_adjust" and ok:
            tau = choose_tau([r.logits["val"] for r in ok], task.val.y.numpy(), prior, metric)[0]
    runs = [{"seed": r.seed, "status": r.status, "seconds": round(r.seconds, 2), "history": r.history,
             "val_confusion": None if refit else r.confusion,
             "val": decided_metrics(r.logits["val"], task.val.y, prior, tau, classes)
             if r.test is not None and not refit else None,
             "test": decided(r.logits["test"], task.test.y, prior, tau, classes) if r.test is not None else None}
            for r in results]
    ensemble = None
    if ok:
        val, test = (ensemble_log_probs([r.logits[split] for r in ok]) for split in ("val", "test"))
        ensemble = {"val": None if refit else decided_metrics(val, task.val.y, prior, tau, classes),
                    "test": decided(test, task.test.y, prior, tau, classes),
                    "frontier": {"val": None if refit else frontier(val, task.val.y.numpy(), prior),
                                 "test": frontier(test, task.test.y.numpy(), prior)}}
    entry = {"spec": asdict(spec), "seeds": [r.seed for r in results], "metric": metric,
             "trained_on": "train+validation" if refit else "train",
             "params": parameter_count(spec, task), "decision": {"rule": spec.decision, "tau": tau}, "runs": runs,
             "ensemble": ensemble}
    return json_safe(entry)


class Evaluations:
    """Test-split evaluations of configurations, cached in `path`; `run` (or `submit` to a shared
    search.pool.Pool) trains only what is missing.

    data: what identifies the data (task, split rule, class counts per split); part of every key.
    task: the loaded task (labels and class prior, to measure what the workers trained); source lets
    the worker processes load it themselves.
    refit: train on the training and validation rows (data.Task.refit), as the deployed model is, and
    measure with the tau the train-only evaluation chose on validation (`settle`: the training need not
    wait for it); its own cache file.
    """

    def __init__(self, path: Path, data: dict, seeds: list[int], metric: str, task: Task,
                 source: str | None = None, device: str = defaults.DEVICE, workers: int = 1,
                 write: Callable[[str], None] = lambda line: print(line, file=sys.stderr, flush=True),
                 refit: bool = False):
        self.path, self.data, self.seeds, self.metric, self.task = Path(path), data, list(seeds), metric, task
        self.source, self.device, self.workers, self.write, self.refit = source, device, workers, write, refit
        self.taus: dict[TrialSpec, float] = {}  # refit: each spec's tau, chosen by its train-only evaluation
        self.parked: dict[TrialSpec, tuple[str, list[SeedResult]]] = {}  # refit: trained, waiting for its tau
        self.fingerprint = code_fingerprint()
        self.used: set[str] = set()  # keys this run asked for
        self.new: set[str] = set()  # keys this run had to train
        self.states: dict[str, list[dict]] = {}  # trained weights, for the specs asked with keep_models
        self.pending: set[str] = set()  # keys submitted to a pool and not yet in
        self.seeds_of: dict[TrialSpec, list[int]] = {}  # a spec submitted with other seeds than `seeds`
        self.cache = JsonCache(self.path, {"format": FORMAT}, "evaluations", "evaluation cache")
        self.entries: dict[str, dict] = self.cache.load({})  # an older format is simply retrained

    @property
    def trained(self) -> int:
        return len(self.new)

    @property
    def reused(self) -> int:
        return len(self.used - self.new)

    def key(self, spec: TrialSpec) -> str:
        # A refit's tau is not in its key: it follows from the train-only evaluation of the same seeds and code.
        data = {**self.data, "trained_on": "train+validation"} if self.refit else self.data
        return cache_key(spec, self.seeds_of.get(spec, self.seeds), data, self.metric, self.fingerprint)

    def run(self, specs: list[TrialSpec], keep_models: set[TrialSpec] = frozenset(),
            seeds: list[int] | None = None) -> None:
        """Evaluate every spec not in the cache (and those in keep_models whose weights are wanted)."""
        with Pool(self.task.name, self.source, self.device, self.workers) as pool:
            self.submit(pool, specs, keep_models, seeds=seeds)
            pool.wait()

    def submit(self, pool: Pool, specs: list[TrialSpec], keep_models: set[TrialSpec] = frozenset(),
               cost: Callable[[TrialSpec], float] = lambda spec: 0.0, seeds: list[int] | None = None) -> None:
        """Queue what `run` would train in pool; each is cached as soon as its last seed is in (a refit: and
        its tau settled). cost(spec): an estimate of one seed's seconds (the costliest start first); seeds:
        other seeds than `self.seeds` for these specs (get() then returns those entries)."""
        specs = list(dict.fromkeys(specs))
        seeds = list(seeds or self.seeds)
        for spec in specs:
            if seeds != self.seeds:
                self.seeds_of[spec] = seeds
            else:
                self.seeds_of.pop(spec, None)
        keys = {s: self.key(s) for s in specs}
        self.used |= set(keys.values())
        todo = [s for s, k in keys.items() if (k not in self.entries or s in keep_models) and k not in self.pending]
        if todo:
            self.write(f"evaluating {len(todo)} configuration(s) on seeds {seeds}, {pool.workers} process(es)")
        self.pending |= {keys[s] for s in todo}
        for i, spec in enumerate(todo, start=1):
            pool.train(spec, seeds, f"evaluation {i}/{len(todo)} ({spec.family})", partial(self._done, spec, keys[spec]),
                       test=True, keep_models=spec in keep_models, cost=cost(spec), refit=self.refit)

    def settle(self, taus: dict[TrialSpec, float]) -> None:
        """A refit's taus, chosen by the train-only evaluations on validation; the refits trained meanwhile are
        measured with them now."""
        self.taus.update(taus)
        for spec in [s for s in self.parked if s in self.taus]:
            self._done(spec, *self.parked.pop(spec))

    def _done(self, spec: TrialSpec, key: str, results: list[SeedResult]) -> None:
        if self.refit and spec not in self.taus:
            self.parked[spec] = key, results
            return
        tau = self.taus[spec] if self.refit else None
        self.entries[key] = {**final_entry(spec, self.task, results, self.metric, tau), "data": self.data,
                             "fingerprint": self.fingerprint}
        self.new.add(key)
        if results[0].model is not None:
            self.states[key] = [r.model for r in results]
        self.cache.save(self.entries)
        self.pending.discard(key)
        self.write(f"evaluated {spec.family}: {len(self.pending)} to go")

    def get(self, spec: TrialSpec) -> dict:
        """The cached entry of an evaluated spec; never trains (`run` or `submit` first)."""
        key = self.key(spec)
        if key not in self.entries:
            if self.refit and spec not in self.taus:
                raise ValueError(f"the refit of a {spec.family} needs the tau validation chose for it (settle)")
            raise ValueError(f"the {spec.family} configuration {spec} was not evaluated: run or submit it first")
        self.used.add(key)
        return self.entries[key]


class EvaluationError(ValueError):
    """A missing study, bad argument or data that differs from the study's, reported as one line."""


def open_study(storage: str, name: str) -> optuna.Study:
    """A study to evaluate; looking never creates a database file, and no message shows a password."""
    store = open_storage(storage, heartbeat=None, must_exist=True)
    try:
        return optuna.load_study(study_name=name, storage=store)
    except KeyError:
        names = sorted(optuna.get_all_study_names(store))
        there = f" (studies there: {', '.join(names)})" if names else " (no study there)"
        raise EvaluationError(f"study {name!r} not found in {hide_password(storage)}{there}") from None


def load_checked(task_name: str, data: str | None, attrs: dict) -> tuple[Task, str | dict | None]:
    """The data to retrain on: --data, else the source the study recorded (for a user's file, the options it
    was read with), else the loader's default; refused if its examples per class and split differ from the
    study's (return: the task, its source)."""
    info = attrs.get("data") or {}
    if data is None and info.get("file"):
        source = dict(info["file"])
    elif data is not None and info.get("file"):
        source = {**info["file"], "path": str(Path(data).resolve())}  # the same file moved: same options
    else:
        recorded = info.get("source")
        source = data or (recorded if recorded and Path(recorded).exists() else None)
    task = load(task_name, source)
    if attrs.get("counts") is not None and task.counts() != attrs["counts"]:
        raise EvaluationError(f"--data {source}: examples per class and split differ from those the study "
                              "recorded; pass the data the study was run on")
    return task, source


def final_metrics(models: list[torch.nn.Module], task: Task, tau: float = 0.0) -> dict:
    """Test-split metrics of trained models under the decision rule (tau): each seed, their mean and std,
    and the ensemble (averaged probabilities), for a model card.

    "confusion" is summed over the seeds (rows: true class; the card's known confusions come from
    it), "ensemble_confusion" is the ensemble's.
    """
    prior, y = log_prior(task.train, task.num_classes), task.test.y.numpy()
    test = DeviceSplit(task.test, next(models[0].parameters()).device)
    logits = [predict(model, test) for model in models]
    runs = [scores(y, decide(lg, prior, tau), task.num_classes) for lg in logits]
    ensemble = scores(y, decide(ensemble_log_probs(logits), prior, tau), task.num_classes)
    confusion = np.sum([run["confusion"] for run in runs], axis=0)
    return {
        "split": "test", "examples": len(y), "tau": tau,
        "seeds": {k: [run[k] for run in runs] for k in METRICS},
        "mean": {k: float(np.mean([run[k] for run in runs])) for k in METRICS},
        "std": {k: float(np.std([run[k] for run in runs])) for k in METRICS},
        "ensemble": {k: ensemble[k] for k in METRICS},
        "per_class_recall": per_class(confusion)["recall"],
        "confusion": confusion.tolist(),
        "ensemble_confusion": ensemble["confusion"],
    }


def baseline_entry(result, task: Task, metric: str) -> dict:
    """A scikit-learn baseline's log-probabilities as metrics: plain, and under a tau chosen on validation; the same
    for its refit on train + validation (test_refit..., with that tau) where it was refitted."""
    prior = log_prior(task.train, task.num_classes)
    val, test = torch.as_tensor(np.asarray(result.val_logprob)).float(), torch.as_tensor(np.asarray(result.test_logprob)).float()
    tau = choose_tau([val], task.val.y.numpy(), prior, metric)[0]
    refit = {}
    if result.refit_test_logprob is not None:
        logprob, y = torch.as_tensor(np.asarray(result.refit_test_logprob)).float(), task.test.y
        refit = {"test_refit": decided_metrics(logprob, y, prior, 0.0, task.num_classes),
                 "test_refit_adjusted": decided_metrics(logprob, y, prior, tau, task.num_classes),
                 "frontier_refit": frontier(logprob, y.numpy(), prior)}
    return json_safe({
        "name": result.name, "description": result.description, "chosen": result.chosen,
        "seconds": round(result.seconds, 2), "tau": tau,
        "val": decided_metrics(val, task.val.y, prior, 0.0, task.num_classes),
        "test": decided_metrics(test, task.test.y, prior, 0.0, task.num_classes),
        "val_adjusted": decided_metrics(val, task.val.y, prior, tau, task.num_classes),
        "test_adjusted": decided_metrics(test, task.test.y, prior, tau, task.num_classes),
        "frontier": {"val": frontier(val, task.val.y.numpy(), prior), "test": frontier(test, task.test.y.numpy(), prior)},
        **refit,
    })
