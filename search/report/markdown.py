"""The report's text: each section is a pure function of the computed data (search/report/analysis.py)."""
from __future__ import annotations

import math
import statistics

from ..train import METRICS
from .analysis import mean_std

LABEL = {"accuracy": "accuracy", "balanced_accuracy": "balanced accuracy", "macro_f1": "macro-F1",
         "acc_bal_hmean": "hmean(acc, bal acc)"}


def fmt(values: list, digits: int = 3) -> str:
    """mean ± std over the finite values (a diverged seed has none); the count when some are missing."""
    finite = [v for v in values if v is not None and math.isfinite(v)]
    if not finite:
        return "n/a"
    mean, std = mean_std(finite)
    text = f"{mean:.{digits}f} ± {std:.{digits}f}" if len(finite) > 1 else f"{mean:.{digits}f}"
    return text if len(finite) == len(values) else f"{text} ({len(finite)} of {len(values)} seeds)"


def num(value, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def duration(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h {rest // 60:02d}m {rest % 60:02d}s" if hours else f"{rest // 60}m {rest % 60:02d}s"


def seed_range(seeds: list[int]) -> str:
    return f"{seeds[0]}–{seeds[-1]}" if len(seeds) > 1 and seeds == list(range(seeds[0], seeds[-1] + 1)) \
        else ", ".join(map(str, seeds))


def seeds_named(seeds: list[int]) -> str:
    """'seed 100' or 'seeds 100–102'."""
    return f"seed{'s' * (len(seeds) > 1)} {seed_range(seeds)}"


def table(header: list[str], rows: list[list]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows] + [""]


def image(name: str, alt: str, caption: str) -> list[str]:
    return [f"![{alt}]({name})", "", f"*{caption}*", ""]


def search_cell(value: float, complete: bool) -> str:
    """The validation value the search saw; † marks a pruned trial (its last reported value)."""
    return f"{value:.3f}" + ("" if complete else " †")


def header(r: dict) -> list[str]:
    h, m = r["header"], r["metric"]
    counted = ", ".join(f"{n} {name}" for name, n in h["counts"].items())
    lines = [
        f"# Study report: `{r['study']}` (task {r['task']})", "",
        "Written by `python -m search.report` from the study's storage and the final evaluations cached in "
        "`evaluations.json` beside this file; regenerating it from the same storage gives the same text. "
        "The machine-readable summary is `summary.json`.", "",
        "## Search", "",
        f"- Task: **{r['task']}**, {len(r['class_names'])} classes. The search maximised the validation "
        f"**{LABEL.get(m, m)}**, each trial's value being the mean over its {r['attrs'].get('seeds', '?')} seeds "
        f"({seed_range(list(range(r['attrs'].get('seeds') or 1)))}).",
        f"- Storage: `{r['storage']}`, study `{r['study']}`.",
        f"- Trials: {h['total']} ({counted}).",
        f"- Search time: {duration(h['busy_seconds'])} summed over the durations of {h['finished']} finished trials; "
        f"{duration(h['span_seconds'])} from the first trial's start to the last trial's end.",
        f"- Budget strategy {r['attrs'].get('strategy', '?')}, pruner {r['attrs'].get('pruner', '?')}, sampler seed "
        f"{r['attrs'].get('sampler_seed')}; fixed parameters {r['attrs'].get('fixed') or 'none'}; "
        f"grid {r['attrs'].get('grid') or 'none'}.",
        f"- Versions used to write this report: {r['versions']}; training-code fingerprint `{r['fingerprint']}`.", "",
    ]
    data = r["attrs"].get("data", {})
    lines += ["## Data", ""]
    if data.get("split"):
        lines.append(f"- Splits: {data['split']}.")
    for split, subjects in (data.get("subjects") or {}).items():
        lines.append(f"- {split} subjects: {', '.join(map(str, subjects))}.")
    if data.get("encoding"):
        lines.append(f"- Encoding: {data['encoding']}.")
    lines.append("")
    counts = r["attrs"].get("counts")
    if counts:
        rows = [[name] + [counts[s][k] for s in ("train", "val", "test")] for k, name in enumerate(r["class_names"])]
        rows.append(["**total**"] + [f"**{sum(counts[s])}**" for s in ("train", "val", "test")])
        lines += table(["class", "train", "val", "test"], rows)
        lines += ["*Examples per class and split, as recorded in the study when it ran (study attribute `counts`).*", ""]
    lines += ["## Reproduce", "", "```bash"] + r["commands"] + ["```", ""]
    return lines


def recommendation(r: dict) -> list[str]:
    rec, m = r["recommended"], r["metric"]
    tau, refit = rec["decision"]["tau"], rec["trained_on"] != "train"
    rule = (f"post-hoc logit adjustment with tau = {tau:g}, chosen on the validation split for the study's "
            f"{LABEL.get(m, m)}" if rec["decision"]["rule"] == "logit_adjust" else "the plain argmax")
    lines = [
        "## Recommendation", "",
        f"**{rec['family']}, trial #{rec['trial']}**: `{rec['configuration']}`; decision rule: {rule}.", "",
        *chosen_by(r),
        f"Retrained on the final seeds {seed_range(rec['seeds'])}, which chose nothing, "
        + ("on the training and validation rows together (the refit, as deployed: every choice, tau included, was "
           "made before on validation; `--no-refit` trains on the training split only), "
           if refit else "") + "and evaluated once on the test split:", "",
    ]

    def rows(test: dict, std: dict, ensemble: dict | None, how: str) -> list[list[str]]:
        found = [[f"mean ± std over the seeds{how}"] + [f"{test.get(k, math.nan):.3f} ± {std.get(k, 0):.3f}"
                                                         for k in METRICS]]
        if ensemble:
            found.append([f"seed ensemble (averaged probabilities){how}"] + [f"{ensemble[k]:.3f}" for k in METRICS])
        return found
    found = rows(rec["test"], rec["test_std"], rec["test_ensemble"], ", refit" if refit else "")
    if refit and rec["test_train_only"]:
        found += rows(rec["test_train_only"], rec["test_train_only_std"], rec["test_ensemble_train_only"],
                      ", training split only")
    lines += table(["test"] + [LABEL[k] for k in METRICS], found)
    lines += [verdict(metric, b, refit, (rec["test_ensemble"] or {}).get(metric)) for metric, b in rec["beats"].items()]
    if rec["winners_curse"] is not None:
        lines.append(f"- Winner's curse: search value {rec['search_value']:.4f} against {rec['fresh_value']:.4f} on "
                     f"the same validation split with the final seeds: {rec['winners_curse']:+.4f} (how much the "
                     "search flattered its own split; the choice value averages other folds too, see above).")
    lines += ["", f"The exported model (weights of the {len(rec['seeds'])} seeds, preprocessing, decision rule and a "
              "model card) is in `model/`: `python -m search.predict "
              f"{r['task']} --model {r['model_dir']} ...`.", ""]
    return lines


def verdict(metric: str, b: dict, refit: bool, ensemble: float | None) -> str:
    """One line: whether the recommended model (mean over its seeds) beats the strongest baseline, and by how much;
    a baseline that wins is named plainly."""
    gap = b["model"] - b["baseline"]
    line = (f"- Test {LABEL[metric]}: the recommended model (mean over its seeds, {b['model']:.3f}) "
            f"{'beats' if b['beats'] else 'does **not** beat'} the best baseline ({b['baseline_name']}, "
            f"{b['baseline']:.3f}" + (", refitted on training + validation too" if refit else "") + ")")
    if abs(gap) < 0.0005:
        line += " (less than 0.001 apart)"
    else:
        line += f" by {gap:.3f}" if gap > 0 else f": **{b['baseline_name']} is better by {-gap:.3f}**"
    if ensemble is not None:
        line += f"; the seed ensemble ({ensemble:.3f}) is {'above' if ensemble > b['baseline'] else 'not above'} it"
    return line + "."


def chosen_by(r: dict) -> list[str]:
    """How the recommendation was chosen: the top trials re-ranked on fresh seeds, validation only."""
    m, rerank, rec = LABEL.get(r["metric"], r["metric"]), r["rerank"], r["recommended"]
    if not rerank["seeds"]:
        return [f"It has the best search value (validation {m} {rec['search_value']:.4f}, mean over the search "
                "seeds; re-ranking was off).", ""]
    rows = [[f"{'**' if row['chosen'] else ''}#{row['trial']}{'**' if row['chosen'] else ''}", row["family"],
             f"{row['search_value']:.4f}", "n/a" if row["rerank_value"] is None else
             f"{row['rerank_value']:.4f} ± {row['rerank_std']:.4f}", f"{row['choice_value']:.4f}"]
            for row in rerank["rows"]]
    held_out = r.get("held_out", "groups")
    return [f"It has the best choice value among the {len(rows)} best trials of the search: each was retrained on "
            f"the re-ranking seeds {seed_range(rerank['seeds'])} (neither a search seed nor a final seed), seed by "
            f"seed on the validation folds {', '.join(map(str, rerank['folds']))}: other {held_out} held out of the "
            "training and validation data, the test split unchanged (fold 0 is the search's own split). The choice "
            f"value is the validation {m} averaged over the folds, fold 0 (the search seeds' mean) counting once, so "
            "that a trial does not win on lucky seeds or on the one validation split it was selected on "
            "(search/rerank.py).", "",
            *table(["trial", "family", "search value (fold 0)", "re-ranking folds (mean ± std)", "choice value"],
                   rows)]


def final_seeds_text(r: dict) -> str:
    """Which final seeds the evaluated configurations were retrained on."""
    fewer = []
    if any(row["complete"] and row["seeds"] != r["seeds"] for row in r["families"]):
        fewer.append(f"a family's best that is not a top trial, and so never the recommendation: "
                     f"{seeds_named(r['family_seeds'])}, `--family-seeds`")
    if any(not row["complete"] and row["seeds"] != r["seeds"] for row in r["families"]):
        fewer.append(f"a family none of whose trials completed, represented by a pruned trial: "
                     f"{seeds_named(r['pruned_seeds'])}, `--pruned-seeds`")
    return f"seeds {seed_range(r['seeds'])}" + (f" ({'; '.join(fewer)})" if fewer else "")


def leaderboard(r: dict) -> list[str]:
    m = r["metric"]
    lines = [
        "## Final evaluation", "",
        f"Configurations are chosen by validation value only (`trial.value`, the mean validation {LABEL.get(m, m)} "
        f"over the search seeds, COMPLETE trials): the best trial of each family and the {r['top']} best "
        "distinct configurations overall. Each is retrained from scratch, on seeds disjoint from the search "
        f"seeds: {final_seeds_text(r)}; and evaluated once on the test split, which the search never saw. "
        "Validation and test columns are mean ± std over those seeds (after the last epoch, test under the "
        "configuration's decision rule); the ensemble column averages the seeds' probabilities; training time is "
        "seconds per seed.", "",
    ]
    header_ = ["model", "trial", "configuration", "parameters", f"search val {LABEL.get(m, m)}"] + \
        [f"val {LABEL[k]}" for k in METRICS] + [f"test {LABEL[k]}" for k in METRICS] + \
        ["ensemble test acc / bal acc", "train s/seed"]

    def cells(row: dict) -> list:
        ensemble = row["test_ensemble"]
        n = len(row["seeds"])
        seeds = "" if row["seeds"] == r["seeds"] else f" ({n} seed{'s' * (n > 1)})"
        return ([row["family"], f"#{row['trial']}{seeds}", f"`{row['configuration']}`"
                 + (f" (tau {row['tau']:g})" if row["tau"] else ""), f"{row['params']:,}",
                 search_cell(row["search_value"], row["complete"])]
                + [fmt(row["val"][k]) for k in METRICS] + [fmt(row["test"][k]) for k in METRICS]
                + [f"{ensemble['accuracy']:.3f} / {ensemble['balanced_accuracy']:.3f}" if ensemble else "n/a",
                   f"{row['seconds']:.1f}"])

    def baseline_cells(b: dict, adjusted: bool) -> list:
        val, test = (b["val_adjusted"], b["test_adjusted"]) if adjusted else (b["val"], b["test"])
        name = b["name"] + (f" + logit adjustment (tau {b['tau']:g})" if adjusted else "")
        return ([f"baseline: {name}", "-", b["description"], "-", "-"] + [f"{val[k]:.3f}" for k in METRICS]
                + [f"{test[k]:.3f}" for k in METRICS] + ["-", f"{b['seconds']:.1f}"])

    baseline_rows = [baseline_cells(b, False) for b in r["baselines"]] + \
        [baseline_cells(b, True) for b in r["baselines"] if b["tau"]]
    lines += ["### Best configuration of each family, and the scikit-learn baselines", ""]
    lines += table(header_, [cells(row) for row in r["families"]] + baseline_rows)
    lines += [f"*One row per family searched ({len(r['families'])}); {r['complete']} complete trials considered. "
              "† no trial of this family completed (all pruned): its row is the pruned trial with the best last "
              "reported validation value, retrained here with its full epoch budget on "
              f"{seeds_named(r['pruned_seeds'])} (`--pruned-seeds`). Baselines are fitted on the same training "
              "split, their hyper-parameters and tau chosen on the validation split; deterministic, so one run each. "
              "Parameters: trainable parameter count of the model.*", ""]
    lines += ["### Top configurations overall", ""]
    lines += table(header_, [cells(row) for row in r["leaders"]])
    lines += [f"*The {len(r['leaders'])} best distinct configurations by search value.*", ""]
    return lines


def tradeoff(r: dict) -> list[str]:
    if not r["frontier"]["series"]:
        return []
    rec = r["recommended"]
    lines = ["## Accuracy against balanced accuracy", "",
             "Post-hoc logit adjustment moves a model along a curve: predicted class = argmax(log-probabilities "
             "- tau × log(training class prior)); tau = 0 is the plain argmax. Each point is a tau (labelled); the "
             "circled one is the tau chosen on the validation split.", ""]
    lines += image("frontier.png", "accuracy against balanced accuracy",
                   f"Test accuracy against test balanced accuracy as tau varies: the recommended model's ensemble of "
                   f"seeds {seed_range(rec['seeds'])} and each scikit-learn baseline (one fit each)"
                   + (", all refitted on training + validation." if rec["trained_on"] != "train" else "."))
    points = []
    for label, series in r["frontier"]["series"].items():
        chosen = next(p for p in series if p["tau"] == r["frontier"]["chosen"][label])
        text = f"{label}: tau 0 → {series[0]['accuracy']:.3f} / {series[0]['balanced_accuracy']:.3f}"
        if chosen["tau"]:
            text += f", tau {chosen['tau']:g} (chosen) → {chosen['accuracy']:.3f} / {chosen['balanced_accuracy']:.3f}"
        points.append(text)
    lines += ["Test accuracy / balanced accuracy at tau 0 and at the tau chosen on validation: "
              + "; ".join(points) + ". A model dominates another where its curve lies above and to the right "
              "of the other's.", ""]
    return lines


def learning_curves(r: dict) -> list[str]:
    lines = ["## Learning curves", ""]
    chosen = ", ".join(f"#{row['trial']} {row['family']}" for row in r["families"])
    for key, label in r["curve_keys"]:
        how = "the mean over the epoch's training batches" if key == "train_loss" else "on the validation split after the epoch"
        lines += image(f"curves_{key}.png", label, f"{label.capitalize()} per epoch ({how}) of the best trial of each "
                       f"family ({chosen}), retrained on {final_seeds_text(r)}: line = mean over seeds, "
                       "band = min..max over seeds.")
    return lines


def confusion_matrices(r: dict) -> list[str]:
    lines = ["## Confusion matrices (test)", ""]
    names = r["class_names"]
    for family, c in r["confusions"].items():
        lines += [f"### {family} (trial #{c['trial']})", ""]
        if c["rates"] is None:
            lines += [f"Every evaluation seed of trial #{c['trial']} diverged: no test predictions.", ""]
            continue
        lines += image(f"confusion_{family}.png", f"confusion {family}",
                       f"Test-split confusion matrix of trial #{c['trial']}, summed over seeds "
                       f"{seed_range(c['seeds'])} and normalised per true class (rows sum to 1).")
        if c["pairs"]:
            listed = "; ".join(f"{names[i]} → {names[j]} {rate:.1%} ({n} examples)" for rate, n, i, j in c["pairs"])
            lines += [f"Most confused (true → predicted, share of the true class): {listed}.", ""]
        else:
            lines += ["No test example was misclassified.", ""]
    return lines


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


SECTIONS = (header, recommendation, leaderboard, tradeoff, learning_curves, confusion_matrices, effects, imbalance,
            ngram_part, robustness, issues, optuna_views)


def render(r: dict) -> str:
    return "\n".join(line for section in SECTIONS for line in section(r)).rstrip() + "\n"

