"""Print the README's Results tables from the example reports' summary.json files.

    python bench/results.py [--reports reports]

For each task: the recommended model (as deployed: refitted on train + validation unless the report
ran with --no-refit, and beside it trained on the training split only), the best configuration of each
other family and the scikit-learn baselines (each also refitted) (test metrics: mean +/- std over the final seeds, and the seed ensemble), whether
the recommendation beats the best baseline, how far it is from the task's target, and its winner's curse.
Every number is read from `reports/<task>/summary.json`, written by `python -m search.report TASK`.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

TARGETS = {"names": {"accuracy": 0.85, "balanced_accuracy": 0.60}, "har": {"accuracy": 0.975}}
PUBLISHED = {"har": "| published: LSTM / ConvNet / SVM on 561 features | 0.917 / 0.948 / 0.96 | | |"}
LABEL = {"accuracy": "accuracy", "balanced_accuracy": "balanced accuracy"}


def describe(spec: dict) -> str:
    """The few fields a reader needs to tell the recommended configuration apart."""
    parts = [] if spec["family"] == "linear" else [f"{spec['layers']}x{spec['width']}"]
    if spec["family"] in ("rnn", "lstm", "gru"):
        parts += ["bidirectional"] * spec["bidirectional"] + [f"conv front-end {spec['frontend']}"] * bool(spec["frontend"])
    if spec["family"] == "conv1d":
        parts += [f"kernel {spec['kernel_size']}", f"pool {spec['pool']}"] + ["batch norm"] * spec["norm"]
    parts += [f"a 1-{spec['ngrams']}-gram part"] if spec.get("ngrams") else []  # summaries before it lack the key
    return ", ".join(parts + [f"{spec['epochs']} epochs", spec["schedule"], f"lr {spec['lr']:.1e}",
                              f"batch {spec['batch_size']}", f"imbalance {spec['imbalance']}"])


def gap(value: float, target: float) -> str:
    """'met', or how far below: to 0.1 point, or to 0.01 point where that would read 0.0."""
    if value >= target:
        return "met"
    points = 100 * (target - value)
    return f"missed by {points:.1f} points" if points >= 0.05 else f"missed by {points:.2f} points"


def task_block(summary: dict) -> list[str]:
    rec, task = summary["recommended"], summary["task"]
    decision = rec["decision"]
    rule = f"; logit adjustment tau {decision['tau']:g} chosen on validation" if decision["rule"] == "logit_adjust" else ""
    metric = lambda d, k: f"{d[k]:.3f}"  # noqa: E731
    how = "re-ranked on validation" if rec["rerank_seeds"] else "best on validation"  # --rerank-seeds 0: no re-ranking
    refit = rec.get("trained_on", "train") != "train"
    how += "; refitted on train + validation" if refit else ""
    rows = [f"| **{rec['family']} #{rec['trial']}** (recommended: {how}; {describe(rec['spec'])}{rule}) "
            f"| {rec['test']['accuracy']:.3f} ± {rec['test_std']['accuracy']:.3f} "
            f"| {rec['test']['balanced_accuracy']:.3f} ± {rec['test_std']['balanced_accuracy']:.3f} "
            f"| {metric(rec['test_ensemble'], 'accuracy')} / {metric(rec['test_ensemble'], 'balanced_accuracy')} |"]
    if refit and rec.get("test_train_only"):
        only, ensemble = rec["test_train_only"], rec["test_ensemble_train_only"]
        rows.append(f"| the same trained on the training split only | {only['accuracy']:.3f} "
                    f"| {only['balanced_accuracy']:.3f} | {metric(ensemble, 'accuracy')} / "
                    f"{metric(ensemble, 'balanced_accuracy')} |")
    if summary.get("ngram_part"):  # the recommendation retrained without its n-gram part, on the training split
        without = summary["ngram_part"]["0"]
        rows.append(f"| the same without its n-gram part, trained on the training split only | {without['accuracy']:.3f} "
                    f"| {without['balanced_accuracy']:.3f} | - |")
    pruned = any(not row["complete"] for row in summary["families"])
    for row in summary["families"]:
        if row["trial"] != rec["trial"]:
            mark = "" if row["complete"] else " †"
            seeds = row.get("seeds", rec["seeds"])
            seeds = ("" if seeds == rec["seeds"] else f"; seed {seeds[0]}" if len(seeds) == 1
                     else f"; seeds {seeds[0]}-{seeds[-1]}")
            rows.append(f"| {row['family']} #{row['trial']}{mark} (best {row['family']} on validation{seeds}) "
                        f"| {metric(row['test'], 'accuracy')} | {metric(row['test'], 'balanced_accuracy')} "
                        f"| {metric(row['test_ensemble'], 'accuracy')} / {metric(row['test_ensemble'], 'balanced_accuracy')} |")
    for b in summary["baselines"]:
        rows.append(f"| baseline: {b['description']} | {metric(b['test'], 'accuracy')} "
                    f"| {metric(b['test'], 'balanced_accuracy')} | - |")
        if b.get("tau"):
            rows.append(f"| the same + logit adjustment (tau {b['tau']:g} on validation) "
                        f"| {metric(b['test_adjusted'], 'accuracy')} | {metric(b['test_adjusted'], 'balanced_accuracy')} | - |")
        for key in ("test_refit", "test_refit_adjusted")[:1 + bool(b.get("tau"))] if refit and b.get("test_refit") else ():
            adjusted = f" + logit adjustment (tau {b['tau']:g})" if key.endswith("adjusted") else ""
            rows.append(f"| the same refitted on train + validation{adjusted} "
                        f"| {metric(b[key], 'accuracy')} | {metric(b[key], 'balanced_accuracy')} | - |")
    if task in PUBLISHED:
        rows.append(PUBLISHED[task])
    lines = [f"**{task}** ([reports/{summary['study']}](reports/{summary['study']}/report.md), metric {summary['metric']}):", "",
             "| model | test accuracy | test balanced accuracy | ensemble acc / bal acc |", "| --- | --- | --- | --- |", *rows, ""]
    beats = [f"{LABEL[k]} {v['model']:.3f} against {v['baseline']:.3f} ({v['baseline_name']}): "
             f"{'beats' if v['beats'] else 'loses'}" for k, v in rec["beats_baselines"].items()]
    targets = TARGETS[task]
    missed = "; ".join(f"{LABEL[k]} >= {t:g}: {rec['test'][k]:.3f}, {gap(rec['test'][k], t)} "
                       f"(ensemble {rec['test_ensemble'][k]:.3f}, {gap(rec['test_ensemble'][k], t)})" for k, t in targets.items())
    if pruned:
        lines += ["† No trial of this family completed: its row is its pruned trial with the best last reported "
                  "validation value, retrained with its full epoch budget on the seeds its row names.", ""]
    curse = (f"search value {rec['search_value']:.3f} minus the same configuration's validation value on the final "
             f"seeds): {rec['winners_curse']:+.3f}")
    if rec["rerank_seeds"]:
        curse += (f"; chosen by its choice value {rec['choice_value']:.3f}, the mean over validation folds 0 (search) "
                  f"and {', '.join(map(str, rec['rerank_folds']))} (re-ranking seeds "
                  f"{rec['rerank_seeds'][0]}-{rec['rerank_seeds'][-1]})")
    lines += [f"Against the best baseline: {'; '.join(beats)}. Target ({' and '.join(LABEL[k] for k in targets)}, mean "
              f"over seeds {rec['seeds'][0]}-{rec['seeds'][-1]}): {missed}. Winner's curse of #{rec['trial']} ({curse}.",
              ""]
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reports", default="reports", help="folder holding <task>/summary.json (default reports)")
    args = parser.parse_args(argv)
    for task in ("names", "har"):
        path = Path(args.reports) / task / "summary.json"
        if not path.exists():
            parser.exit(2, f"{path}: no such file; run python -m search.report {task} first\n")
        print("\n".join(task_block(json.loads(path.read_text()))))


if __name__ == "__main__":
    main()
