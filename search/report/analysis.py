"""Everything a report says, computed first into plain data (dicts, lists, numbers); rendering comes after.

It reads results already computed (the study's trials, the cached evaluation entries), so it cannot train.
Rules for "issues spotted" are constants here, and the report prints them with its findings.
"""
from __future__ import annotations

import math
import statistics
from dataclasses import asdict, replace

import optuna
import torch

from models import RECURRENT
from ..evaluate import search_value, spec_of
from ..rerank import best_of, choice_loss, choice_value, first_try, standard_errors
from ..train import METRICS, TrialSpec

EXPLODING = 10.0  # a batch gradient norm above this many times the trial's median epoch-mean norm
FLAT = 0.02  # final train loss within 2 % of the first epoch's: no learning
HIGH_STD = 0.05  # standard deviation of the study metric over a trial's seeds
PRUNED_SHARE, PRUNED_MIN = 0.5, 3  # a family with at least half of its trials pruned, and at least 3
TOP_PAIRS = 3  # most confused pairs listed per confusion matrix
RARE = 3  # classes with the fewest training examples, followed through the imbalance strategies
State = optuna.trial.TrialState


def mean_std(values: list) -> tuple[float, float] | None:
    values = [v for v in values if v is not None and math.isfinite(v)]
    if not values:
        return None
    return statistics.fmean(values), statistics.pstdev(values) if len(values) > 1 else 0.0


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
    parts += [f"ngrams={spec.ngrams}"] if spec.ngrams else []
    parts += [f"lr={spec.lr:.1e}", f"batch={spec.batch_size}", f"epochs={spec.epochs}", f"clip={spec.clipnorm:g}",
              f"wd={spec.weight_decay:.0e}", spec.schedule, f"imbalance={spec.imbalance}"]
    parts += ["decision=logit_adjust"] if spec.decision == "logit_adjust" else []
    return " ".join(parts)


def test_values(entry: dict, key: str) -> list:
    return [run["test"][key] if run["test"] else None for run in entry["runs"]]


def val_values(entry: dict, metric: str) -> list:
    return [(run["history"].get(f"val_{metric}") or [None])[-1] for run in entry["runs"]]


def decided_val(entry: dict, metric: str) -> list:
    """Each final seed's validation metric under the entry's decision rule (None for a diverged seed)."""
    return [run["val"][metric] if run.get("val") else None for run in entry["runs"]]


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


def confused_pairs(confusion: list[list[int]]) -> tuple[list[list[float]], list[tuple]]:
    """Row-normalised rates and the TOP_PAIRS most confused (rate, count, true, predicted) pairs."""
    total = torch.tensor(confusion, dtype=torch.float64)
    rates = (total / total.sum(1, keepdim=True).clamp(min=1)).tolist()
    n = len(confusion)
    pairs = sorted(((rates[i][j], int(total[i, j]), i, j) for i in range(n) for j in range(n)
                    if i != j and total[i, j] > 0), key=lambda p: (-p[0], -p[1], p[2], p[3]))[:TOP_PAIRS]
    return rates, pairs


def summed_confusion(entry: dict) -> list[list[int]] | None:
    matrices = [run["test"]["confusion"] for run in entry["runs"] if run["test"]]
    if not matrices:
        return None
    n = len(matrices[0])
    return [[sum(m[i][j] for m in matrices) for j in range(n)] for i in range(n)]


def row(trial: optuna.trial.FrozenTrial, entry: dict) -> dict:
    """One leaderboard row: a searched configuration retrained on the final seeds."""
    ensemble = entry.get("ensemble") or {}
    return {
        "family": spec_of(trial).family, "trial": trial.number, "configuration": describe(spec_of(trial)),
        "seeds": entry["seeds"],
        "params": entry["params"], "search_value": search_value(trial), "complete": trial.state == State.COMPLETE,
        "tau": entry["decision"]["tau"],
        "val": {m: val_values(entry, m) for m in METRICS},
        "test": {m: test_values(entry, m) for m in METRICS},
        "test_ensemble": {m: ensemble["test"][m] for m in METRICS} if ensemble else None,
        "seconds": statistics.fmean(r["seconds"] for r in entry["runs"]),
    }


def header(study: optuna.Study, trials: list) -> dict:
    states = [t.state for t in trials]
    finished = [t for t in trials if t.datetime_start and t.datetime_complete]
    return {
        "counts": {name: states.count(s) for s, name in ((State.COMPLETE, "complete"), (State.PRUNED, "pruned"),
                   (State.FAIL, "failed"), (State.RUNNING, "running"), (State.WAITING, "waiting")) if states.count(s)},
        "total": len(trials),
        "finished": len(finished),
        "busy_seconds": sum((t.datetime_complete - t.datetime_start).total_seconds() for t in finished),
        "span_seconds": (max(t.datetime_complete for t in finished) - min(t.datetime_start for t in finished)
                         ).total_seconds() if finished else 0.0,
    }


def recommendation(best: optuna.trial.FrozenTrial, entry: dict, baselines: list[dict], metric: str,
                   choice: float, refit: dict | None = None) -> dict:
    """The recommended model (best choice value: the search's fold and the re-ranking folds), as deployed: seeds
    and their ensemble, beside the baselines. entry: its final seeds trained on the training split; refit:
    the same seeds trained on training + validation, the deployed model, whose test values then lead (the
    train-only ones beside) and face the baselines' refits. The winner's curse is what its search value has
    over the same configuration's validation value (the same split, fold 0) on the final train-only seeds."""
    deployed = refit or entry
    tests = {m: mean_std(test_values(deployed, m)) for m in METRICS}
    fresh = mean_std(decided_val(entry, metric))
    suffix = "_refit" if refit else ""
    beats = {}
    for m in ("accuracy", "balanced_accuracy"):
        rivals = [(b[f"test{suffix}_adjusted" if b["tau"] else f"test{suffix}"][m],
                   b["name"] + (" + logit adjustment" if b["tau"] else "")) for b in baselines] + \
            [(b[f"test{suffix}"][m], b["name"]) for b in baselines]
        if rivals and tests[m]:
            value, name = max(rivals)
            beats[m] = {"model": tests[m][0], "baseline": value, "baseline_name": name, "beats": tests[m][0] > value}
    train_only = {m: mean_std(test_values(entry, m)) for m in METRICS}
    ensemble = lambda e: {m: e["ensemble"]["test"][m] for m in METRICS} if e.get("ensemble") else None  # noqa: E731
    return {
        "trial": best.number, "family": spec_of(best).family, "configuration": describe(spec_of(best)),
        "spec": asdict(spec_of(best)), "decision": entry["decision"], "seeds": deployed["seeds"],
        "trained_on": deployed.get("trained_on", "train"),
        "search_value": best.value, "choice_value": choice, "fresh_value": fresh[0] if fresh else None,
        "winners_curse": best.value - fresh[0] if fresh else None,
        "test": {m: v[0] for m, v in tests.items() if v}, "test_std": {m: v[1] for m, v in tests.items() if v},
        "test_ensemble": ensemble(deployed),
        "test_train_only": {m: v[0] for m, v in train_only.items() if v} if refit else None,
        "test_train_only_std": {m: v[1] for m, v in train_only.items() if v} if refit else None,
        "test_ensemble_train_only": ensemble(entry) if refit else None,
        "confusion": deployed["ensemble"]["test"]["confusion"] if deployed.get("ensemble") else None,
        "beats": beats,
    }


def rerank_rows(leaders: list, reranked: dict[int, dict | None], best: optuna.trial.FrozenTrial, metric: str,
                seeds: list[int], folds: list[int], standard: TrialSpec | None = None, examples: int = 0) -> dict:
    """The top trials as re-ranked: search value, mean over the re-ranking folds, the choice value; standard: the
    field's first try, which `best` (the best choice value) must beat by `margin`, the larger of `errors`
    (search/rerank.py)."""
    rows = []
    for trial in leaders:
        entry = reranked.get(trial.number)
        rerun = mean_std((entry or {}).get("values", []))
        rows.append({"trial": trial.number, "family": spec_of(trial).family, "configuration": describe(spec_of(trial)),
                     "search_value": trial.value, "search_seeds": trial.user_attrs.get("seeds"),
                     "rerank_value": rerun[0] if rerun else None, "rerank_std": rerun[1] if rerun else None,
                     "choice_value": choice_value(trial, entry, metric), "choice_loss": choice_loss(trial, entry),
                     "chosen": trial.number == best.number, "standard": spec_of(trial) == standard})
    first = first_try(leaders, standard)
    ahead = best_of(leaders, reranked, metric)  # the best choice value, which the rule weighs against the first try
    errors = standard_errors(ahead, first, reranked, metric, examples) if first else None
    return {"seeds": seeds, "folds": folds, "rows": rows, "standard": first.number if first else None,
            "best": ahead.number, "examples": examples, "errors": errors,
            "margin": max(errors.values()) if errors else None}


def frontier(recommended: dict, entry: dict, baselines: list[dict]) -> dict:
    """Test accuracy against balanced accuracy as tau varies: the recommended model's ensemble (entry: as deployed)
    and each baseline (its refit where the recommendation is a refit)."""
    refit = recommended["trained_on"] != "train"
    series, chosen = {}, {}
    if entry.get("ensemble"):
        label = f"recommended #{recommended['trial']} ({recommended['family']}, ensemble)"
        series[label], chosen[label] = entry["ensemble"]["frontier"]["test"], entry["decision"]["tau"]
    for b in baselines:
        series[b["name"]] = b["frontier_refit"] if refit else b["frontier"]["test"]
        chosen[b["name"]] = b["tau"]
    return {"series": series, "chosen": chosen}


def effects(complete: list, metric: str) -> dict:
    """Search values against width, depth, batch size, clipnorm and the n-gram part (associations across trials)."""
    def points(x, include=lambda spec: True):
        out = []
        for t in sorted(complete, key=lambda t: t.number):
            spec = spec_of(t)
            if include(spec):
                seeds = [v for v in t.user_attrs.get("seed_metrics", {}).get(metric, []) if v is not None]
                out.append((spec.family, x(spec), t.value, statistics.pstdev(seeds) if len(seeds) > 1 else 0.0))
        return out
    hidden = lambda spec: spec.family != "linear"  # noqa: E731  (linear has no hidden layers)
    found = {"width": points(lambda s: s.width, hidden), "layers": points(lambda s: s.layers, hidden),
             "batch_size": points(lambda s: s.batch_size), "clipnorm": points(lambda s: s.clipnorm),
             "ngrams": points(lambda s: s.ngrams)}
    return {**found, "findings": effect_findings(found)}


def varies(points: list[tuple]) -> bool:
    """Whether effect points take more than one value (the n-gram part is only searched on names)."""
    return len({p[1] for p in points}) > 1


def median_count(values: list[float]) -> tuple[float, int] | None:
    """(median, count) of trial values; None for none."""
    return (statistics.median(values), len(values)) if values else None


def split_by(points: list[tuple], part) -> tuple[tuple[float, int] | None, tuple[float, int] | None, float | None]:
    """Median and count of the trial values whose x is in the part and of the others, and the difference of the
    two medians (None unless both have trials)."""
    inside = median_count([p[2] for p in points if part(p[1])])
    outside = median_count([p[2] for p in points if not part(p[1])])
    return inside, outside, inside[0] - outside[0] if inside and outside else None


def highest(by: dict):
    """The x with the highest median (ties: the smaller x); None for no points."""
    return max(by.items(), key=lambda kv: (kv[1][0], -kv[0]))[0] if by else None


def effect_findings(effects: dict) -> dict:
    """What the report says about each effect, in numbers: medians of the trial values by x, the best x, and
    the comparisons it names (stacked against single-layer, clipped against unclipped, with and without n-grams)."""
    width = []
    for family in sorted({p[0] for p in effects["width"]}):
        by = median_by([p for p in effects["width"] if p[0] == family])
        best = highest(by)
        width.append({"family": family, "tried": len(by), "width": best, "median": by[best][0], "trials": by[best][1]})
    stacked, one, gain = split_by(effects["layers"], lambda layers: layers > 1)
    found = {"width": width,
             "layers": {"medians": median_by(effects["layers"]), "one": one, "stacked": stacked, "difference": gain}}
    for key in ("batch_size", "clipnorm"):
        by = median_by(effects[key])
        found[key] = {"medians": by, "best": highest(by)}
    found["clipnorm"]["clipped"], found["clipnorm"]["free"], _ = split_by(effects["clipnorm"], lambda clip: clip > 0)
    with_part, without, gain = split_by(effects["ngrams"], lambda ngrams: ngrams > 0)
    found["ngrams"] = {"medians": median_by(effects["ngrams"]), "with": with_part, "without": without,
                       "difference": gain} if varies(effects["ngrams"]) else None
    return found


def imbalance(best: optuna.trial.FrozenTrial, evaluated: dict[TrialSpec, dict], class_names: list[str],
              train_counts: list[int], strategies: list[str]) -> dict:
    """The best configuration retrained with each imbalance strategy the task's space offers.
    evaluated: each configuration's evaluation entry (search/evaluate.py), these variants among them."""
    spec = spec_of(best)
    k = len(class_names)
    entries = {value: evaluated[replace(spec, imbalance=value)] for value in strategies}
    return {
        "trial": best.number, "configuration": describe(spec), "chosen": spec.imbalance, "strategies": list(entries),
        "train_counts": train_counts,
        "rows": {value: {"tau": e["decision"]["tau"], "val_balanced": val_values(e, "balanced_accuracy"),
                         "test": {m: test_values(e, m) for m in METRICS}} for value, e in entries.items()},
        "recall": {value: per_class_mean(e, "recall", k) for value, e in entries.items()},
        "f1": {value: per_class_mean(e, "f1", k) for value, e in entries.items()},
        "order": sorted(range(k), key=lambda i: (train_counts[i], class_names[i])),
    }


def ngram_part(best: optuna.trial.FrozenTrial, evaluated: dict[TrialSpec, dict]) -> dict | None:
    """The best configuration with and without its n-gram part (None if it has none): what that part adds."""
    spec = spec_of(best)
    if not spec.ngrams:
        return None
    entries = {spec.ngrams: evaluated[spec], 0: evaluated[replace(spec, ngrams=0)]}
    return {"trial": best.number, "configuration": describe(spec),
            "rows": {n: {"tau": e["decision"]["tau"], "val": {m: val_values(e, m) for m in METRICS},
                         "test": {m: test_values(e, m) for m in METRICS}, "params": e["params"],
                         "seconds": [run["seconds"] for run in e["runs"]]} for n, e in entries.items()}}


def robustness(leaders: list, evaluated: dict[TrialSpec, dict], seeds: list[int], metric: str) -> dict:
    """Each top configuration's metric per final seed (seeds), and the pairs whose order some seed flips."""
    per_seed = {t.number: {"family": spec_of(t).family, "val": val_values(evaluated[spec_of(t)], metric),
                           "test": test_values(evaluated[spec_of(t)], metric)} for t in leaders}
    flips = []
    for i, a in enumerate(leaders):
        for b in leaders[i + 1:]:
            for split in ("val", "test"):
                va, vb = per_seed[a.number][split], per_seed[b.number][split]
                ma, mb = mean_std(va), mean_std(vb)
                if not ma or not mb or ma[0] == mb[0]:
                    continue
                ahead = ma[0] > mb[0]
                seeds = [s for s, x, y in zip(seeds, va, vb) if x is not None and y is not None
                         and x != y and (x > y) != ahead]
                if seeds:
                    first, second = (a, b) if ahead else (b, a)
                    flips.append({"split": split, "first": first.number, "second": second.number,
                                  "means": (max(ma[0], mb[0]), min(ma[0], mb[0])), "seeds": seeds})
    return {"per_seed": per_seed, "flips": flips}


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
    label = metric.replace("_", " ")
    return [
        ("Diverged or failed", "state FAIL, or the run ended 'diverged' (non-finite loss)", diverged),
        ("Exploding gradients", f"a batch gradient norm above {EXPLODING:g}× the trial's median epoch-mean norm", exploding),
        ("Growing train/validation gap", "mean validation loss rose over each of the last 2 epochs while the mean "
         "training loss fell", overfit),
        ("No learning", f"final mean training loss within {FLAT:.0%} of the first epoch's", flat),
        ("High variance over seeds", f"std of the validation {label} over a trial's seeds above {HIGH_STD:g}", noisy),
        ("Many pruned trials in one family", f"at least {PRUNED_MIN} and at least {PRUNED_SHARE:.0%} of the "
         "family's trials pruned", pruned),
    ]


def importances(study: optuna.Study, complete: list) -> dict:
    """fANOVA parameter importances (seed 0), computed once; or why they could not be."""
    if len(complete) < 2:
        return {"error": f"parameter importances need at least 2 complete trials; this study has {len(complete)}"}
    try:
        found = optuna.importance.get_param_importances(
            study, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0))
    except Exception as exc:  # small or degenerate studies (one value per parameter ...) cannot be analysed
        detail = str(exc).splitlines()[0] if str(exc) else "no detail"
        return {"error": f"parameter importances could not be computed for this study ({type(exc).__name__}: {detail})"}
    return {"values": dict(found)}


def history(complete: list) -> list[tuple[int, float]]:
    return sorted((t.number, t.value) for t in complete)
