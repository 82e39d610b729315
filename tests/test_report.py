"""The study report on HAR: a small real study on the tiny HAR folder, then `python -m search.report` on it: the
leaderboard of every family, the figures, the test split touched only by the final evaluation, the evaluation cache
and its key, and one line with exit code 2 for each bad study, storage, option, output or data.

Each study is built once per module (a few trials, 1-2 epochs, width 16) and reported with --seeds 2. The helpers
that build studies and read reports are shared with test_report_names.py and test_report_rules.py.
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import optuna
import pytest

from conftest import NAMES_DIR
from search.tasks import load as load_task
from search import report
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
