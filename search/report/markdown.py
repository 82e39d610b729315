"""The report's text: each section is a pure function of the computed data (search/report/analysis.py)."""
from __future__ import annotations

import math

from ..train import METRICS
from .experiments import effects, imbalance, issues, ngram_part, optuna_views, robustness
from .text import LABEL, duration, fmt, image, search_cell, seed_range, seeds_named, table


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
    rows = [[f"{'**' if row['chosen'] else ''}#{row['trial']}{'**' if row['chosen'] else ''}",
             row["family"] + (" (first try)" if row.get("standard") else ""),
             f"{row['search_value']:.4f}", "n/a" if row["rerank_value"] is None else
             f"{row['rerank_value']:.4f} ± {row['rerank_std']:.4f}", f"{row['choice_value']:.4f}",
             "n/a" if row.get("choice_loss") is None or not math.isfinite(row["choice_loss"]) else
             f"{row['choice_loss']:.4f}"]
            for row in rerank["rows"]]
    held_out = r.get("held_out", "groups")
    count = len(rows) - r["first_try_appended"]
    opening = (f"It was chosen from the {count} best trials of the search and the field's first try"
               if rerank.get("standard") is not None else f"It has the best choice value among the {count} best "
               "trials of the search")
    return [f"{opening}: each was retrained on "
            f"the re-ranking seeds {seed_range(rerank['seeds'])} (neither a search seed nor a final seed), seed by "
            f"seed on the validation folds {', '.join(map(str, rerank['folds']))}: other {held_out} held out of the "
            "training and validation data, the test split unchanged (fold 0 is the search's own split). The choice "
            f"value is the validation {m} averaged over the folds, fold 0 (the search seeds' mean) counting once, so "
            "that a trial does not win on lucky seeds or on the one validation split it was selected on. Equal "
            "choice values (a small validation split counts few examples) go to the lower choice loss: the "
            "validation cross-entropy, averaged the same way (search/rerank.py).", "",
            *standard_text(r),
            *table(["trial", "family", "search value (fold 0)", "re-ranking folds (mean ± std)", "choice value",
                    "choice loss"], rows)]


def standard_text(r: dict) -> list[str]:
    """Whether the field's first try, re-ranked beside the leaders, was kept by the one-standard-error rule."""
    rerank = r["rerank"]
    if rerank.get("standard") is None:
        return []
    rows = {row["trial"]: row for row in rerank["rows"]}
    first, best = rows[rerank["standard"]], rows[rerank["best"]]
    errors = rerank["errors"]
    rule = (f"one standard error ({rerank['margin']:.4f}, the larger of {errors['examples']:.4f}, the best choice "
            f"value as a proportion of the {rerank['examples']} validation examples the folds count, and "
            f"{errors['folds']:.4f}, the standard error over the folds of its lead on the first try; the "
            "one-standard-error rule of Hastie et al., The Elements of Statistical Learning, 7.10)")
    if first["chosen"] and best["trial"] != first["trial"]:
        line = (f"The field's first try, #{first['trial']} (choice value {first['choice_value']:.4f}), is kept: the "
                f"best, #{best['trial']} at {best['choice_value']:.4f}, is not above it by more than {rule}, so the "
                "validation folds do not show that it is better.")
    elif first["chosen"]:
        line = f"The field's first try, #{first['trial']}, also has the best choice value."
    else:
        line = (f"The field's first try, #{first['trial']} (choice value {first['choice_value']:.4f}), was re-ranked "
                f"too; the recommendation is above it by more than {rule}.")
    return [line, ""]


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
    tail = ", and the field's first try" if r["first_try_appended"] else ""
    lines += [f"*The {len(r['leaders']) - r['first_try_appended']} best distinct configurations by search "
              f"value{tail}.*", ""]
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


SECTIONS = (header, recommendation, leaderboard, tradeoff, learning_curves, confusion_matrices, effects, imbalance,
            ngram_part, robustness, issues, optuna_views)


def render(r: dict) -> str:
    return "\n".join(line for section in SECTIONS for line in section(r)).rstrip() + "\n"
