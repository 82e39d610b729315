"""The study report: small real studies on the real data, then `python -m search.report` on them.

Each study is built once per module (a few trials, 1-2 epochs, width 16) and reported with --seeds 2.
"""
from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from pathlib import Path

import optuna
import pytest

from conftest import DATA_ENV, NAMES_DIR, names_rows, write_csv
from search.tasks import load as load_task
from search import defaults, report
from search.study import StudyConfig, run_study
from search.tasks import REGISTRY

ROOT = Path(__file__).resolve().parents[1]
PNG = b"\x89PNG\r\n\x1a\n"
HAR_FAMILIES = ["dense", "linear", "conv1d"]
# The HAR report's final seeds: 3 for the top trials, 2 for a family's best that is not one, 1 for a pruned stand-in.
REPORT_SEEDS = ["--seeds", "3", "--family-seeds", "2", "--pruned-seeds", "1"]
pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")


def make_study(task: str, folder: Path, data: Path, fixed: dict, grid: dict) -> str:
    """A real study through the library the command line uses (one process start saved per study)."""
    storage = f"sqlite:///{folder / 'studies.db'}"
    config = StudyConfig(task=task, trials=4, storage=storage, seeds=2, pruner="none", fixed={"width": 16, **fixed},
                         grid=grid, command=f"python -m search.{task} --seeds 2 --width 16 ... (test study)")
    run_study(config, load_task(task, data), write=lambda line: None)
    return storage


def add_pruned_trial(storage: str, name: str, family: str) -> None:
    """A trial of another family that the pruner stopped after epoch 1: the attributes the objective leaves
    (copied from the first trial), its own spec, and one reported value. No trial of that family completed."""
    study = optuna.load_study(study_name=name, storage=storage)
    attrs = dict(study.trials[0].user_attrs)
    attrs.update(spec={**attrs["spec"], "family": family}, ended="pruned at epoch 1")
    study.add_trial(optuna.trial.create_trial(state=optuna.trial.TrialState.PRUNED, params={}, distributions={},
                                              user_attrs=attrs, intermediate_values={1: 0.5}))


def trial_attrs(storage: str, name: str) -> dict:
    study = optuna.load_study(study_name=name, storage=storage)
    return {t.number: (t.state.name, t.value, t.user_attrs) for t in study.trials}


@pytest.fixture(scope="module")
def data_cache(tmp_path_factory):
    """One data cache for the module's studies and reports; no data location from the environment."""
    folder = tmp_path_factory.mktemp("report-data-cache")
    with pytest.MonkeyPatch.context() as mp:
        for name in DATA_ENV:
            mp.delenv(name, raising=False)
        mp.setenv("DATA_CACHE", str(folder))
        yield folder


@pytest.fixture(scope="module")
def har(tmp_path_factory, data_cache, one_torch_thread, tiny_har_dir):
    """A 3-trial HAR grid (dense, linear, conv1d) on the tiny HAR folder and a pruned rnn trial, the trials before
    the report, and one report run (without the refit: the names report has it)."""
    folder = tmp_path_factory.mktemp("har-report")
    storage = make_study("har", folder, tiny_har_dir, {"epochs": 2, "batch_size": 32}, {"family": HAR_FAMILIES})
    add_pruned_trial(storage, "har", "rnn")
    before = trial_attrs(storage, "har")
    # The command line itself, in its own process.
    first = subprocess.run([sys.executable, "-m", "search.report", "har", "--storage", storage, "--out",
                            str(folder / "reports"), *REPORT_SEEDS, "--top", "2", "--baselines", "none",
                            "--workers", "2", "--no-refit"],
                           cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr
    out = folder / "reports" / "har"
    return {"storage": storage, "folder": folder, "before": before, "stdout": first.stdout, "out": out,
            "text": (out / "report.md").read_text()}


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


def section(text: str, title: str) -> str:
    """The Markdown under a heading, up to the next heading of the same or a higher level."""
    level = title.split(" ")[0]
    start = text.index(title + "\n")
    rest = text[start + len(title):]
    end = re.search(rf"^#{{1,{len(level)}}} ", rest, flags=re.M)
    return rest[:end.start()] if end else rest


def table_rows(markdown: str) -> list[list[str]]:
    rows = [line.strip("|").split("|") for line in markdown.splitlines() if line.startswith("|")]
    return [[cell.strip() for cell in row] for row in rows[2:]]  # skip the header and the |---| line


@pytest.mark.slow
def test_leaderboard_lists_every_family_searched(har):
    study = optuna.load_study(study_name="har", storage=har["storage"])
    complete = sorted((t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE),
                      key=lambda t: (-t.value, t.number))
    by_rank = list(dict.fromkeys(t.user_attrs["spec"]["family"] for t in complete))
    rows = table_rows(section(har["text"], "### Best configuration of each family, and the scikit-learn baselines"))
    # The families that completed a trial, best first, then the one only a pruned trial represents.
    assert sorted(by_rank) == sorted(HAR_FAMILIES) and [row[0] for row in rows] == [*by_rank, "rnn"]
    # Val and test as mean ± std over the 3 final seeds of the --top 2 trials; --family-seeds 2: a family's best
    # that is not a top trial; --pruned-seeds 1: the rnn family, whose only trial was pruned (†), on one seed.
    labels = {row[0]: row[1].split(" ", 1)[1] if " " in row[1] else "" for row in rows}
    assert sorted(labels.values()) == ["", "", "(1 seed)", "(2 seeds)"] and labels["rnn"] == "(1 seed)"
    assert rows[-1][4] == "0.500 †"
    for row in rows:
        assert all(("±" in cell) != (labels[row[0]] == "(1 seed)") for cell in row[5:11]), row
    assert "a family's best that is not a top trial, and so never the recommendation: seeds 100–101" in har["text"]
    assert "represented by a pruned trial: seed 100, `--pruned-seeds`" in har["text"]
    for title in ("## Search", "## Data", "## Reproduce", "## Recommendation", "## Learning curves",
                  "## Confusion matrices (test)", "## Accuracy against balanced accuracy",
                  "## Effects seen across trials", "## Class imbalance", "## Seed robustness", "## Issues spotted",
                  "## Optuna's views"):
        assert f"\n{title}\n" in har["text"], title
    assert "python -m search.report har --storage" in section(har["text"], "## Reproduce")


@pytest.mark.slow
def test_figures_are_png_files_and_every_link_resolves(har):
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", har["text"])
    expected = {"curves_train_loss.png", "curves_val_loss.png", "curves_val_accuracy.png", "effect_width.png",
                "effect_layers.png", "effect_batch_size.png", "effect_clipnorm.png", "imbalance_per_class.png",
                "optuna_history.png", "frontier.png"} | {f"confusion_{f}.png" for f in HAR_FAMILIES}
    assert expected <= set(links)
    for link in links:
        file = har["out"] / link
        assert file.is_file(), link
        data = file.read_bytes()
        assert data.startswith(PNG) and len(data) > 5000, (link, len(data))
    for link in links:  # every figure has a caption line right after it
        assert re.search(rf"!\[[^\]]*\]\({re.escape(link)}\)\n\n\*[^*]+\*\n", har["text"]), link


def expected_specs(storage: str, name: str, task: str, recommended: dict, top: int = 3, families: bool = True
                   ) -> set[str]:
    """What the final evaluation may touch: chosen from COMPLETE trials by validation value only (the
    recommended spec, one of the top, is retrained with each imbalance strategy), and for a family without one
    its pruned trial with the best last value; families=False: all but the families' best that are not top trials."""
    study = optuna.load_study(study_name=name, storage=storage)
    ranked = sorted((t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE),
                    key=lambda t: (-t.value, t.number))
    specs, best_of_family, leaders = [], set(), []
    for t in ranked:
        spec = t.user_attrs["spec"]
        if spec["family"] not in best_of_family:
            best_of_family.add(spec["family"])
            specs.append(spec)
        if len(leaders) < top and spec not in leaders:
            leaders.append(spec)
    pruned = sorted((t for t in study.trials if t.state == optuna.trial.TrialState.PRUNED),
                    key=lambda t: (-t.intermediate_values[max(t.intermediate_values)], t.number))
    for t in pruned:
        if t.user_attrs["spec"]["family"] not in best_of_family:
            best_of_family.add(t.user_attrs["spec"]["family"])
            specs.append(t.user_attrs["spec"])
    assert recommended in leaders
    specs = specs if families else []
    specs += leaders + [{**recommended, "imbalance": value} for value in list(REGISTRY[task].space.imbalance)]
    return {json.dumps(spec, sort_keys=True) for spec in specs}


def has_key(value, key: str) -> bool:
    if isinstance(value, dict):
        return key in value or any(has_key(v, key) for v in value.values())
    if isinstance(value, list):
        return any(has_key(v, key) for v in value)
    return False


@pytest.mark.slow
def test_test_split_is_touched_only_by_the_final_evaluation(har):
    # The search stored no test metric, and the report wrote nothing into the study.
    assert har["before"] and not any(has_key(attrs, "test") for _, _, attrs in har["before"].values())
    assert trial_attrs(har["storage"], "har") == har["before"]
    # Test-split results exist only for the configurations the validation values selected.
    cache = json.loads((har["out"] / "evaluations.json").read_text())
    entries = cache["evaluations"].values()
    recommended = json.loads((har["out"] / "summary.json").read_text())["recommended"]["spec"]
    assert {json.dumps(e["spec"], sort_keys=True) for e in entries} == \
        expected_specs(har["storage"], "har", "har", recommended, top=2)
    # The imbalance comparison retrains only what HAR's space offers: no logit_adjust (5 seeds nobody chose).
    assert "logit_adjust" not in {e["spec"]["imbalance"] for e in entries}
    counts = optuna.load_study(study_name="har", storage=har["storage"]).user_attrs["counts"]
    tops = expected_specs(har["storage"], "har", "har", recommended, top=2, families=False)
    for entry in entries:
        # Never a search seed (0, 1); a family's best that is not a top trial on the first 2 final seeds, the
        # pruned stand-in on the first only.
        top = json.dumps(entry["spec"], sort_keys=True) in tops
        seeds = [100, 101, 102] if top else [100] if entry["spec"]["family"] == "rnn" else [100, 101]
        assert [run["seed"] for run in entry["runs"]] == seeds
        for run in entry["runs"]:
            assert sum(map(sum, run["test"]["confusion"])) == sum(counts["test"])
            assert 0 <= run["test"]["accuracy"] <= 1
    # The re-ranking that chose the recommendation trained the top configurations on seeds 50 and 51
    # (neither a search seed nor a final seed) and kept validation values only.
    reranked = json.loads((har["out"] / "reranking.json").read_text())["entries"].values()
    assert len(reranked) == 2 and not any(has_key({k: v for k, v in e.items() if k != "data"}, "test")
                                          for e in reranked)  # data: the split sizes that identify the data
    assert all(e["seeds"] == [50, 51] and all(0 <= v <= 1 for v in e["values"]) for e in reranked)
    # And in the code: only search/evaluate.py asks train_seeds for test metrics.
    callers = [p.name for p in (ROOT / "search").rglob("*.py") if re.search(r"train_seeds\([^)]*test=True", p.read_text())]
    assert callers == ["evaluate.py"]
    # --no-refit: the recommendation as evaluated above, trained on the training split only.
    summary = json.loads((har["out"] / "summary.json").read_text())["recommended"]
    assert summary["trained_on"] == "train" and summary["test_train_only"] is None
    assert not (har["out"] / "refits.json").exists() and "--no-refit" in har["text"]


@pytest.mark.slow
def test_second_run_reuses_the_cache_and_writes_the_same_text(har, capsys):
    cache, reranked = har["out"] / "evaluations.json", har["out"] / "reranking.json"
    saved, stamp = cache.read_bytes(), cache.stat().st_mtime_ns
    reranked_stamp = reranked.stat().st_mtime_ns
    assert "0 evaluations reused" in har["stdout"] and "0 configurations trained" not in har["stdout"]
    # In this process (the first run was a subprocess): the same entry point, without a second start-up.
    report.main(["har", "--storage", har["storage"], "--out", str(har["folder"] / "reports"), *REPORT_SEEDS,
                 "--top", "2", "--baselines", "none", "--no-refit"])
    assert "0 configurations trained" in capsys.readouterr().out
    assert cache.read_bytes() == saved and cache.stat().st_mtime_ns == stamp
    assert reranked.stat().st_mtime_ns == reranked_stamp  # nothing re-ranked again
    assert (har["out"] / "report.md").read_text() == har["text"]


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


def error_line(argv: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as exit_:
        report.main(argv)
    err = capsys.readouterr().err.strip()
    assert exit_.value.code == 2 and len(err.splitlines()) == 1, err
    return err


@pytest.mark.slow
def test_missing_or_empty_study_and_bad_storage_exit_2_with_one_line(har, tmp_path, capsys):
    out = tmp_path / "reports"
    missing = tmp_path / "missing.db"
    err = error_line(["har", "--storage", f"sqlite:///{missing}", "--out", str(out)], capsys)
    assert err.startswith(f"error: --storage 'sqlite:///{missing}': no such SQLite file") and not missing.exists()
    err = error_line(["har", "--storage", har["storage"], "--study-name", "nope", "--out", str(out)], capsys)
    assert err == f"error: study 'nope' not found in {har['storage']} (studies there: har)"
    empty = f"sqlite:///{tmp_path / 'empty.db'}"
    optuna.create_study(study_name="har", storage=empty)
    assert error_line(["har", "--storage", empty, "--out", str(out)], capsys) == \
        f"error: study 'har' has no complete trial in {empty}"
    assert error_line(["har", "--storage", "no-such-scheme://x", "--out", str(out)], capsys).startswith("error: --storage")
    assert error_line(["har", "--storage", empty, "--seeds", "0"], capsys) == "error: --seeds must be an int >= 1, got 0"
    assert error_line(["har", "--storage", empty, "--pruned-seeds", "0"], capsys) == \
        "error: --pruned-seeds must be an int >= 1, got 0"
    assert error_line(["har", "--storage", empty, "--rerank-seeds", "-1"], capsys) == \
        "error: --rerank-seeds must be an int from 0 to 50, got -1"
    nowhere = str(tmp_path / "no-such-data")
    assert error_line(["har", "--storage", har["storage"], "--data", nowhere, "--out", str(out)], capsys) == \
        f"error: --data {nowhere!r}: no such file or folder"
    assert not out.exists()


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
def test_cache_key_follows_the_training_code(tmp_path, monkeypatch):
    """A change to what the training code does changes the fingerprint, hence every evaluation's key: nothing stale
    is reused. A change to its comments or docstrings changes nothing: the cached results stay valid."""
    import shutil

    from search import cache
    from search.train import TrialSpec

    for folder in ("data", "models", "search"):
        shutil.copytree(ROOT / folder, tmp_path / folder, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(cache, "ROOT", tmp_path)
    before = cache.code_fingerprint()
    assert before == cache.code_fingerprint()
    spec, data = TrialSpec(family="linear"), {"task": "har"}
    key = cache.cache_key(spec, [100], data, "accuracy", before)
    runs = tmp_path / "search" / "runs.py"
    text = runs.read_text()
    docstring = text.splitlines()[0]
    runs.write_text(text.replace(docstring, '"""Reworded."""', 1) + "\n# a comment added\n")
    assert cache.code_fingerprint() == before  # comments and docstrings: the same code
    runs.write_text(text + "\nCHANGED = 1\n")
    after = cache.code_fingerprint()
    assert after != before and cache.cache_key(spec, [100], data, "accuracy", after) != key
    (tmp_path / "search" / "report" / "markdown.py").write_text("# rendering only\n")
    assert cache.code_fingerprint() == after  # rendering is not training: the cache stays valid
    # The baselines' cache follows their own code too (a baselines.json from older code lacked a metric).
    baselines = cache.code_fingerprint(cache.BASELINE_CODE)
    (tmp_path / "search" / "baselines.py").write_text((tmp_path / "search" / "baselines.py").read_text() + "\nCHANGED = 1\n")
    assert cache.code_fingerprint(cache.BASELINE_CODE) != baselines and cache.code_fingerprint() == after


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
def test_unwritable_output_and_other_data_exit_2_before_training(har, tmp_path, capsys, small_names_dir):
    in_the_way = tmp_path / "a-file"
    in_the_way.write_text("not a folder")
    err = error_line(["har", "--storage", har["storage"], "--out", str(in_the_way)], capsys)
    assert err == f"error: --out: {in_the_way} is a file, not a folder"
    other = tmp_path / "two-languages"
    other.mkdir()
    for language in ("English", "Scottish"):
        (other / f"{language}.txt").write_text((NAMES_DIR / f"{language}.txt").read_text())
    make_study("names", tmp_path, small_names_dir, {"family": "linear", "epochs": 1}, {})
    err = error_line(["names", "--storage", f"sqlite:///{tmp_path / 'studies.db'}", "--data", str(other),
                      "--out", str(tmp_path / "out")], capsys)
    assert "differ from those the study recorded" in err and not (tmp_path / "out").exists()


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
