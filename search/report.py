"""python -m search.report har: a Markdown report of a study, with PNG figures beside it, readable on GitHub.

The study chose configurations on validation metrics only. The report picks the best trial of
each family and the top trials overall by validation value, retrains them on more seeds and
evaluates them on the test split (search/evaluate.py, cached in evaluations.json), then writes
<out>/<study>/report.md. The same storage and cache give the same text.
"""
from __future__ import annotations

import argparse
import math
import re
import shlex
import statistics
import sys
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import optuna
import sqlalchemy
import torch

from data import LOADERS, DataError, load_task
from . import figures
from .evaluate import Evaluations, ranked, search_value, select, spec_of, write_text
from .train import METRICS
from models import RECURRENT
from .study import DEFAULT_STORAGE, StudyError, open_storage
from .train import IMBALANCE, TrialSpec

# Rules for "issues spotted"; each is printed with the report so a reader can judge it.
EXPLODING = 10.0  # a batch gradient norm above this many times the trial's median epoch-mean norm
FLAT = 0.02  # final train loss within 2 % of the first epoch's: no learning
HIGH_STD = 0.05  # standard deviation of the study metric over a trial's seeds
PRUNED_SHARE, PRUNED_MIN = 0.5, 3  # a family with at least half of its trials pruned, and at least 3
TOP_PAIRS = 3  # most confused pairs listed per confusion matrix
RARE = 3  # classes with the fewest training examples, followed through the imbalance strategies
LABEL = {"accuracy": "accuracy", "balanced_accuracy": "balanced accuracy", "macro_f1": "macro-F1"}
State = optuna.trial.TrialState


class ReportError(Exception):
    """A missing study, bad argument or mismatched data, reported as one line."""


@dataclass
class ReportConfig:
    task: str
    storage: str = DEFAULT_STORAGE
    study_name: str | None = None
    data: str | None = None
    seeds: int = 5
    top: int = 3
    out: str = "reports"
    device: str = "auto"

    def __post_init__(self):
        if self.task not in LOADERS:
            raise ReportError(f"task must be one of {sorted(LOADERS)}, got {self.task!r}")
        self.study_name = self.study_name or self.task
        for name in ("seeds", "top"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ReportError(f"--{name} must be an int >= 1, got {value!r}")

    def command(self) -> str:
        args = ["python -m search.report", self.task, "--storage", hide_password(self.storage),
                "--study-name", self.study_name, "--seeds", str(self.seeds), "--top", str(self.top), "--out", self.out]
        if self.data:
            args += ["--data", self.data]
        return " ".join(args[:1] + [shlex.quote(a) for a in args[1:]])


def hide_password(url: str) -> str:
    try:
        return sqlalchemy.engine.make_url(url).render_as_string(hide_password=True)
    except sqlalchemy.exc.ArgumentError:
        return url


def open_study(storage: str, name: str) -> optuna.Study:
    shown = hide_password(storage)
    try:
        url = sqlalchemy.engine.make_url(storage)
    except sqlalchemy.exc.ArgumentError:
        url = None  # open_storage names the problem
    if url is not None and url.drivername.startswith("sqlite") and url.database not in (None, "", ":memory:") \
            and not Path(url.database).exists():  # do not create an empty database file by looking
        raise ReportError(f"study {name!r} not found in {shown} (no such database file)")
    store = open_storage(storage)
    try:
        return optuna.load_study(study_name=name, storage=store)
    except KeyError:
        names = sorted(optuna.get_all_study_names(store))
        there = f" (studies there: {', '.join(names)})" if names else " (no study there)"
        raise ReportError(f"study {name!r} not found in {shown}{there}") from None


# Small formatting helpers: every number goes through them, so the text is stable.

def mean_std(values: list) -> tuple[float, float] | None:
    values = [v for v in values if v is not None and math.isfinite(v)]
    if not values:
        return None
    return statistics.fmean(values), statistics.pstdev(values) if len(values) > 1 else 0.0


def fmt(values: list, digits: int = 3) -> str:
    """mean ± std over the finite values (a diverged seed has none); the count when some are missing."""
    finite = [v for v in values if v is not None and math.isfinite(v)]
    if not finite:
        return "n/a"
    mean, std = mean_std(finite)
    text = f"{mean:.{digits}f} ± {std:.{digits}f}" if len(finite) > 1 else f"{mean:.{digits}f}"
    return text if len(finite) == len(values) else f"{text} ({len(finite)} of {len(values)} seeds)"


def count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def duration(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h {rest // 60:02d}m {rest % 60:02d}s" if hours else f"{rest // 60}m {rest % 60:02d}s"


def seed_range(seeds: list[int]) -> str:
    return f"{seeds[0]}–{seeds[-1]}" if len(seeds) > 1 and seeds == list(range(seeds[0], seeds[-1] + 1)) \
        else ", ".join(map(str, seeds))


def describe(spec: TrialSpec) -> str:
    """The configuration in one short line (only the fields that matter for its family)."""
    parts = []
    if spec.family != "linear":
        parts += [f"layers={spec.layers}", f"width={spec.width}", f"dropout={spec.dropout:.2g}"]
    if spec.family in RECURRENT and spec.bidirectional:
        parts.append("bidirectional")
    if spec.family in RECURRENT and spec.frontend:
        parts.append(f"frontend={spec.frontend}")
    if spec.family == "conv1d" or (spec.family in RECURRENT and spec.frontend):
        parts += [f"kernel={spec.kernel_size}", f"pool={spec.pool}"]
        parts += ["batchnorm"] if spec.norm else []
    parts += [f"lr={spec.lr:.1e}", f"batch={spec.batch_size}", f"epochs={spec.epochs}", f"clip={spec.clipnorm:g}",
              f"wd={spec.weight_decay:.0e}", spec.schedule, f"imbalance={spec.imbalance}"]
    return " ".join(parts)


def table(header: list[str], rows: list[list]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows] + [""]


def image(name: str, alt: str, caption: str) -> list[str]:
    return [f"![{alt}]({name})", "", f"*{caption}*", ""]


def test_values(entry: dict, key: str) -> list:
    return [run["test"][key] if run["test"] else None for run in entry["runs"]]


def val_values(entry: dict, metric: str) -> list:
    return [(run["history"].get(f"val_{metric}") or [None])[-1] for run in entry["runs"]]


def per_class_mean(entry: dict, key: str, num_classes: int) -> list[float]:
    """The seeds' mean of a per-class test quantity (recall, f1); seeds that diverged are left out."""
    rows = [run["test"][key] for run in entry["runs"] if run["test"]]
    return [statistics.fmean(r[k] for r in rows) if rows else math.nan for k in range(num_classes)]


def median_by(points: list[tuple], key=lambda p: p[1]) -> dict:
    """{x: (median of trial values, number of trials)} over (family, x, value, std) points."""
    groups: dict = {}
    for p in points:
        groups.setdefault(key(p), []).append(p[2])
    return {x: (statistics.median(v), len(v)) for x, v in sorted(groups.items())}


@dataclass
class Context:
    config: ReportConfig
    study: optuna.Study
    out: Path
    evaluations: Evaluations
    trials: list = field(default_factory=list)  # every trial, by number
    complete: list = field(default_factory=list)  # COMPLETE trials, best validation value first
    families: dict = field(default_factory=dict)  # family -> its best trial, best family first
    leaders: list = field(default_factory=list)  # the top distinct configurations

    @property
    def attrs(self) -> dict:
        return self.study.user_attrs

    @property
    def metric(self) -> str:
        return self.attrs.get("metric") or self.complete[0].user_attrs.get("metric", "accuracy")

    @property
    def class_names(self) -> list[str]:
        return self.attrs.get("class_names") or [str(i) for i in range(len(self.complete[0].user_attrs["confusion"]))]

    @property
    def seeds(self) -> list[int]:
        return self.evaluations.seeds

    def entry(self, trial) -> dict:
        return self.evaluations.get(spec_of(trial), label=f"trial #{trial.number} ({spec_of(trial).family})")

    def points(self, x, include=lambda spec: True) -> list[tuple[str, float, float, float]]:
        """Complete trials as (family, x(spec), value, std over the trial's seeds), by trial number."""
        out = []
        for t in sorted(self.complete, key=lambda t: t.number):
            spec = spec_of(t)
            if include(spec):
                seeds = [v for v in t.user_attrs.get("seed_metrics", {}).get(self.metric, []) if v is not None]
                out.append((spec.family, x(spec), t.value, statistics.pstdev(seeds) if len(seeds) > 1 else 0.0))
        return out


# Sections: each returns its Markdown lines.

def header(c: Context) -> list[str]:
    a, config = c.attrs, c.config
    states = [t.state for t in c.trials]
    counted = [f"{states.count(s)} {name}" for s, name in ((State.COMPLETE, "complete"), (State.PRUNED, "pruned"),
               (State.FAIL, "failed"), (State.RUNNING, "running"), (State.WAITING, "waiting")) if states.count(s)]
    finished = [t for t in c.trials if t.datetime_start and t.datetime_complete]
    busy = sum((t.datetime_complete - t.datetime_start).total_seconds() for t in finished)
    span = (max(t.datetime_complete for t in finished) - min(t.datetime_start for t in finished)).total_seconds() \
        if finished else 0.0
    lines = [
        f"# Study report: `{c.study.study_name}` (task {config.task})", "",
        "Written by `python -m search.report` from the study's storage and the final evaluations cached in "
        "`evaluations.json` beside this file; regenerating it from the same storage gives the same text.", "",
        "## Search", "",
        f"- Task: **{config.task}**, {len(c.class_names)} classes. The search maximised the validation "
        f"**{LABEL.get(c.metric, c.metric)}**, each trial's value being the mean over its "
        f"{a.get('seeds', '?')} seeds.",
        f"- Storage: `{hide_password(config.storage)}`, study `{c.study.study_name}`.",
        f"- Trials: {len(c.trials)} ({', '.join(counted)}).",
        f"- Search time: {duration(busy)} summed over the durations of {len(finished)} finished trials; "
        f"{duration(span)} from the first trial's start to the last trial's end.",
        f"- Budget strategy {a.get('strategy', '?')}, pruner {a.get('pruner', '?')}, sampler seed "
        f"{a.get('sampler_seed')}; fixed parameters {a.get('fixed') or 'none'}; grid {a.get('grid') or 'none'}.",
        f"- Versions used to write this report: torch {torch.__version__}, optuna {optuna.__version__}.", "",
    ]
    data = a.get("data", {})
    lines += ["## Data", ""]
    if data.get("source"):
        lines.append(f"- Source: `{data['source']}`.")
    if data.get("split"):
        lines.append(f"- Splits: {data['split']}.")
    for split, subjects in (data.get("subjects") or {}).items():
        lines.append(f"- {split} subjects: {', '.join(map(str, subjects))}.")
    if data.get("encoding"):
        lines.append(f"- Encoding: {data['encoding']}.")
    lines.append("")
    counts = a.get("counts")
    if counts:
        rows = [[name] + [counts[s][k] for s in ("train", "val", "test")] for k, name in enumerate(c.class_names)]
        rows.append(["**total**"] + [f"**{sum(counts[s])}**" for s in ("train", "val", "test")])
        lines += table(["class", "train", "val", "test"], rows)
        lines += ["*Examples per class and split, as recorded in the study when it ran (study attribute `counts`).*", ""]
    lines += ["## Reproduce", "", "```bash"] + list(a.get("commands", [])) + [config.command(), "```", ""]
    return lines


def search_cell(trial: optuna.trial.FrozenTrial) -> str:
    """The validation value the search saw; † marks a pruned trial (its last reported value)."""
    return f"{search_value(trial):.3f}" + ("" if trial.state == optuna.trial.TrialState.COMPLETE else " †")


def leaderboard(c: Context) -> list[str]:
    m = c.metric
    lines = [
        "## Final evaluation", "",
        f"Configurations are chosen by validation value only (`trial.value`, the mean validation {LABEL.get(m, m)} "
        f"over the search seeds, COMPLETE trials): the best trial of each family and the {c.config.top} best "
        f"distinct configurations overall. Each is retrained from scratch on seeds {seed_range(c.seeds)} and "
        "evaluated once on the test split, which the search never saw. Validation and test columns are "
        f"mean ± std over those {len(c.seeds)} seeds (after the last epoch); training time is seconds per seed.", "",
    ]
    header = ["family", "trial", "configuration", "parameters", f"search val {LABEL.get(m, m)}"] + \
        [f"val {LABEL[k]}" for k in METRICS] + [f"test {LABEL[k]}" for k in METRICS] + ["train s/seed"]

    def row(trial) -> list:
        entry = c.entry(trial)
        return ([spec_of(trial).family, f"#{trial.number}", f"`{describe(spec_of(trial))}`", f"{entry['params']:,}",
                 search_cell(trial)]
                + [fmt(val_values(entry, k)) for k in METRICS]
                + [fmt(test_values(entry, k)) for k in METRICS]
                + [f"{statistics.fmean(r['seconds'] for r in entry['runs']):.1f}"])

    lines += ["### Best configuration of each family", ""]
    lines += table(header, [row(t) for t in c.families.values()])
    lines += [f"*One row per family searched ({len(c.families)}); {len(c.complete)} complete trials considered. "
              "† no trial of this family completed (all pruned): its row is the pruned trial with the best last "
              "reported validation value, retrained here with its full epoch budget. "
              "Parameters: trainable parameter count of the model.*", ""]
    lines += ["### Top configurations overall", ""]
    lines += table(header, [row(t) for t in c.leaders])
    lines += [f"*The {len(c.leaders)} best distinct configurations by search value.*", ""]
    return lines


def learning_curves(c: Context) -> list[str]:
    m = c.metric
    lines = ["## Learning curves", ""]
    quantities = [("train_loss", "training loss"), ("val_loss", "validation loss"),
                  (f"val_{m}", f"validation {LABEL.get(m, m)}")]
    chosen = ", ".join(f"#{t.number} {f}" for f, t in c.families.items())
    for key, label in quantities:
        series = {f"{family} (#{t.number})": [run["history"].get(key, []) for run in c.entry(t)["runs"]]
                  for family, t in c.families.items()}
        name = figures.curves(c.out / f"curves_{key}.png", series, label, f"{label} per epoch")
        how = "the mean over the epoch's training batches" if key == "train_loss" else "on the validation split after the epoch"
        lines += image(name, label, f"{label.capitalize()} per epoch ({how}) of the best trial of each family "
                       f"({chosen}), retrained on seeds {seed_range(c.seeds)}: line = mean over seeds, band = "
                       "min..max over seeds.")
    return lines


def confusion_matrices(c: Context) -> list[str]:
    lines = ["## Confusion matrices (test)", ""]
    names = c.class_names
    for family, t in c.families.items():
        matrices = [np.array(run["test"]["confusion"]) for run in c.entry(t)["runs"] if run["test"]]
        lines += [f"### {family} (trial #{t.number})", ""]
        if not matrices:
            lines += [f"Every evaluation seed of trial #{t.number} diverged: no test predictions.", ""]
            continue
        total = sum(matrices)
        rates = total / np.clip(total.sum(1, keepdims=True), 1, None)
        name = figures.confusion(c.out / f"confusion_{family}.png", rates, names, f"{family} (#{t.number}), test")
        lines += image(name, f"confusion {family}", f"Test-split confusion matrix of trial #{t.number}, summed over "
                       f"seeds {seed_range([r['seed'] for r in c.entry(t)['runs'] if r['test']])} and normalised "
                       "per true class (rows sum to 1).")
        pairs = sorted(((rates[i, j], total[i, j], i, j) for i in range(len(names)) for j in range(len(names))
                        if i != j and total[i, j] > 0), key=lambda p: (-p[0], -p[1], p[2], p[3]))[:TOP_PAIRS]
        if pairs:
            listed = "; ".join(f"{names[i]} → {names[j]} {rate:.1%} ({count} examples)" for rate, count, i, j in pairs)
            lines += [f"Most confused (true → predicted, share of the true class): {listed}.", ""]
        else:
            lines += ["No test example was misclassified.", ""]
    return lines


def effects(c: Context) -> list[str]:
    m = LABEL.get(c.metric, c.metric)
    hidden = lambda spec: spec.family != "linear"  # noqa: E731  (linear has no hidden layers)
    lines = ["## Effects seen across trials", "",
             f"Each point is one COMPLETE trial: its search value (mean validation {m} over its seeds) with an error "
             "bar of ± the std over those seeds (`seed_metrics`). Other parameters vary between trials, so these are "
             "associations, not controlled comparisons.", ""]

    # Width, per family.
    points = c.points(lambda s: s.width, hidden)
    if points:
        name = figures.effect(c.out / "effect_width.png", points, "hidden size / channels (width)", m,
                              f"{m} against width", scale="log2")
        lines += image(name, "width", f"Validation {m} against width; {count(len(points), 'complete trial')} "
                       "(linear excluded).")
        answers = []
        for family in sorted({p[0] for p in points}):
            by = median_by([p for p in points if p[0] == family])
            if len(by) == 1:
                (width, (med, n)), = by.items()
                answers.append(f"{family}: only width {width:g} tried ({count(n, 'trial')}, median {med:.3f})")
            else:
                width, (med, n) = max(by.items(), key=lambda kv: (kv[1][0], -kv[0]))
                answers.append(f"{family}: best width {width:g} (median {med:.3f} over its {count(n, 'trial')} at that width; "
                               f"{len(by)} widths tried)")
        lines += [f"Best width per family by the median of trial values: {'; '.join(answers)}. "
                  f"Based on {count(len(points), 'trial')}.", ""]
    else:
        lines += ["Only linear trials completed: they have no hidden layers, so width and depth do not apply.", ""]

    # Depth.
    points = c.points(lambda s: s.layers, hidden)
    if points:
        name = figures.effect(c.out / "effect_layers.png", points, "layers", m, f"{m} against depth")
        lines += image(name, "layers", f"Validation {m} against the number of stacked layers; "
                       f"{count(len(points), 'complete trial')} (linear excluded).")
        one = [p[2] for p in points if p[1] == 1]
        stacked = [p[2] for p in points if p[1] > 1]
        by = "; ".join(f"{v}: {med:.3f} ({n})" for v, (med, n) in median_by(points).items())
        text = f"Median of trial values by layers (trials): {by}."
        if one and stacked:
            diff = statistics.median(stacked) - statistics.median(one)
            text += (f" Stacked (2+ layers): median {statistics.median(stacked):.3f} over {count(len(stacked), 'trial')} vs "
                     f"{statistics.median(one):.3f} over {count(len(one), 'single-layer trial')}: stacking "
                     f"{'helped' if diff > 0 else 'did not help'} ({diff:+.3f}).")
        else:
            text += f" No {'stacked' if one else 'single-layer'} trial completed, so stacking cannot be judged."
        lines += [f"{text} Based on {count(len(points), 'trial')}.", ""]

    # Batch size and clipnorm, over all families.
    for key, x, label in (("batch_size", lambda s: s.batch_size, "batch size"),
                          ("clipnorm", lambda s: s.clipnorm, "clipnorm (0 = no clipping)")):
        points = c.points(x)
        name = figures.effect(c.out / f"effect_{key}.png", points, label, m, f"{m} against {key}")
        lines += image(name, key, f"Validation {m} against {label}; {count(len(points), 'complete trial')}, all families.")
        by = median_by(points)
        medians = "; ".join(f"{v:g}: {med:.3f} ({n})" for v, (med, n) in by.items())
        best, (med, n) = max(by.items(), key=lambda kv: (kv[1][0], -kv[0]))
        text = f"Median of trial values by {key} (trials): {medians}. Highest median at {best:g}."
        if key == "clipnorm":
            clipped = [p[2] for p in points if p[1] > 0]
            free = [p[2] for p in points if p[1] == 0]
            if clipped and free:
                text += (f" Clipped: median {statistics.median(clipped):.3f} over {count(len(clipped), 'trial')}; "
                         f"unclipped: {statistics.median(free):.3f} over {len(free)}.")
        if len(by) == 1:
            text += " Only one value was tried, so no effect can be measured."
        lines += [f"{text} Based on {count(len(points), 'trial')}.", ""]
    return lines


def imbalance(c: Context) -> list[str]:
    best = c.complete[0]
    spec = spec_of(best)
    names, k = c.class_names, len(c.class_names)
    train_counts = (c.attrs.get("counts") or {}).get("train") or [0] * k
    entries = {value: c.evaluations.get(replace(spec, imbalance=value), label=f"trial #{best.number} imbalance={value}")
               for value in IMBALANCE}
    lines = ["## Class imbalance", "",
             f"The best trial (#{best.number}, `{describe(spec)}`) retrained with each imbalance strategy, nothing else "
             f"changed, on seeds {seed_range(c.seeds)}; test-split metrics, mean ± std over seeds. The search itself "
             f"chose imbalance={spec.imbalance} for this trial.", ""]
    base = mean_std(test_values(entries["none"], "balanced_accuracy"))
    rows = []
    for value, entry in entries.items():
        now = mean_std(test_values(entry, "balanced_accuracy"))
        change = f"{now[0] - base[0]:+.3f}" if now and base else "n/a"
        rows.append([value, fmt(val_values(entry, "balanced_accuracy"))] +
                    [fmt(test_values(entry, key)) for key in METRICS] + [change])
    lines += table(["imbalance", "val balanced accuracy"] + [f"test {LABEL[key]}" for key in METRICS]
                   + ["test balanced accuracy change vs none"], rows)
    recall = {value: per_class_mean(entry, "recall", k) for value, entry in entries.items()}
    f1 = {value: per_class_mean(entry, "f1", k) for value, entry in entries.items()}
    order = sorted(range(k), key=lambda i: (train_counts[i], names[i]))
    rows = [[names[i], train_counts[i]] + [f"{recall[v][i]:.3f}" for v in IMBALANCE] + [f"{f1[v][i]:.3f}" for v in IMBALANCE]
            for i in order]
    lines += table(["class", "train examples"] + [f"recall {v}" for v in IMBALANCE] + [f"F1 {v}" for v in IMBALANCE], rows)
    lines += [f"*Per-class test recall and F1, mean over seeds {seed_range(c.seeds)}, classes from fewest to most "
              "training examples.*", ""]
    name = figures.grouped_bars(c.out / "imbalance_per_class.png", [names[i] for i in order],
                                {"test recall": {v: [recall[v][i] for i in order] for v in IMBALANCE},
                                 "test F1": {v: [f1[v][i] for i in order] for v in IMBALANCE}},
                                f"trial #{best.number} by imbalance strategy")
    lines += image(name, "imbalance", f"Per-class test recall and F1 of trial #{best.number}'s configuration under "
                   f"each imbalance strategy (mean over seeds {seed_range(c.seeds)}), classes from fewest to most "
                   "training examples.")
    rare, largest = order[:RARE], order[-1]
    recalls = lambda i: ", ".join(f"{v} {recall[v][i]:.3f}" for v in IMBALANCE)  # noqa: E731
    rare_recall = {v: statistics.fmean(recall[v][i] for i in rare) for v in IMBALANCE}
    text = (f"Test recall of the {len(rare)} classes with the fewest training examples: "
            + "; ".join(f"{names[i]} ({train_counts[i]}): {recalls(i)}" for i in rare)
            + f" (their mean: {', '.join(f'{v} {rare_recall[v]:.3f}' for v in IMBALANCE)}). The largest class, "
            f"{names[largest]} ({train_counts[largest]}): {recalls(largest)}.")
    balanced = {v: mean_std(test_values(entries[v], "balanced_accuracy")) for v in IMBALANCE}
    if all(balanced.values()):
        best_value = max(IMBALANCE, key=lambda v: (balanced[v][0], -IMBALANCE.index(v)))
        if best_value == "none":
            text += f" Neither correction raised balanced accuracy above {balanced['none'][0]:.3f} (none)."
        else:
            text += (f" Balanced accuracy is highest with {best_value}: {balanced[best_value][0]:.3f} vs "
                     f"{balanced['none'][0]:.3f} without correction ({balanced[best_value][0] - balanced['none'][0]:+.3f}).")
    lines += [text, ""]
    return lines


def robustness(c: Context) -> list[str]:
    m = c.metric
    lines = ["## Seed robustness", "",
             f"The top {len(c.leaders)} configurations by search value, each retrained on seeds {seed_range(c.seeds)}: "
             f"{LABEL.get(m, m)} per seed on the validation and test splits.", ""]
    per_seed = {t.number: {"val": val_values(c.entry(t), m), "test": test_values(c.entry(t), m)} for t in c.leaders}
    rows = []
    for t in c.leaders:
        values = per_seed[t.number]
        spread = [v for v in values["test"] if v is not None]
        rows.append([f"#{t.number}", spec_of(t).family] +
                    [f"{_num(v)} / {_num(w)}" for v, w in zip(values["val"], values["test"])] +
                    [fmt(values["val"]), fmt(values["test"]), f"{max(spread) - min(spread):.3f}" if spread else "n/a"])
    lines += table(["trial", "family"] + [f"seed {s} val / test" for s in c.seeds] +
                   ["val mean ± std", "test mean ± std", "test range (max − min)"], rows)
    flips = []
    for i, a in enumerate(c.leaders):
        for b in c.leaders[i + 1:]:
            for split in ("val", "test"):
                va, vb = per_seed[a.number][split], per_seed[b.number][split]
                ma, mb = mean_std(va), mean_std(vb)
                if not ma or not mb or ma[0] == mb[0]:
                    continue
                ahead = ma[0] > mb[0]
                seeds = [s for s, x, y in zip(c.seeds, va, vb) if x is not None and y is not None and x != y
                         and (x > y) != ahead]
                if seeds:
                    first, second = (a, b) if ahead else (b, a)
                    flips.append(f"- {split}: #{first.number} is ahead of #{second.number} on the mean "
                                 f"({max(ma[0], mb[0]):.3f} vs {min(ma[0], mb[0]):.3f}) but seed(s) "
                                 f"{', '.join(map(str, seeds))} rank #{second.number} first.")
    if len(c.leaders) < 2:
        lines += ["Only one configuration completed: no ranking to compare.", ""]
    elif flips:
        lines += ["Rankings that flip between seeds (per-seed comparison against the mean over seeds):", ""] + flips + [""]
    else:
        lines += [f"No ranking flips: every seed orders these {len(c.leaders)} configurations as their means do, on "
                  "both splits.", ""]
    return lines


def _num(value) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def mean_curve(curves: list[dict], key: str) -> list[float]:
    """The seeds' mean per epoch, over the epochs every seed reached; [] if a value is missing."""
    runs = [cur.get(key) or [] for cur in curves]
    epochs = min((len(r) for r in runs), default=0)
    if not runs or any(v is None for r in runs for v in r[:epochs]):
        return []
    return [statistics.fmean(r[e] for r in runs) for e in range(epochs)]


def find_issues(trials: list, metric: str) -> list[tuple[str, str, list[str]]]:
    """(title, rule, ["#trial (detail)", ...]) for each rule over the trials' recorded curves."""
    diverged, exploding, overfit, flat, noisy = [], [], [], [], []
    for t in trials:
        a = t.user_attrs
        curves = a.get("curves") or []
        if t.state == State.FAIL or str(a.get("ended", "")).startswith("diverged"):
            diverged.append(f"#{t.number} ({a.get('ended') or t.state.name.lower()})")
        means = [v for cur in curves for v in cur.get("grad_norm", []) if v is not None]
        peaks = [v for cur in curves for v in cur.get("grad_norm_max", []) if v is not None]
        if means and peaks and statistics.median(means) > 0 and max(peaks) > EXPLODING * statistics.median(means):
            exploding.append(f"#{t.number} (×{max(peaks) / statistics.median(means):.0f})")
        train, val = mean_curve(curves, "train_loss"), mean_curve(curves, "val_loss")
        if len(val) >= 3 and len(train) >= 3 and val[-3] < val[-2] < val[-1] and train[-1] < train[-3]:
            overfit.append(f"#{t.number} (val loss {val[-3]:.3f} → {val[-1]:.3f})")
        if len(train) >= 2 and abs(train[-1] - train[0]) <= FLAT * abs(train[0]):
            flat.append(f"#{t.number} ({train[0]:.3f} → {train[-1]:.3f})")
        seeds = [v for v in (a.get("seed_metrics") or {}).get(metric, []) if v is not None]
        if len(seeds) > 1 and statistics.pstdev(seeds) > HIGH_STD:
            noisy.append(f"#{t.number} (std {statistics.pstdev(seeds):.3f})")
    families: dict[str, list] = {}
    for t in trials:
        family = (t.user_attrs.get("spec") or t.params).get("family", "?")
        families.setdefault(family, []).append(t)
    pruned = []
    for family, members in sorted(families.items()):
        numbers = [t.number for t in members if t.state == State.PRUNED]
        if len(numbers) >= PRUNED_MIN and len(numbers) >= PRUNED_SHARE * len(members):
            pruned.append(f"{family}: {len(numbers)} of {len(members)} pruned (#{', #'.join(map(str, numbers))})")
    return [
        ("Diverged or failed", "state FAIL, or the run ended 'diverged' (non-finite loss)", diverged),
        ("Exploding gradients", f"a batch gradient norm above {EXPLODING:g}× the trial's median epoch-mean norm", exploding),
        ("Growing train/validation gap", "mean validation loss rose over each of the last 2 epochs while the mean "
         "training loss fell", overfit),
        ("No learning", f"final mean training loss within {FLAT:.0%} of the first epoch's", flat),
        ("High variance over seeds", f"std of the validation {LABEL.get(metric, metric)} over a trial's seeds "
         f"above {HIGH_STD:g}", noisy),
        ("Many pruned trials in one family", f"at least {PRUNED_MIN} and at least {PRUNED_SHARE:.0%} of the "
         "family's trials pruned", pruned),
    ]


def issues(c: Context) -> list[str]:
    lines = ["## Issues spotted", "",
             f"Rules applied to the curves recorded for all {len(c.trials)} trials (per-epoch means over each trial's "
             "seeds); trial numbers listed.", ""]
    for title, rule, found in find_issues(c.trials, c.metric):
        lines.append(f"- **{title}** ({rule}): {', '.join(found) if found else 'none'}.")
    return lines + [""]


def optuna_views(c: Context) -> list[str]:
    lines = ["## Optuna's views", ""]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Optuna marks its matplotlib views experimental
        ax = optuna.visualization.matplotlib.plot_optimization_history(c.study)
        name = figures.from_axes(c.out / "optuna_history.png", ax)
        lines += image(name, "optimisation history", f"Search value of each of the {len(c.complete)} complete trials "
                       "in trial order, with the best value so far (optuna.visualization.matplotlib).")
        if len(c.complete) < 2:
            return lines + ["Parameter importances need at least 2 complete trials; this study has 1.", ""]
        try:
            evaluator = optuna.importance.FanovaImportanceEvaluator(seed=0)
            importances = optuna.importance.get_param_importances(c.study, evaluator=evaluator)
            ax = optuna.visualization.matplotlib.plot_param_importances(
                c.study, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0))
            name = figures.from_axes(c.out / "optuna_importances.png", ax)
        except Exception as exc:  # small or degenerate studies (one value per parameter ...) cannot be analysed
            return lines + [f"Parameter importances could not be computed for this study "
                            f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else 'no detail'}).", ""]
    listed = ", ".join(f"{k} {v:.2f}" for k, v in importances.items() if v >= 0.005)
    lines += image(name, "parameter importances", f"fANOVA parameter importances (seed 0) over the "
                   f"{len(c.complete)} complete trials' search values.")
    lines += [f"Parameters with importance ≥ 0.005: {listed or 'none'}.", ""]
    return lines


SECTIONS = (header, leaderboard, learning_curves, confusion_matrices, effects, imbalance, robustness, issues,
            optuna_views)


def load_checked(config: ReportConfig, attrs: dict):
    """The task data for retraining: --data, else the source the study recorded, else the loaders' default.

    Refused if its class counts differ from the study's: the evaluations must use the data the search used.
    """
    recorded = (attrs.get("data") or {}).get("source")
    source = config.data or (recorded if recorded and Path(recorded).exists() else None)
    task = load_task(config.task, source)
    if attrs.get("counts") is not None and task.counts() != attrs["counts"]:
        raise ReportError(f"--data {source}: examples per class and split differ from those the study recorded; "
                          "pass the data the study was run on")
    return task


def safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "study"


def build(config: ReportConfig, write=lambda line: print(line, file=sys.stderr)) -> tuple[Path, Evaluations]:
    """Write <out>/<study>/report.md and its figures; return its path and the evaluations used."""
    if config.data is not None and not Path(config.data).exists():
        raise ReportError(f"--data {config.data!r}: no such file or folder")
    study = open_study(config.storage, config.study_name)
    attrs = study.user_attrs
    if attrs.get("task", config.task) != config.task:
        raise ReportError(f"study {config.study_name!r} is a {attrs['task']} study, not {config.task}")
    complete = ranked(study)
    if not complete:
        raise ReportError(f"study {config.study_name!r} has no complete trial in {hide_password(config.storage)}")
    out = Path(config.out) / safe_name(study.study_name)
    out.mkdir(parents=True, exist_ok=True)
    data = {"task": config.task, "split": (attrs.get("data") or {}).get("split"), "counts": attrs.get("counts")}
    evaluations = Evaluations(out / "evaluations.json", data, list(range(config.seeds)),
                              lambda: load_checked(config, attrs), config.device, write)
    families, leaders = select(study, config.top)
    context = Context(config, study, out, evaluations, trials=sorted(study.trials, key=lambda t: t.number),
                      complete=complete, families=families, leaders=leaders)
    text = "\n".join(line for section in SECTIONS for line in section(context)).rstrip() + "\n"
    write_text(out / "report.md", text)
    return out / "report.md", evaluations


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m search.report",
                                description="Write a Markdown report (with PNG figures) of a study, with final "
                                            "test-split evaluations of the best configurations.")
    p.add_argument("task", choices=sorted(LOADERS))
    p.add_argument("--storage", default=DEFAULT_STORAGE, help="the study's SQLAlchemy URL (default %(default)s)")
    p.add_argument("--study-name", default=None, help="default: the task name")
    p.add_argument("--data", default=None, help="data folder or archive (default: the source the study recorded)")
    p.add_argument("--seeds", type=int, default=5, help="seeds 0..N-1 for each final evaluation (default 5)")
    p.add_argument("--top", type=int, default=3, help="top configurations overall to evaluate (default 3)")
    p.add_argument("--out", default="reports", help="reports folder; writes OUT/<study>/report.md (default reports)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1, see bench/README.md)")
    return p


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)  # heartbeat, matplotlib views
    try:
        if args.threads < 1:
            raise ReportError(f"--threads must be an int >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)
        config = ReportConfig(task=args.task, storage=args.storage, study_name=args.study_name, data=args.data,
                              seeds=args.seeds, top=args.top, out=args.out, device=args.device)
        path, evaluations = build(config)
    except (ReportError, StudyError, DataError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    print(f"{path} ({evaluations.trained} configurations trained, {evaluations.reused} evaluations reused "
          f"from {evaluations.path})")


if __name__ == "__main__":
    main()
