"""The surname report: a 1-trial names study (conv1d with an n-gram part, 1 epoch), built once per module and
reported with --seeds 2: the three imbalance strategies compared on one architecture, what the n-gram part adds,
summary.json's recommendation against the baselines, its refit on training and validation, the exported model,
baselines of older code recomputed; the n-gram effect across trials, and the final seeds of a report on all the
surnames as a user's CSV."""
from __future__ import annotations

import json
import re

import optuna
import pytest

from conftest import NAMES_DIR, names_rows, write_csv
from search import defaults, report
from search.tasks import REGISTRY
from test_report import PNG, make_study, section, table_rows

pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")


@pytest.fixture(scope="module")
def names(tmp_path_factory, data_cache, one_torch_thread, small_names_dir):
    """A 1-trial surname study (conv1d with an n-gram part, 1 epoch), reported: the imbalance section retrains it
    with each strategy, the n-gram section without its n-gram part."""
    folder = tmp_path_factory.mktemp("names-report")
    storage = make_study("names", folder, small_names_dir, {"family": "conv1d", "epochs": 1, "batch_size": 256,
                                                            "ngrams": 3},
                         {"imbalance": ["none"]})
    report.main(["names", "--storage", storage, "--out", str(folder / "reports"), "--seeds", "2",
                 "--baselines", "quick", "--workers", "2"])
    out = folder / "reports" / "names"
    return {"storage": storage, "out": out, "text": (out / "report.md").read_text()}


@pytest.mark.slow
def test_names_imbalance_compares_three_strategies_on_one_architecture(names):
    text = section(names["text"], "## Class imbalance")
    study = optuna.load_study(study_name="names", storage=names["storage"])
    counts, classes = study.user_attrs["counts"]["train"], study.user_attrs["class_names"]
    summary, per_class = [table_rows(t) for t in text.split("\n\n") if t.startswith("|")]
    assert [row[0] for row in summary] == list(REGISTRY["names"].space.imbalance) == ["none", "class_weights", "oversample", "logit_adjust"]
    assert sorted(row[0] for row in per_class) == sorted(classes)
    assert [int(row[1]) for row in per_class] == sorted(counts)  # fewest training examples first
    rarest = sorted(range(len(classes)), key=lambda i: (counts[i], classes[i]))[:3]
    explanation = [line for line in text.splitlines() if line.startswith("Test recall of the 3 classes")]
    assert explanation and all(f"{classes[i]} ({counts[i]})" in explanation[0] for i in rarest)
    assert "imbalance_per_class.png" in text
    cache = json.loads((names["out"] / "evaluations.json").read_text())
    specs = [e["spec"] for e in cache["evaluations"].values() if e["spec"]["ngrams"]]  # without it: see below
    assert sorted(s["imbalance"] for s in specs) == sorted(list(REGISTRY["names"].space.imbalance))
    assert all({**s, "imbalance": "none"} == {**specs[0], "imbalance": "none"} for s in specs)


@pytest.mark.slow
def test_names_report_measures_what_the_ngram_part_adds(names):
    text = section(names["text"], "## The n-gram part")
    (rows,) = [table_rows(t) for t in text.split("\n\n") if t.startswith("|")]
    assert [row[0] for row in rows] == ["ngrams=3", "ngrams=0"]
    cache = json.loads((names["out"] / "evaluations.json").read_text())["evaluations"].values()
    entries = {e["spec"]["ngrams"]: e for e in cache if e["spec"]["imbalance"] == "none"}
    assert {**entries[0]["spec"], "ngrams": 3} == entries[3]["spec"]  # nothing else changed
    mean = lambda e: sum(run["test"]["accuracy"] for run in e["runs"]) / len(e["runs"])  # noqa: E731
    assert f"accuracy {mean(entries[3]) - mean(entries[0]):+.3f}" in text
    from models.ngrams import BUCKETS
    assert entries[3]["params"] - entries[0]["params"] == BUCKETS * 18
    summary = json.loads((names["out"] / "summary.json").read_text())["ngram_part"]
    assert summary["3"]["accuracy"] == pytest.approx(mean(entries[3])) and set(summary) == {"0", "3"}


@pytest.mark.slow
def test_summary_json_names_the_recommended_model_and_the_baselines(names):
    summary = json.loads((names["out"] / "summary.json").read_text())
    assert summary["task"] == "names" and summary["metric"] == "acc_bal_hmean"
    rec = summary["recommended"]
    assert set(rec) >= {"trial", "family", "spec", "decision", "seeds", "test", "test_ensemble"}
    assert rec["seeds"] == [100, 101] and not set(rec["seeds"]) & {0, 1}  # the search used seeds 0 and 1
    # Chosen among the top trials by the mean over validation fold 0 (search seeds 0, 1) and folds 1, 2 (seeds 50, 51).
    assert rec["rerank_seeds"] == [50, 51]
    best = max(summary["reranked"], key=lambda row: row["choice_value"])
    assert best["chosen"] and best["trial"] == rec["trial"] and rec["choice_value"] == best["choice_value"]
    folds = rec["rerank_folds"]  # one re-ranking seed per fold: the choice value is the mean of fold means
    assert folds == [1, 2, 3][:len(rec["rerank_seeds"])]
    assert best["choice_value"] == pytest.approx((best["search_value"] + len(folds) * best["rerank_value"]) / (len(folds) + 1))
    assert set(rec["decision"]) >= {"tau"} and rec["decision"]["tau"] >= 0
    for key in ("test", "test_ensemble"):
        assert set(rec[key]) == {"accuracy", "balanced_accuracy", "macro_f1", "acc_bal_hmean"}
        assert all(0 <= v <= 1 for v in rec[key].values())
    # The summary's train-only test values are the means over the final seeds in the evaluation cache (its
    # "test" ones those of the refit, below).
    cache = json.loads((names["out"] / "evaluations.json").read_text())["evaluations"]
    entry = next(e for e in cache.values() if e["spec"] == rec["spec"])
    accuracies = [run["test"]["accuracy"] for run in entry["runs"]]
    assert rec["test_train_only"]["accuracy"] == pytest.approx(sum(accuracies) / len(accuracies))
    assert all(isinstance(row["complete"], bool) for row in summary["families"])  # False: a pruned stand-in (†)
    names_ = [b["name"] for b in summary["baselines"]]
    assert names_ == ["char-ngram-logreg", "char-ngram-logreg-balanced"]
    for baseline in summary["baselines"]:
        assert set(baseline["test"]) == {"accuracy", "balanced_accuracy", "macro_f1", "acc_bal_hmean"}
    rows = table_rows(section(names["text"], "### Best configuration of each family, and the scikit-learn baselines"))
    assert [row[0] for row in rows if row[0].startswith("baseline: ")][:2] == [f"baseline: {n}" for n in names_]
    assert "frontier.png" in names["text"] and (names["out"] / "frontier.png").read_bytes().startswith(PNG)
    verdicts = [line for line in section(names["text"], "## Recommendation").splitlines() if "baseline" in line]
    assert len(verdicts) == 2 and all(re.search(r"\) (beats|does \*\*not\*\* beat) the best", v) for v in verdicts)


@pytest.mark.slow
def test_the_recommendation_is_refitted_on_training_and_validation_with_the_tau_validation_chose(names):
    rec = json.loads((names["out"] / "summary.json").read_text())["recommended"]
    assert rec["trained_on"] == "train+validation"
    (refit,) = json.loads((names["out"] / "refits.json").read_text())["evaluations"].values()
    train_only = next(e for e in json.loads((names["out"] / "evaluations.json").read_text())["evaluations"].values()
                      if e["spec"] == rec["spec"])
    assert refit["spec"] == rec["spec"] and refit["trained_on"] == "train+validation"
    assert [run["seed"] for run in refit["runs"]] == [run["seed"] for run in train_only["runs"]] == rec["seeds"]
    # The validation rows were training data: nothing is measured or chosen on them; tau came from the
    # train-only final seeds, which chose it on validation.
    assert all(run["val"] is None for run in refit["runs"]) and refit["ensemble"]["val"] is None
    assert refit["decision"] == train_only["decision"] == rec["decision"]
    # The summary leads with the refit (as deployed), the train-only numbers beside it.
    mean = lambda entry: sum(run["test"]["accuracy"] for run in entry["runs"]) / len(entry["runs"])  # noqa: E731
    assert rec["test"]["accuracy"] == pytest.approx(mean(refit))
    assert rec["test_train_only"]["accuracy"] == pytest.approx(mean(train_only))
    assert rec["test_ensemble"]["accuracy"] == pytest.approx(refit["ensemble"]["test"]["accuracy"])
    # ... and faces the baselines refitted the same way.
    summary = json.loads((names["out"] / "summary.json").read_text())
    refitted = [b["test_refit" + ("_adjusted" if b["tau"] else "")]["accuracy"] for b in summary["baselines"]]
    refitted += [b["test_refit"]["accuracy"] for b in summary["baselines"]]
    assert rec["beats_baselines"]["accuracy"]["baseline"] == pytest.approx(max(refitted))
    # The exported model is the refit: its card counts the validation rows as training rows.
    card = json.loads((names["out"] / "model" / "model.json").read_text())
    counts = optuna.load_study(study_name="names", storage=names["storage"]).user_attrs["counts"]
    assert card["source"]["trained_on"] == "train+validation" and card["source"]["evaluation"] in \
        json.loads((names["out"] / "refits.json").read_text())["evaluations"]
    assert card["data"]["counts"]["train"] == [t + v for t, v in zip(counts["train"], counts["val"])]
    assert "training and validation rows together" in (names["out"] / "model" / "model.md").read_text()


@pytest.mark.slow
def test_the_recommended_model_is_exported_and_predicts(names):
    from search.export import load_model

    summary = json.loads((names["out"] / "summary.json").read_text())
    predictor = load_model(names["out"] / "model")
    assert predictor.spec.family == summary["recommended"]["family"]
    assert predictor.tau == pytest.approx(summary["recommended"]["decision"]["tau"])
    probabilities = predictor.predict_proba(["Nakamura", "Schmidt"])
    assert probabilities.shape == (2, 18) and probabilities.sum(1) == pytest.approx([1, 1], abs=1e-5)


@pytest.mark.slow
def test_baselines_written_by_other_code_are_recomputed(names, capsys):
    path = names["out"] / "baselines.json"
    saved = json.loads(path.read_text())
    assert saved["key"]["code"]
    stale = {"key": {**saved["key"], "code": "older"},
             "baselines": [{k: v for k, v in b.items() if k != "val"} for b in saved["baselines"]]}
    path.write_text(json.dumps(stale))
    report.main(["names", "--storage", names["storage"], "--out", str(names["out"].parent), "--seeds", "2",
                 "--baselines", "quick", "--workers", "2"])
    again = json.loads(path.read_text())
    assert again["key"] == saved["key"] and all("val" in b for b in again["baselines"])
    assert [b["test"] for b in again["baselines"]] == [b["test"] for b in saved["baselines"]]  # refit, same result


@pytest.mark.slow
def test_the_ngram_effect_compares_trials_with_and_without_the_ngram_part(tmp_path, data_cache, one_torch_thread):
    from search.evaluate import ranked
    from search.report import analysis, markdown
    storage = make_study("names", tmp_path, NAMES_DIR, {"family": "conv1d", "epochs": 1, "batch_size": 256},
                         {"ngrams": [0, 3]})
    study = optuna.load_study(study_name="names", storage=storage)
    values = {t.params["ngrams"]: t.value for t in ranked(study)}
    assert sorted(values) == [0, 3]
    effects = analysis.effects(ranked(study), "acc_bal_hmean")
    assert sorted((p[1], p[2]) for p in effects["ngrams"]) == sorted(values.items())
    text = "\n".join(markdown.effects({"metric": "acc_bal_hmean", "effects": effects}))
    assert "![ngrams](effect_ngrams.png)" in text
    assert (f"With an n-gram part: median {values[3]:.3f} over 1 trial; without: {values[0]:.3f} over 1 "
            f"({values[3] - values[0]:+.3f})") in text
    # Where every trial has the same value (HAR: no n-gram part), the effect is not shown.
    har_like = analysis.effects([t for t in ranked(study) if t.params["ngrams"] == 0], "acc_bal_hmean")
    assert "effect_ngrams" not in "\n".join(markdown.effects({"metric": "acc_bal_hmean", "effects": har_like}))


@pytest.mark.slow
def test_a_large_files_report_trains_its_task_entrys_final_seeds(shared_data, tmp_path, cli, one_torch_thread):
    """All the surnames as a user's CSV: over LARGE_FILE training strings, so without --seeds the report trains
    LARGE_FILE_SEEDS final seeds (the registered tasks' FINAL_SEEDS otherwise)."""
    table = write_csv(tmp_path / "surnames.csv", names_rows(folder=shared_data / "names"))
    storage = f"sqlite:///{tmp_path / 'studies.db'}"
    fit = cli("search.fit", str(table), "--trials", "1", "--storage", storage, "--workers", "1", "--seeds", "1",
              "--family", "linear", "--epochs", "1", "--ngrams", "0", "--imbalance", "none", "--decision", "argmax")
    assert fit.returncode == 0, fit.stderr
    report = cli("search.report.cli", "surnames", "--storage", storage, "--out", str(tmp_path / "reports"),
                 "--baselines", "none", "--rerank-seeds", "0", "--workers", "1", "--no-refit")
    assert report.returncode == 0, report.stderr
    summary = json.loads((tmp_path / "reports" / "surnames" / "summary.json").read_text())
    assert summary["recommended"]["seeds"] == defaults.final_seeds(defaults.LARGE_FILE_SEEDS)
