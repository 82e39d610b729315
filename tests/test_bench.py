"""bench/ scripts that measure the product: they must measure what the product does."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import NAMES_DIR

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_spread_tests_the_model_the_report_recommends(tmp_path, tiny_har_dir, cli):
    """bench/spread.py runs a study, then chooses and tests its recommendation exactly as search.report does."""
    spread = subprocess.run(
        [sys.executable, "bench/spread.py", "har", "--runs", "1", "--trials", "3", "--workers", "1", "--device", "cpu",
         "--dir", str(tmp_path), "--data", str(tiny_har_dir), "--final-seeds", "2", "--rerank-seeds", "2",
         "--extra", "--family linear --epochs 1 --seeds 2 --width 16"],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert spread.returncode == 0, spread.stderr
    row = re.search(r"^\s+0 .* #(\d+) linear (\S+) (\S+)±(\S+) (\S+)±\S+ +(\S+) +(\S+)$", spread.stdout, flags=re.M)
    assert row, spread.stdout
    report = cli("search.report.cli", "har", "--storage", f"sqlite:///{tmp_path / 'har-0.db'}",  # in this process
                 "--out", str(tmp_path / "reports"), "--seeds", "2", "--rerank-seeds", "2", "--baselines", "none",
                 "--workers", "1", "--device", "cpu", "--data", str(tiny_har_dir))
    assert report.returncode == 0, report.stderr
    rec = json.loads((tmp_path / "reports" / "har" / "summary.json").read_text())["recommended"]
    assert int(row[1]) == rec["trial"]
    assert float(row[2]) == pytest.approx(rec["choice_value"], abs=1e-4)
    assert float(row[3]) == pytest.approx(rec["test"]["accuracy"], abs=1e-3)
    assert float(row[5]) == pytest.approx(rec["test"]["balanced_accuracy"], abs=1e-3)
    assert float(row[6]) == pytest.approx(rec["test_ensemble"]["accuracy"], abs=1e-3)



@pytest.mark.slow
def test_fold_noise_trains_the_first_try_on_each_validation_fold_and_prints_its_seeds_beside_the_margin(tiny_har_dir):
    """bench/fold_noise.py: HAR's MiniRocket corner, seeds 50+f and 60+f on folds 0 and 1 of a tiny HAR copy."""
    done = subprocess.run([sys.executable, "bench/fold_noise.py", "har", "--seeds", "2", "--folds", "0,1",
                           "--data", str(tiny_har_dir)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "har: minirocket width 119, 20 epochs" in done.stdout
    rows = re.findall(r"^ +(\d) +(\d+) +([01]\.\d{4}) ([01]\.\d{4}) +(\S+) +(\S+) +(\S+) +(\S+)$", done.stdout, re.M)
    assert [row[0] for row in rows] == ["0", "1"], done.stdout
    for fold, examples, first, second, spread, std, error, ensemble in rows:
        assert float(spread) == pytest.approx(abs(float(first) - float(second)), abs=2e-4)
        assert 0 < float(error) < 0.5 and 0 <= float(ensemble) <= 1 and int(examples) > 10

def test_hybrid_mixes_the_network_the_report_recommends(tmp_path):
    """bench/hybrid.py takes the trial the study's report recommends, not merely its best search value."""
    import optuna
    from optuna.trial import create_trial
    sys.path.insert(0, str(ROOT / "bench"))
    from hybrid import network_trial
    study = optuna.create_study(study_name="names", direction="maximize")
    for value in (0.5, 0.7, 0.6):
        study.add_trial(create_trial(value=value, params={}, distributions={}))
    assert network_trial(study, None, tmp_path).number == 1  # no report: the best search value
    (tmp_path / "names").mkdir()
    (tmp_path / "names" / "summary.json").write_text(json.dumps({"study": "names", "recommended": {"trial": 2}}))
    assert network_trial(study, None, tmp_path).number == 2  # the report's recommendation
    assert network_trial(study, 0, tmp_path).number == 0  # --trial
    with pytest.raises(SystemExit) as error:
        network_trial(study, 7, tmp_path)
    assert error.value.code == 2


@pytest.mark.slow
def test_ngrams_compares_a_network_with_and_without_its_ngram_part():
    """bench/ngrams.py trains each configuration on validation only and prints one row per configuration."""
    done = subprocess.run([sys.executable, "bench/ngrams.py", "--only", "conv1d,conv1d+3", "--epochs", "1",
                           "--data", str(NAMES_DIR)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    rows = {m[0]: m[1:] for m in re.findall(r"^(conv1d\S*) +(\S+) +(\S+) / (\S+) \((\S+)\) +tau (\S+): (\S+) / (\S+) \((\S+)\)$",
                                            done.stdout, flags=re.M)}
    assert sorted(rows) == ["conv1d", "conv1d+3"], done.stdout
    for seconds, acc0, bal0, h0, tau, acc, bal, h in rows.values():
        assert float(h) >= float(h0) and 0 < float(bal) <= 1 and float(tau) >= 0  # the best tau is at least tau 0's
    assert rows["conv1d"][1:] != rows["conv1d+3"][1:]  # the n-gram part changes the scores
    bad = subprocess.run([sys.executable, "bench/ngrams.py", "--only", "transformer"], cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "unknown configuration(s) ['transformer']" in bad.stderr


def test_names_csv_writes_the_names_task_split_as_a_users_files(small_names_dir, tmp_path):
    """bench/names_csv.py: the training file holds the names task's training and validation surnames and the test
    file its test surnames, so that search.fit on them is tested on the names task's own test strings."""
    from data import load_file, load_names
    done = subprocess.run([sys.executable, "bench/names_csv.py", str(tmp_path), "--data", str(small_names_dir)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    names = load_names(small_names_dir)
    task = load_file(tmp_path / "surnames_TRAIN.csv", test=tmp_path / "surnames_TEST.csv")
    assert task.class_names == names.class_names and len(task.test) == len(names.test)
    assert len(task.train) + len(task.val) == len(names.train) + len(names.val)
    assert sorted(task.test.y.tolist()) == sorted(names.test.y.tolist())


def test_results_says_how_far_below_a_target_even_when_the_rounded_value_reads_as_the_target():
    sys.path.insert(0, str(ROOT / "bench"))
    from results import gap

    assert gap(0.976, 0.975) == gap(0.975, 0.975) == "met"
    assert gap(0.94, 0.975) == "missed by 3.5 points"
    assert gap(0.97483, 0.975) == "missed by 0.02 points"  # 0.975 to three decimals, yet below


VARIANTS = ("minirocket", "draws 3", "draws 6", "first differences")


@pytest.mark.slow
def test_minirocket_variants_keep_the_feature_count_and_score_each_on_validation(tiny_har_dir):
    """bench/minirocket_variants.py on a tiny HAR copy: its `minirocket` features are the family's as the training
    loop draws them for the seed, each variant has about MiniRocket's 9,996 features (a draw is a whole MiniRocket
    of a third or sixth of the width; the differences are a series one step shorter), and each is scored."""
    from dataclasses import replace

    import torch
    sys.path.insert(0, str(ROOT / "bench"))
    from minirocket_variants import variant

    from search.tasks import load, standard_of
    from search.train import train_seeds
    task = load("har", str(tiny_har_dir))
    spec = standard_of(task)
    found = {name: variant(name, spec, 50, task) for name in VARIANTS}
    assert {name: z.shape[1] for name, (z, _) in found.items()} == {
        "minirocket": 84 * 119, "draws 3": 3 * 84 * 40, "draws 6": 6 * 84 * 20, "first differences": 84 * (60 + 59)}
    assert all(len(z) == len(task.train) and len(zv) == len(task.val) for z, zv in found.values())
    (trained,) = train_seeds(replace(spec, epochs=1), task, [50], keep_models=True)
    torch.testing.assert_close(trained.model.transform(task.val.x, task.val.lengths), found["minirocket"][1])
    done = subprocess.run([sys.executable, "bench/minirocket_variants.py", "har", "--seeds", "2", "--folds", "0",
                           "--data", str(tiny_har_dir)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    rows = re.findall(r"^fold 0  (.+?) +([01]\.\d{4}) ([01]\.\d{4})   mean ([01]\.\d{4})$", done.stdout, re.M)
    assert [row[0] for row in rows] == list(VARIANTS), done.stdout
    for _, first, second, mean in rows:
        assert float(mean) == pytest.approx((float(first) + float(second)) / 2, abs=1e-4)


@pytest.mark.slow
def test_refit_gain_fits_ridge_and_the_head_on_fewer_and_on_all_training_subjects(tiny_har_dir):
    """bench/refit_gain.py on a tiny HAR copy: per fold and seed, ridge's and the head's validation accuracy with
    4 training subjects left out and with all, and the gain between them."""
    done = subprocess.run([sys.executable, "bench/refit_gain.py", "--folds", "0,1", "--seeds", "1",
                           "--data", str(tiny_har_dir)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    number = r"([01]\.\d{4})"
    rows = re.findall(rf"^ +(\d) +(\d+) +{number}  {number}  ([+-]\d\.\d{{4}}) +{number}  {number}  ([+-]\d\.\d{{4}})$",
                      done.stdout, re.M)
    assert [(row[0], row[1]) for row in rows] == [("0", "50"), ("1", "51")], done.stdout
    for _, _, ridge_fewer, ridge_all, ridge_gain, head_fewer, head_all, head_gain in rows:
        assert float(ridge_gain) == pytest.approx(float(ridge_all) - float(ridge_fewer), abs=2e-4)
        assert float(head_gain) == pytest.approx(float(head_all) - float(head_fewer), abs=2e-4)
    assert re.search(r"^mean gain: ridge [+-]\d\.\d{4}, head [+-]\d\.\d{4}$", done.stdout, re.M)
