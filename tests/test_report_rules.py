"""The report's rules on hand-made trials, without a study run: the issues it flags, the trials the final
evaluation takes (a pruned family's stand-in, the field's first try beside the leaders), the sentence on why the
first try was kept; and bench/results.py's README tables from the committed report summaries."""
from __future__ import annotations

import json
import math
import subprocess
import sys

import optuna
import pytest

from search import report
from test_report import ROOT

pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")


def made_trial(number, state, curves, ended, family, seeds):
    made = optuna.trial.create_trial(
        state=state, value=sum(seeds) / len(seeds) if state == optuna.trial.TrialState.COMPLETE else None,
        params={"family": family}, distributions={"family": optuna.distributions.CategoricalDistribution([family])},
        user_attrs={"spec": {"family": family}, "curves": curves, "ended": ended, "seed_metrics": {"accuracy": seeds}})
    made.number = number
    return made


def curve(train, val, acc, norm=1.0, peak=2.0):
    return {"train_loss": train, "val_loss": val, "val_accuracy": acc, "grad_norm": [norm] * len(train),
            "grad_norm_max": [peak] * len(train)}


def test_issue_rules_flag_the_trials_that_break_them():
    healthy = curve([1.0, 0.6, 0.4, 0.3], [1.0, 0.7, 0.6, 0.55], [0.5, 0.6, 0.7, 0.72])
    overfit = curve([1.0, 0.6, 0.4, 0.3], [0.8, 0.7, 0.75, 0.8], [0.5, 0.6, 0.6, 0.6])
    flat = curve([1.0, 0.995, 0.99, 0.995], [1.0, 1.0, 1.0, 1.0], [0.2, 0.2, 0.2, 0.2])
    exploding = curve([1.0, 0.6, 0.4, 0.3], [1.0, 0.7, 0.6, 0.55], [0.5, 0.6, 0.7, 0.72], peak=50.0)
    noisy = curve([1.0, 0.6, 0.4, 0.3], [1.0, 0.7, 0.6, 0.55], [0.5, 0.6, 0.7, 0.9])
    pruned = [made_trial(n, optuna.trial.TrialState.PRUNED, [healthy], "pruned at epoch 2", "gru", [0.7])
              for n in (6, 7, 8)]
    trials = [made_trial(0, optuna.trial.TrialState.COMPLETE, [healthy, healthy], "finished", "lstm", [0.72, 0.72]),
              made_trial(1, optuna.trial.TrialState.COMPLETE, [overfit], "finished", "lstm", [0.6]),
              made_trial(2, optuna.trial.TrialState.COMPLETE, [flat], "finished", "lstm", [0.2]),
              made_trial(3, optuna.trial.TrialState.COMPLETE, [exploding], "finished", "lstm", [0.72]),
              made_trial(4, optuna.trial.TrialState.COMPLETE, [healthy, noisy], "finished", "lstm", [0.72, 0.9]),
              made_trial(5, optuna.trial.TrialState.FAIL, [healthy], "diverged at epoch 3 (seed 0)", "lstm", [0.7]),
              *pruned]
    found = {title: [item.split(" ")[0] for item in items] for title, _, items in report.find_issues(trials, "accuracy")}
    assert found["Diverged or failed"] == ["#5"]
    assert found["Growing train/validation gap"] == ["#1"]
    assert found["No learning"] == ["#2"]
    assert found["Exploding gradients"] == ["#3"]
    assert found["High variance over seeds"] == ["#4"]
    assert found["Many pruned trials in one family"] == ["gru:"]
    assert math.isclose(report.mean_std([0.5, None, 0.7])[0], 0.6)


def test_a_family_whose_trials_were_all_pruned_is_still_evaluated(tmp_path):
    """select() takes, for a family without a COMPLETE trial, its pruned trial with the best last value."""
    from optuna.distributions import CategoricalDistribution
    from optuna.trial import TrialState, create_trial

    from search.evaluate import search_value, select

    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 's.db'}", direction="maximize")
    family = {"family": CategoricalDistribution(["dense", "linear"])}
    study.add_trial(create_trial(params={"family": "dense"}, distributions=family, value=0.9,
                                 intermediate_values={1: 0.8, 2: 0.9}))
    for last in (0.5, 0.7, 0.6):
        study.add_trial(create_trial(params={"family": "linear"}, distributions=family, state=TrialState.PRUNED,
                                     intermediate_values={1: last - 0.1, 2: last}))
    families, leaders = select(study, top=3)
    assert list(families) == ["dense", "linear"]
    assert families["linear"].number == 2 and search_value(families["linear"]) == 0.7
    assert [t.number for t in leaders] == [0]  # the top configurations stay COMPLETE trials only

    marks = {f: report.search_cell(search_value(t), t.state == TrialState.COMPLETE) for f, t in families.items()}
    assert marks == {"dense": "0.900", "linear": "0.700 †"}


def test_the_fields_first_try_joins_the_leaders_when_the_study_trained_it(tmp_path):
    """select(standard=...): MiniRocket's corner, outside the top trials, is appended so that the report re-ranks
    it beside them (search.rerank.recommend keeps it within a standard error)."""
    from dataclasses import asdict
    from optuna.trial import create_trial

    from search.evaluate import select
    from search.train import TrialSpec

    corner = TrialSpec(family="minirocket", width=119)
    study = optuna.create_study(direction="maximize")
    trained = [(0.90, corner), (0.97, TrialSpec("conv1d")), (0.96, TrialSpec("gru")), (0.95, TrialSpec("dense"))]
    for value, spec in trained:
        study.add_trial(create_trial(value=value, params={}, distributions={}, user_attrs={"spec": asdict(spec)}))
    _, leaders = select(study, top=2, standard=corner)
    assert [t.number for t in leaders] == [1, 2, 0]
    _, leaders = select(study, top=4, standard=corner)  # among the top already: not twice
    assert [t.number for t in leaders] == [1, 2, 3, 0]
    _, leaders = select(study, top=2, standard=TrialSpec(family="minirocket", width=64))  # never trained: none
    assert [t.number for t in leaders] == [1, 2]


def test_the_report_says_why_the_first_try_was_kept_with_both_errors_of_the_rule():
    """The re-ranking table's sentence: the first try kept because the best's lead (0.005) is inside the larger of
    the examples' margin and the folds' standard error of the lead, both printed."""
    from dataclasses import asdict
    from optuna.trial import create_trial

    from search.report.analysis import rerank_rows
    from search.report.markdown import standard_text
    from search.rerank import recommend
    from search.train import TrialSpec

    corner, other = TrialSpec(family="minirocket", width=119), TrialSpec(family="conv1d")
    study = optuna.create_study(direction="maximize")
    for value, spec in ((0.970, corner), (0.985, other)):
        study.add_trial(create_trial(value=value, params={}, distributions={},
                                     user_attrs={"spec": asdict(spec), "seed_metrics": {"accuracy": [value] * 3}}))
    first, best = study.trials
    entries = {0: {"folds": [1, 2, 3], "values": [0.950, 0.940, 0.930]},
               1: {"folds": [1, 2, 3], "values": [0.940, 0.960, 0.925]}}
    chosen = recommend(study.trials, entries, "accuracy", standard=first, examples=6800)
    rows = rerank_rows(study.trials, entries, chosen, "accuracy", [50, 51, 52], [1, 2, 3], corner, 6800)
    assert chosen.number == 0 and rows["standard"] == 0
    assert rows["margin"] == max(rows["errors"].values()) == rows["errors"]["folds"] > rows["errors"]["examples"]
    line = standard_text({"rerank": rows})[0]
    assert line.startswith("The field's first try, #0 (choice value 0.9475), is kept: the best, #1 at 0.9525")
    assert f"one standard error ({rows['margin']:.4f}, the larger of {rows['errors']['examples']:.4f}" in line
    assert f"and {rows['errors']['folds']:.4f}, the standard error over the folds of its lead" in line


@pytest.mark.slow
def test_bench_results_prints_the_readme_tables_from_the_committed_summaries(tmp_path):
    done = subprocess.run([sys.executable, "bench/results.py"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    for task in ("names", "har"):
        summary = json.loads((ROOT / "reports" / task / "summary.json").read_text())
        rec = summary["recommended"]
        assert f"| **{rec['family']} #{rec['trial']}** (recommended" in done.stdout
        assert f"{rec['test']['accuracy']:.3f} ± {rec['test_std']['accuracy']:.3f}" in done.stdout
        assert all(f"| baseline: {b['description']} |" in done.stdout for b in summary["baselines"])
        if summary.get("ngram_part"):  # the recommendation without its n-gram part, beside it
            without = summary["ngram_part"]["0"]
            assert (f"| the same without its n-gram part, trained on the training split only | "
                    f"{without['accuracy']:.3f} | {without['balanced_accuracy']:.3f} | - |") in done.stdout
    # A family represented by a pruned trial is marked, and only then is the mark explained.
    for name, complete in (("marked", False), ("unmarked", True)):
        for task in ("names", "har"):
            summary = json.loads((ROOT / "reports" / task / "summary.json").read_text())
            for row in summary["families"]:
                row["complete"] = complete or row["trial"] == summary["recommended"]["trial"]
            (tmp_path / name / task).mkdir(parents=True)
            (tmp_path / name / task / "summary.json").write_text(json.dumps(summary))
    marked, unmarked = (subprocess.run([sys.executable, "bench/results.py", "--reports", str(tmp_path / name)],
                                       cwd=ROOT, capture_output=True, text=True, timeout=60).stdout
                        for name in ("marked", "unmarked"))
    summaries = [json.loads((ROOT / "reports" / t / "summary.json").read_text()) for t in ("names", "har")]
    rows = sum(row["trial"] != s["recommended"]["trial"] for s in summaries for row in s["families"])
    assert marked.count("† No trial of this family completed") == 2 and marked.count(" † (best ") == rows
    assert "†" not in unmarked
    missing = subprocess.run([sys.executable, "bench/results.py", "--reports", str(tmp_path)], cwd=ROOT,
                             capture_output=True, text=True, timeout=60)
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1 and "summary.json: no such file" in missing.stderr
