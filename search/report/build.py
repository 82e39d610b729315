"""Build a report: load the study, evaluate the chosen configurations, compute, draw, render, export.

The study chose configurations on validation metrics only. The report picks the best trial of
each family and the top trials overall by validation value, re-ranks the top trials on fresh seeds
on validation (search/rerank.py, cached in reranking.json) to choose the recommendation, retrains
every picked configuration on the final seeds and evaluates it on the test split
(search/evaluate.py, cached in evaluations.json). The recommendation is then refitted, as it is
deployed: the same final seeds trained on the training and validation rows together, with the tau the
validation split chose (cached in refits.json; `--no-refit` keeps the training split only). It then
computes every analysis into plain data, draws the figures and renders report.md from that data,
writes summary.json and exports the recommended model to model/.
"""
from __future__ import annotations

import json
import os
import re
import shlex
import sys
import time
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Callable

import optuna
import sklearn
import torch

from data import Task, write_text
from models import create_model
from .. import defaults, figures
from ..baselines import run_baselines
from ..cache import BASELINE_CODE, JsonCache, code_fingerprint
from ..rerank import Reranking
from ..evaluate import (EvaluationError, Evaluations, baseline_entry, final_metrics, load_checked, open_study, ranked,
                        seed_seconds, select, spec_of)
from ..pool import Pool
from ..tasks import entry_of, standard_of
from ..storage import hide_password
from ..train import METRICS
from ..util import json_safe, shown_path, shown_paths
from . import analysis
from .markdown import LABEL, render

BASELINES = ("full", "quick", "none")


class ReportError(EvaluationError):
    """A missing study, bad argument or mismatched data, reported as one line."""


@dataclass
class ReportConfig:
    task: str
    storage: str = defaults.STORAGE
    study_name: str | None = None
    data: str | None = None
    seeds: int | None = None  # final seeds per evaluation (None: the task entry's, search/tasks.py)
    family_seeds: int = defaults.FAMILY_SEEDS  # for a family's best that is not a top trial (at most `seeds`)
    pruned_seeds: int = defaults.PRUNED_SEEDS  # for a family represented by a pruned trial (at most `family_seeds`)
    top: int = 3
    rerank_seeds: int | None = None  # seeds re-ranking the top trials (None: as many as the search used; 0: none)
    out: str = "reports"
    device: str = defaults.DEVICE
    workers: int = 1
    baselines: str = "full"  # full | quick (small hyper-parameter grids, for tests) | none
    refit: bool = True  # the recommendation (and each baseline) refitted on train + validation, as deployed

    def __post_init__(self):
        if not isinstance(self.task, str) or not self.task.strip():
            raise ReportError(f"task must be a task or study name, got {self.task!r}")
        self.study_name = self.study_name or self.task
        if self.baselines not in BASELINES:
            raise ReportError(f"--baselines must be one of {list(BASELINES)}, got {self.baselines!r}")
        for name in ("seeds", "family_seeds", "pruned_seeds", "top", "workers"):
            value = getattr(self, name)
            if name == "seeds" and value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ReportError(f"--{name.replace('_', '-')} must be an int >= 1, got {value!r}")
        span = defaults.FINAL_SEED_BASE - defaults.RERANK_SEED_BASE
        value = self.rerank_seeds
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= span):
            raise ReportError(f"--rerank-seeds must be an int from 0 to {span}, got {value!r}")

    def command(self) -> str:
        args = ["python -m search.report", self.task, "--storage", shown_paths(hide_password(self.storage)),
                "--study-name", self.study_name, "--seeds", str(self.seeds), "--family-seeds", str(self.family_seeds),
                "--pruned-seeds", str(self.pruned_seeds),
                "--top", str(self.top), "--out", self.out]
        if self.rerank_seeds is not None:
            args += ["--rerank-seeds", str(self.rerank_seeds)]
        if self.data:
            args += ["--data", shown_path(self.data)]
        if not self.refit:
            args += ["--no-refit"]
        return " ".join(args[:1] + [shlex.quote(a) for a in args[1:]])


def family_seeds(config: ReportConfig) -> list[int]:
    """The final seeds of a family's best trial that is not a top trial: the first `family_seeds` of them."""
    return defaults.final_seeds(min(config.family_seeds, config.seeds))


def pruned_seeds(config: ReportConfig) -> list[int]:
    """The final seeds of a family represented by a pruned trial (none of its trials completed)."""
    return defaults.final_seeds(min(config.pruned_seeds, config.family_seeds, config.seeds))


def safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "study"


def check_out(out: Path) -> None:
    """Fail before any training on an output folder that cannot be written."""
    for parent in [out, *out.parents]:
        if parent.exists():
            if not parent.is_dir():
                raise ReportError(f"--out: {parent} is a file, not a folder")
            if not os.access(parent, os.W_OK):
                raise ReportError(f"--out: {parent} is not writable")
            return


def baselines_of(config: ReportConfig, task: Task, metric: str, out: Path, data: dict, pool: Pool,
                 write: Callable[[str], None] = lambda line: None) -> list[dict]:
    """The scikit-learn baselines on the same splits, cached in baselines.json (they take a minute or two);
    what is not cached is fitted in a worker of pool, and the returned list fills once pool.wait() returns.

    The key holds the code's fingerprint: a file written by older code may lack a metric added since."""
    key = {"data": data, "metric": metric, "grid": config.baselines, "refit": config.refit,
           "code": code_fingerprint(BASELINE_CODE)}
    cache = JsonCache(out / "baselines.json", {"key": key}, "baselines", "baseline cache")
    saved = cache.load(None)
    if saved is not None:
        return saved
    entries: list[dict] = []

    def fitted(results: list) -> None:
        entries.extend(baseline_entry(result, task, metric) for result in results)
        cache.save(entries)
        write(f"fitted {len(results)} baseline(s) in {sum(r.seconds for r in results) / 60:.1f} min")
    pool.call(partial(run_baselines, quick=config.baselines == "quick", metric=metric, refit=config.refit),
              then=fitted)
    return entries


def compute(config: ReportConfig, study: optuna.Study, complete: list, families: dict, leaders: list, metric: str,
            evaluations: Evaluations, baselines: list[dict], out: Path, best: optuna.trial.FrozenTrial,
            reranking: Reranking, reranked: dict[int, dict | None], refits: Evaluations | None) -> dict:
    """Everything the report says, as plain data (complete, families, leaders, best: as build chose them;
    reranked: each leader's re-ranking entry; refits: the recommendation's refit, unless --no-refit)."""
    attrs = study.user_attrs
    class_names = attrs.get("class_names") or [str(i) for i in range(len(complete[0].user_attrs["confusion"]))]
    trials = sorted(study.trials, key=lambda t: t.number)
    chosen_spec = spec_of(best)
    variants = [replace(chosen_spec, imbalance=v) for v in strategies(evaluations.task, best)]
    variants += [replace(chosen_spec, ngrams=0)] if chosen_spec.ngrams else []
    # The evaluations as plain entries (all trained by now): the analysis reads them and cannot train.
    evaluated = {spec: evaluations.get(spec) for spec in [spec_of(t) for t in [*families.values(), *leaders, best]]
                 + variants}
    best_entry = evaluated[chosen_spec]
    rerank = analysis.rerank_rows(leaders, reranked, best, metric, reranking.seeds, reranking.fold_numbers,
                                  reranking.standard, reranking.examples())
    chosen = next(row for row in rerank["rows"] if row["chosen"])
    refit_entry = refits.get(spec_of(best)) if refits else None
    recommended = analysis.recommendation(best, best_entry, baselines, metric, chosen["choice_value"], refit_entry)
    confusions = {}
    for family, trial in families.items():
        summed = analysis.summed_confusion(evaluated[spec_of(trial)])
        rates, pairs = analysis.confused_pairs(summed) if summed else (None, [])
        confusions[family] = {"trial": trial.number, "rates": rates, "pairs": pairs,
                              "seeds": [r["seed"] for r in evaluated[spec_of(trial)]["runs"] if r["test"]]}
    train_counts = (attrs.get("counts") or {}).get("train") or [0] * len(class_names)
    return {
        "study": study.study_name, "task": config.task, "metric": metric, "class_names": class_names,
        "held_out": entry_of(evaluations.task).held_out,
        "attrs": attrs, "storage": shown_paths(hide_password(config.storage)), "top": config.top, "seeds": evaluations.seeds,
        "family_seeds": family_seeds(config), "pruned_seeds": pruned_seeds(config),
        "fingerprint": evaluations.fingerprint, "complete": len(complete),
        "versions": f"torch {torch.__version__}, optuna {optuna.__version__}, scikit-learn {sklearn.__version__}",
        "commands": [shown_paths(hide_password(c)) for c in attrs.get("commands", [])] + [config.command()],
        "header": analysis.header(study, trials),
        "recommended": recommended,
        "rerank": rerank,
        "model_dir": shown_path(str(out / "model")),
        "baselines": baselines,
        "families": [analysis.row(t, evaluated[spec_of(t)]) for t in families.values()],
        "leaders": [analysis.row(t, evaluated[spec_of(t)]) for t in leaders],
        "first_try_appended": len(leaders) > config.top,  # search.evaluate.select appends it after the top trials
        "frontier": analysis.frontier(recommended, refit_entry or best_entry, baselines),
        "curve_keys": [("train_loss", "training loss"), ("val_loss", "validation loss"),
                       (f"val_{metric}", f"validation {LABEL.get(metric, metric)}")],
        "curves": {f"{spec_of(t).family} (#{t.number})": [run["history"] for run in evaluated[spec_of(t)]["runs"]]
                   for t in families.values()},
        "confusions": confusions,
        "effects": analysis.effects(complete, metric),
        "imbalance": analysis.imbalance(best, evaluated, class_names, train_counts, strategies(evaluations.task, best)),
        "ngram_part": analysis.ngram_part(best, evaluated),
        "robustness": analysis.robustness(leaders, evaluated, evaluations.seeds, metric),
        "issues": analysis.find_issues(trials, metric),
        "importances": analysis.importances(study, complete),
        "history": analysis.history(complete),
    }


def draw(r: dict, out: Path) -> None:
    """Every figure the report links, from the computed data."""
    m = LABEL.get(r["metric"], r["metric"])
    for key, label in r["curve_keys"]:
        series = {name: [h.get(key, []) for h in runs] for name, runs in r["curves"].items()}
        figures.curves(out / f"curves_{key}.png", series, label, f"{label} per epoch")
    for family, c in r["confusions"].items():
        if c["rates"] is not None:
            figures.confusion(out / f"confusion_{family}.png", c["rates"], r["class_names"],
                              f"{family} (#{c['trial']}), test")
    if r["frontier"]["series"]:
        figures.frontier(out / "frontier.png", r["frontier"]["series"], r["frontier"]["chosen"],
                         "test accuracy vs balanced accuracy as tau varies")
    e = r["effects"]
    if e["width"]:
        figures.effect(out / "effect_width.png", e["width"], "hidden size / channels (width)", m,
                       f"{m} against width", scale="log2")
        figures.effect(out / "effect_layers.png", e["layers"], "layers", m, f"{m} against depth")
    for key, label in (("batch_size", "batch size"), ("clipnorm", "clipnorm (0 = no clipping)")):
        figures.effect(out / f"effect_{key}.png", e[key], label, m, f"{m} against {key}")
    if analysis.varies(e["ngrams"]):  # only where the space offers the n-gram part (names)
        figures.effect(out / "effect_ngrams.png", e["ngrams"], "n-gram part: longest n (0 = none)", m,
                       f"{m} against ngrams")
    i = r["imbalance"]
    names = [r["class_names"][k] for k in i["order"]]
    figures.grouped_bars(out / "imbalance_per_class.png", names,
                         {"test recall": {v: [i["recall"][v][k] for k in i["order"]] for v in i["strategies"]},
                          "test F1": {v: [i["f1"][v][k] for k in i["order"]] for v in i["strategies"]}},
                         f"trial #{i['trial']} by imbalance strategy")
    figures.history(out / "optuna_history.png", r["history"], f"search value (validation {m})", "optimisation history")
    if "values" in r["importances"]:
        figures.importances(out / "optuna_importances.png", r["importances"]["values"], "parameter importances")


def summary(r: dict) -> dict:
    """The machine-readable summary (summary.json)."""
    rec = r["recommended"]
    keep = lambda d: {k: d[k] for k in METRICS} if d else None  # noqa: E731
    return json_safe({
        "task": r["task"], "study": r["study"], "metric": r["metric"], "fingerprint": r["fingerprint"],
        "recommended": {"trial": rec["trial"], "family": rec["family"], "spec": rec["spec"],
                        "decision": {"rule": rec["decision"]["rule"], "tau": rec["decision"]["tau"]},
                        "seeds": rec["seeds"], "trained_on": rec["trained_on"], "search_value": rec["search_value"],
                        "choice_value": rec["choice_value"], "rerank_seeds": r["rerank"]["seeds"],
                        "rerank_folds": r["rerank"]["folds"], "winners_curse": rec["winners_curse"],
                        "test": keep(rec["test"]), "test_std": keep(rec["test_std"]),
                        "test_ensemble": keep(rec["test_ensemble"]), "beats_baselines": rec["beats"],
                        "test_train_only": keep(rec["test_train_only"]),
                        "test_ensemble_train_only": keep(rec["test_ensemble_train_only"])},
        "families": [{"family": row["family"], "trial": row["trial"], "complete": row["complete"], "seeds": row["seeds"],
                      "test": {m: analysis.mean_std(row["test"][m])[0] if analysis.mean_std(row["test"][m]) else None
                               for m in METRICS}, "test_ensemble": keep(row["test_ensemble"])}
                     for row in r["families"]],
        "baselines": [{"name": b["name"], "description": b["description"], "tau": b["tau"], "test": b["test"],
                       "test_adjusted": b["test_adjusted"], "test_refit": b.get("test_refit"),
                       "test_refit_adjusted": b.get("test_refit_adjusted")} for b in r["baselines"]],
        "reranked": [{k: row.get(k) for k in ("trial", "family", "search_value", "rerank_value", "choice_value",
                                               "choice_loss", "chosen", "standard")}
                     for row in r["rerank"]["rows"]],
        # The recommendation with and without its n-gram part (null without one), trained on the training split:
        # test means over the final seeds.
        "ngram_part": {str(n): {m: (analysis.mean_std(row["test"][m]) or [None])[0] for m in METRICS}
                       for n, row in r["ngram_part"]["rows"].items()} if r["ngram_part"] else None,
    })


def export(r: dict, config: ReportConfig, evaluations: Evaluations, spec, out: Path) -> Path:
    """The recommended model, as deployed: each final seed's weights, preprocessing, decision rule, card
    (evaluations: the refits, whose task is the refit one, unless --no-refit)."""
    from ..export import save_model  # imported here: the card's rendering is only needed for a report
    key = evaluations.key(spec)
    folder = out / "model"
    if exported(folder, key):
        return folder
    if key not in evaluations.states:
        evaluations.run([spec], keep_models={spec})
    task = evaluations.task
    models = []
    for state in evaluations.states[key]:
        model = create_model(spec, task.input_size, task.num_classes, task.seq_len)
        model.load_state_dict(state)
        models.append(model.eval())
    rec = r["recommended"]
    tau = rec["decision"]["tau"]
    source = {"study": r["study"], "trial": rec["trial"], "storage": r["storage"], "evaluation": key,
              "trained_on": rec["trained_on"], "command": config.command()}
    return save_model(folder, spec, task, models, evaluations.seeds, {"tau": tau}, final_metrics(models, task, tau),
                      source)


def exported(folder: Path, key: str) -> bool:
    """Whether folder already holds the model of this evaluation, weights included."""
    try:
        card = json.loads((folder / "model.json").read_text())
    except (OSError, ValueError):
        return False
    return card.get("source", {}).get("evaluation") == key and \
        all((folder / w["file"]).exists() for w in card.get("weights", []))


def strategies(task: Task, best: optuna.trial.FrozenTrial) -> list[str]:
    """The imbalance strategies the task's space offers, and the one the best trial used if it was pinned
    outside them: a strategy nobody could choose (logit_adjust on HAR) would cost 5 seeds of training."""
    offered = list(entry_of(task).space.imbalance)
    chosen = spec_of(best).imbalance
    return offered if chosen in offered else [*offered, chosen]


def build(config: ReportConfig, write=lambda line: print(line, file=sys.stderr, flush=True)) -> tuple[Path, Evaluations]:
    """Write <out>/<study>/report.md, its figures, summary.json and model/; return the report's path."""
    started, say = time.perf_counter(), write
    write = lambda line: say(f"[{(time.perf_counter() - started) / 60:.1f} min] {line}")  # noqa: E731
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
    check_out(out)
    task, source = load_checked(config.task, config.data, attrs)
    metric = attrs.get("metric") or complete[0].user_attrs.get("metric", "accuracy")
    if config.seeds is None:  # the task entry's, now that the task is known
        config = replace(config, seeds=entry_of(task).final_seeds)
    out.mkdir(parents=True, exist_ok=True)
    data = {"task": config.task, "split": (attrs.get("data") or {}).get("split"), "counts": attrs.get("counts")}
    evaluations = Evaluations(out / "evaluations.json", data, defaults.final_seeds(config.seeds), metric,
                              task, source, config.device, config.workers, write)
    standard = standard_of(task)  # the field's first try, re-ranked beside the top trials
    families, leaders = select(study, config.top, standard)
    search_seeds = sorted({s for t in complete for s in t.user_attrs.get("seeds") or []})
    rerank_seeds = defaults.rerank_seeds(len(search_seeds) if config.rerank_seeds is None else config.rerank_seeds)
    if set(rerank_seeds) & set(search_seeds):
        raise ReportError(f"the study's search seeds {search_seeds} overlap the re-ranking seeds {rerank_seeds}")
    reranking = Reranking(out / "reranking.json", data, rerank_seeds, metric, task, source, config.device,
                          config.workers, write, standard)
    # Every configuration the report needs goes to one pool of workers (search/pool.py): first the
    # re-ranking of the top trials, which chooses the recommendation; meanwhile the final evaluations of
    # every family's best and of the top trials, and the baselines; once the recommendation is known,
    # its imbalance variants, itself without its n-gram part (if it has one) and its refit (measured once its
    # train-only evaluation has chosen tau). Without refit, the top trials keep their weights when trained: one of
    # them is exported.
    cost = seed_seconds(study)
    tops = [spec_of(t) for t in leaders]
    refits = Evaluations(out / "refits.json", data, defaults.final_seeds(config.seeds), metric, task.refit(), source,
                         config.device, config.workers, write, refit=True) if config.refit else None
    fresh = set() if refits else {spec for spec in tops if evaluations.key(spec) not in evaluations.entries}
    others = [t for t in families.values() if spec_of(t) not in tops]  # never the recommendation
    complete_others = [spec_of(t) for t in others if t.state == optuna.trial.TrialState.COMPLETE]
    stand_ins = [spec_of(t) for t in others if t.state != optuna.trial.TrialState.COMPLETE]
    with Pool(config.task, source, config.device, config.workers) as pool:
        reranking.submit(pool, tops, cost)
        evaluations.submit(pool, tops, keep_models=fresh, cost=cost)
        evaluations.submit(pool, complete_others, cost=cost, seeds=family_seeds(config))
        evaluations.submit(pool, stand_ins, cost=cost, seeds=pruned_seeds(config))
        baselines = baselines_of(config, task, metric, out, data, pool, write) if config.baselines != "none" else []
        pool.wait(until=lambda: reranking.pending == 0)
        # The recommendation: the leader with the best validation mean over search and re-ranking seeds.
        chosen, reranked = reranking.choose(leaders)
        best = spec_of(chosen)
        deployed = refits or evaluations
        keep = set() if best in fresh or exported(out / "model", deployed.key(best)) else {best}
        deployed.submit(pool, [best], keep_models=keep, cost=cost)  # first: the exported weights are kept
        evaluations.submit(pool, [best, *[replace(best, imbalance=v) for v in strategies(task, chosen)],
                                  *([replace(best, ngrams=0)] if best.ngrams else [])], cost=cost)
        pool.wait()
        if refits:  # measured with the tau the train-only final seeds chose on validation
            refits.settle({best: evaluations.get(best)["decision"]["tau"]})
        if pool.jobs:
            write(f"training: {pool.usage()}")
    r = compute(config, study, complete, families, leaders, metric, evaluations, baselines, out, chosen, reranking,
                reranked, refits)
    draw(r, out)
    write_text(out / "report.md", render(r))
    write_text(out / "summary.json", json.dumps(summary(r), indent=1, sort_keys=True) + "\n")
    export(r, config, refits or evaluations, best, out)
    return out / "report.md", evaluations


