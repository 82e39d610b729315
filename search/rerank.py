"""Re-ranking: the study's top trials retrained on fresh seeds, on validation only, before one is recommended.

A study's best value is the largest of many noisy means (each over a few seeds), so it flatters the trial
that reached it: the winner's curse. The report therefore retrains its top configurations on the
re-ranking seeds (50, 51, ...: neither a search seed nor a final seed), measures them on the validation
split only (tau chosen on those seeds' validation logits, as the search does), and recommends the one
with the best mean over all its seeds, search and re-ranking together (its "choice value"). The final
seeds (100, 101, ...), which choose nothing, then measure what is left of the curse: choice value minus
the same configuration's validation value on the final seeds.

Cache file (reranking.json), one entry per (spec, seeds, data, metric, code fingerprint), keyed as in
search/evaluate.py:
    {"format": 1, "entries": {"<key>": {"spec", "seeds", "metric", "tau", "values", "statuses",
                                         "data", "fingerprint"}}}
values: each re-ranking seed's validation metric under the decision rule (null for a diverged seed).
"""
from __future__ import annotations

import json
import math
import statistics
import sys
from dataclasses import asdict
from functools import partial
from pathlib import Path
from typing import Callable

import optuna

from data import Task, write_text
from . import evaluate
from .evaluate import cache_key, code_fingerprint, spec_of
from .objective import validation_values
from .pool import Pool
from .train import SeedResult, TrialSpec, log_prior, train_seeds
from .util import json_safe

FORMAT = 1


def rerank_spec(spec: TrialSpec, task: Task, seeds: list[int], metric: str, device: str = "cpu") -> dict:
    """Train spec on the re-ranking seeds; each seed's validation metric under the decision rule (no test split)."""
    return summarise(spec, task, train_seeds(spec, task, seeds, device), metric)


def summarise(spec: TrialSpec, task: Task, results: list[SeedResult], metric: str) -> dict:
    """The cache entry of one configuration's re-ranking runs: tau chosen on their validation logits, as the
    search chooses it, and each seed's validation metric there (None for a diverged seed)."""
    ok = [r for r in results if not r.diverged]
    tau, values = validation_values(spec, ok, task, log_prior(task.train, task.num_classes), metric) if ok else (0.0, [])
    by_seed = dict(zip([r.seed for r in ok], values))
    return json_safe({"spec": asdict(spec), "seeds": [r.seed for r in results], "metric": metric, "tau": tau,
                      "values": [by_seed.get(r.seed) for r in results], "statuses": [r.status for r in results]})


def search_values(trial: optuna.trial.FrozenTrial, metric: str) -> list[float]:
    """The trial's per-seed validation values from the search (its mean, once per seed, for a bare trial)."""
    values = (trial.user_attrs.get("seed_metrics") or {}).get(metric)
    if not values:
        return [trial.value] * len(trial.user_attrs.get("seeds") or [0])
    return [v for v in values if v is not None and math.isfinite(v)]


def choice_value(trial: optuna.trial.FrozenTrial, entry: dict | None, metric: str) -> float:
    """The mean validation value over the search seeds and the re-ranking seeds (diverged seeds left out)."""
    rerun = [v for v in (entry or {}).get("values", []) if v is not None and math.isfinite(v)]
    values = search_values(trial, metric) + rerun
    return statistics.fmean(values) if values else -math.inf


def recommend(leaders: list[optuna.trial.FrozenTrial], entries: dict[int, dict | None], metric: str
              ) -> optuna.trial.FrozenTrial:
    """The leader with the best choice value (ties: the better search value, then the lower trial number).

    entries: trial number -> its re-ranking entry (None: not re-ranked, the search seeds alone)."""
    return max(leaders, key=lambda t: (choice_value(t, entries.get(t.number), metric), t.value, -t.number))


class Reranking:
    """Re-ranking runs of configurations, cached in `path`; `run` (or `submit` to a shared search.pool.Pool)
    trains only what is missing, one (configuration, seed) per job in `workers` processes.

    data: what identifies the data (as for search.evaluate.Evaluations); task: the loaded task (validation
    labels and class prior); source lets the worker processes load it themselves."""

    def __init__(self, path: Path, data: dict, seeds: list[int], metric: str, task: Task,
                 source: str | None = None, device: str = "cpu", workers: int = 1,
                 write: Callable[[str], None] = lambda line: print(line, file=sys.stderr, flush=True)):
        self.path, self.data, self.seeds, self.metric, self.task = Path(path), data, list(seeds), metric, task
        self.source, self.device, self.workers, self.write = source, device, workers, write
        self.fingerprint = code_fingerprint([*evaluate.TRAINING_CODE, "search/rerank.py", "search/objective.py"])
        self.trained = 0
        self.pending = 0  # configurations submitted and not yet in
        self.entries: dict[str, dict] = {}
        if self.path.exists():
            try:
                saved = json.loads(self.path.read_text())
            except (OSError, json.JSONDecodeError) as exc:
                raise ValueError(f"{self.path}: unreadable re-ranking cache ({exc}); delete it to retrain") from None
            if isinstance(saved, dict) and saved.get("format") == FORMAT:
                self.entries = saved["entries"]

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
            self.write(f"re-ranking {len(todo)} configuration(s) on seeds {self.seeds} (validation only), "
                       f"{pool.workers} process(es)")
        self.pending += len(todo)
        for i, spec in enumerate(todo, start=1):
            pool.train(spec, self.seeds, f"re-ranking {i}/{len(todo)} ({spec.family})", partial(self._done, spec),
                       cost=cost(spec), urgent=True)

    def _done(self, spec: TrialSpec, results: list[SeedResult]) -> None:
        self.entries[self.key(spec)] = {**summarise(spec, self.task, results, self.metric), "data": self.data,
                                        "fingerprint": self.fingerprint}
        self.trained += 1
        self.pending -= 1
        write_text(self.path, json.dumps({"format": FORMAT, "entries": self.entries}, sort_keys=True, indent=1)
                   + "\n")  # kept after each: an interrupted report resumes
        self.write(f"re-ranked {spec.family}: {self.pending} to go")

    def get(self, spec: TrialSpec) -> dict | None:
        return self.entries.get(self.key(spec)) if self.seeds else None

    def choose(self, leaders: list[optuna.trial.FrozenTrial]) -> tuple[optuna.trial.FrozenTrial, dict[int, dict | None]]:
        """The recommended leader and each leader's entry (by trial number), re-ranking what is missing."""
        self.run([spec_of(t) for t in leaders])
        entries = {t.number: self.get(spec_of(t)) for t in leaders}
        return recommend(leaders, entries, self.metric), entries
