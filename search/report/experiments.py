"""The report's sections on what the trials show: effects, imbalance, n-gram part, robustness, issues, Optuna."""
from __future__ import annotations

import statistics

from ..train import METRICS
from .analysis import mean_std
from .text import LABEL, count, fmt, image, num, seed_range, table

def effects(r: dict) -> list[str]:
    m = LABEL.get(r["metric"], r["metric"])
    e, found = r["effects"], r["effects"]["findings"]
    lines = ["## Effects seen across trials", "",
             f"Each point is one COMPLETE trial: its search value (mean validation {m} over its seeds) with an error "
             "bar of ± the std over those seeds (`seed_metrics`). Other parameters vary between trials, so these are "
             "associations, not controlled comparisons.", ""]
    points = e["width"]
    if points:
        lines += image("effect_width.png", "width", f"Validation {m} against width; "
                       f"{count(len(points), 'complete trial')} (linear excluded).")
        answers = [f"{w['family']}: only width {w['width']:g} tried ({count(w['trials'], 'trial')}, median "
                   f"{w['median']:.3f})" if w["tried"] == 1 else
                   f"{w['family']}: best width {w['width']:g} (median {w['median']:.3f} over its "
                   f"{count(w['trials'], 'trial')} at that width; {w['tried']} widths tried)" for w in found["width"]]
        lines += [f"Best width per family by the median of trial values: {'; '.join(answers)}. "
                  f"Based on {count(len(points), 'trial')}.", ""]
    else:
        lines += ["Only linear trials completed: they have no hidden layers, so width and depth do not apply.", ""]
    points, layers = e["layers"], found["layers"]
    if points:
        lines += image("effect_layers.png", "layers", f"Validation {m} against the number of stacked layers; "
                       f"{count(len(points), 'complete trial')} (linear excluded).")
        one, stacked = layers["one"], layers["stacked"]
        by = "; ".join(f"{v}: {med:.3f} ({n})" for v, (med, n) in layers["medians"].items())
        text = f"Median of trial values by layers (trials): {by}."
        if one and stacked:
            diff = layers["difference"]
            text += (f" Stacked (2+ layers): median {stacked[0]:.3f} over {count(stacked[1], 'trial')} vs "
                     f"{one[0]:.3f} over {count(one[1], 'single-layer trial')}: stacking "
                     f"{'helped' if diff > 0 else 'did not help'} ({diff:+.3f}).")
        else:
            text += f" No {'stacked' if one else 'single-layer'} trial completed, so stacking cannot be judged."
        lines += [f"{text} Based on {count(len(points), 'trial')}.", ""]
    for key, label in (("batch_size", "batch size"), ("clipnorm", "clipnorm (0 = no clipping)")):
        points, effect = e[key], found[key]
        lines += image(f"effect_{key}.png", key, f"Validation {m} against {label}; "
                       f"{count(len(points), 'complete trial')}, all families.")
        medians = "; ".join(f"{v:g}: {med:.3f} ({n})" for v, (med, n) in effect["medians"].items())
        text = f"Median of trial values by {key} (trials): {medians}. Highest median at {effect['best']:g}."
        if key == "clipnorm":
            clipped, free = effect["clipped"], effect["free"]
            if clipped and free:
                text += (f" Clipped: median {clipped[0]:.3f} over {count(clipped[1], 'trial')}; "
                         f"unclipped: {free[0]:.3f} over {free[1]}.")
            text += (" Why clip: a gradient norm that spikes (see Issues spotted, exploding gradients) takes one huge "
                     "step; clipping bounds the step's length and keeps its direction. The review report measures "
                     "this against sequence length.")
        if len(effect["medians"]) == 1:
            text += " Only one value was tried, so no effect can be measured."
        lines += [f"{text} Based on {count(len(points), 'trial')}.", ""]
    points, ngrams = e["ngrams"], found["ngrams"]
    if ngrams:
        lines += image("effect_ngrams.png", "ngrams", f"Validation {m} against the n-gram part (`ngrams`: a linear "
                       f"model over the name's hashed character 1..n-grams added to the network's logits; 0 = none); "
                       f"{count(len(points), 'complete trial')}, all families.")
        medians = "; ".join(f"{v:g}: {med:.3f} ({n})" for v, (med, n) in ngrams["medians"].items())
        with_part, without = ngrams["with"], ngrams["without"]
        text = f"Median of trial values by ngrams (trials): {medians}."
        if with_part and without:
            text += (f" With an n-gram part: median {with_part[0]:.3f} over {count(with_part[1], 'trial')}; "
                     f"without: {without[0]:.3f} over {without[1]} ({ngrams['difference']:+.3f}).")
        lines += [f"{text} Based on {count(len(points), 'trial')}.", ""]
    return lines


def imbalance(r: dict) -> list[str]:
    i = r["imbalance"]
    names = r["class_names"]
    counts, order, recall, f1 = i["train_counts"], i["order"], i["recall"], i["f1"]
    strategies = i["strategies"]  # those the task's space offers
    seeds = seed_range(r["seeds"])
    lines = ["## Class imbalance", "",
             f"The best trial (#{i['trial']}, `{i['configuration']}`) retrained with each imbalance strategy the "
             f"search space offers, nothing else changed, on seeds {seeds}; test-split metrics under the "
             f"configuration's decision rule, mean ± std over seeds. The search itself chose "
             f"imbalance={i['chosen']} for this trial. `class_weights`: weighted cross-entropy from the training "
             "split's class frequencies; `oversample`: training examples drawn with class-uniform probability each "
             "epoch" + ("; `logit_adjust`: cross-entropy on logits + log(training prior)"
                        if "logit_adjust" in strategies else "") + ". "
             "All are computed from the training split only; validation and test are never resampled or reweighted.", ""]
    base = mean_std(i["rows"]["none"]["test"]["balanced_accuracy"])
    rows = []
    for value, entry in i["rows"].items():
        now = mean_std(entry["test"]["balanced_accuracy"])
        change = f"{now[0] - base[0]:+.3f}" if now and base else "n/a"
        rows.append([value, fmt(entry["val_balanced"])] + [fmt(entry["test"][k]) for k in METRICS] + [change])
    lines += table(["imbalance", "val balanced accuracy"] + [f"test {LABEL[k]}" for k in METRICS]
                   + ["test balanced accuracy change vs none"], rows)
    rows = [[names[k], counts[k]] + [f"{recall[v][k]:.3f}" for v in strategies] + [f"{f1[v][k]:.3f}" for v in strategies]
            for k in order]
    lines += table(["class", "train examples"] + [f"recall {v}" for v in strategies] + [f"F1 {v}" for v in strategies], rows)
    lines += [f"*Per-class test recall and F1, mean over seeds {seeds}, classes from fewest to most training examples.*", ""]
    lines += image("imbalance_per_class.png", "imbalance", f"Per-class test recall and F1 of trial #{i['trial']}'s "
                   f"configuration under each imbalance strategy (mean over seeds {seeds}), classes from fewest to "
                   "most training examples.")
    rare, largest = order[:3], order[-1]
    recalls = lambda k: ", ".join(f"{v} {recall[v][k]:.3f}" for v in strategies)  # noqa: E731
    rare_recall = {v: statistics.fmean(recall[v][k] for k in rare) for v in strategies}
    text = (f"Test recall of the {len(rare)} classes with the fewest training examples: "
            + "; ".join(f"{names[k]} ({counts[k]}): {recalls(k)}" for k in rare)
            + f" (their mean: {', '.join(f'{v} {rare_recall[v]:.3f}' for v in strategies)}). The largest class, "
            f"{names[largest]} ({counts[largest]}): {recalls(largest)}.")
    balanced = {v: mean_std(i["rows"][v]["test"]["balanced_accuracy"]) for v in strategies}
    accuracy = {v: mean_std(i["rows"][v]["test"]["accuracy"]) for v in strategies}
    if all(balanced.values()) and all(accuracy.values()):
        best_value = max(strategies, key=lambda v: (balanced[v][0], -strategies.index(v)))
        if best_value == "none":
            text += f" No treatment raised balanced accuracy above {balanced['none'][0]:.3f} (none)."
        else:
            text += (f" What the treatment changes: balanced accuracy is highest with {best_value}, "
                     f"{balanced[best_value][0]:.3f} vs {balanced['none'][0]:.3f} without "
                     f"({balanced[best_value][0] - balanced['none'][0]:+.3f}), while accuracy goes from "
                     f"{accuracy['none'][0]:.3f} to {accuracy[best_value][0]:.3f} "
                     f"({accuracy[best_value][0] - accuracy['none'][0]:+.3f}). Why: the plain loss is minimised by "
                     "favouring the frequent classes, so rare classes lose recall; each treatment raises the weight "
                     "of rare classes, which buys their recall with some errors on the frequent ones (see the "
                     "accuracy/balanced-accuracy curve above).")
    lines += [text, ""]
    return lines


def ngram_part(r: dict) -> list[str]:
    n = r["ngram_part"]
    if n is None:
        return []
    (order, with_part), (_, without) = n["rows"].items()
    seeds = seed_range(r["seeds"])
    lines = ["## The n-gram part", "",
             f"The recommended configuration (#{n['trial']}, `{n['configuration']}`) retrained without its n-gram part "
             f"(`ngrams=0`: the network alone), nothing else changed, on seeds {seeds}, both on the training split (as "
             "in the leaderboard); mean ± std over seeds, test under each configuration's decision rule (tau chosen "
             "on validation). The n-gram part is a linear model "
             f"over the name's hashed character 1..{order}-grams whose logits add to the network's "
             "(`models/ngrams.py`).", ""]
    rows = [[f"ngrams={k}", f"{row['tau']:g}", f"{row['params']:,}", fmt(row["seconds"], 1)]
            + [fmt(row["val"][m]) for m in METRICS] + [fmt(row["test"][m]) for m in METRICS]
            for k, row in n["rows"].items()]
    lines += table(["model", "tau", "parameters", "train s/seed"] + [f"val {LABEL[m]}" for m in METRICS]
                   + [f"test {LABEL[m]}" for m in METRICS], rows)
    change = {m: (mean_std(with_part["test"][m]), mean_std(without["test"][m])) for m in METRICS}
    if all(a and b for a, b in change.values()):
        lines += ["What the n-gram part adds on the test split: "
                  + ", ".join(f"{LABEL[m]} {a[0] - b[0]:+.3f}" for m, (a, b) in change.items()) + ".", ""]
    return lines


def robustness(r: dict) -> list[str]:
    m, rb = r["metric"], r["robustness"]
    lines = ["## Seed robustness", "",
             f"The top {len(rb['per_seed'])} configurations by search value, each retrained on seeds "
             f"{seed_range(r['seeds'])}: {LABEL.get(m, m)} per seed on the validation and test splits.", ""]
    rows = []
    for number, values in rb["per_seed"].items():
        spread = [v for v in values["test"] if v is not None]
        rows.append([f"#{number}", values["family"]] +
                    [f"{num(v)} / {num(w)}" for v, w in zip(values["val"], values["test"])] +
                    [fmt(values["val"]), fmt(values["test"]), f"{max(spread) - min(spread):.3f}" if spread else "n/a"])
    lines += table(["trial", "family"] + [f"seed {s} val / test" for s in r["seeds"]] +
                   ["val mean ± std", "test mean ± std", "test range (max − min)"], rows)
    if len(rb["per_seed"]) < 2:
        lines += ["Only one configuration completed: no ranking to compare.", ""]
    elif rb["flips"]:
        lines += ["Rankings that flip between seeds (per-seed comparison against the mean over seeds):", ""]
        lines += [f"- {f['split']}: #{f['first']} is ahead of #{f['second']} on the mean ({f['means'][0]:.3f} vs "
                  f"{f['means'][1]:.3f}) but seed(s) {', '.join(map(str, f['seeds']))} rank #{f['second']} first."
                  for f in rb["flips"]] + [""]
    else:
        lines += [f"No ranking flips: every seed orders these {len(rb['per_seed'])} configurations as their means do, "
                  "on both splits.", ""]
    return lines


def issues(r: dict) -> list[str]:
    lines = ["## Issues spotted", "",
             f"Rules applied to the curves recorded for all {r['header']['total']} trials (per-epoch means over each "
             "trial's seeds); trial numbers listed.", ""]
    for title, rule, found in r["issues"]:
        lines.append(f"- **{title}** ({rule}): {', '.join(found) if found else 'none'}.")
    return lines + [""]


def optuna_views(r: dict) -> list[str]:
    lines = ["## Optuna's views", ""]
    lines += image("optuna_history.png", "optimisation history", f"Search value of each of the {r['complete']} "
                   "complete trials in trial order, with the best value so far.")
    found = r["importances"]
    if "error" in found:
        return lines + [found["error"][0].upper() + found["error"][1:] + ".", ""]
    listed = ", ".join(f"{k} {v:.2f}" for k, v in found["values"].items() if v >= 0.005)
    lines += image("optuna_importances.png", "parameter importances", "fANOVA parameter importances "
                   f"(optuna.importance, seed 0) over the {r['complete']} complete trials' search values.")
    return lines + [f"Parameters with importance ≥ 0.005: {listed or 'none'}.", ""]
