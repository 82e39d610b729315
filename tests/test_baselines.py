"""Classical baselines on the real data: surname decoding, the names logreg, the HAR SVM, choice on validation only."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.ensemble import HistGradientBoostingClassifier

from conftest import NAMES_DIR
from data import Split, Task
from data.names import encode
from search.baselines import UNKNOWN_CHAR, best_index, har_features, main, run_baselines, surnames
from search.train import scores


def alphabet_index(alphabet: str) -> dict[str, int]:
    return {ch: i + 1 for i, ch in enumerate(alphabet)}


def test_surnames_decode_and_reencode_to_the_same_tensor(names_task):
    alphabet = names_task.info["alphabet"]
    names = surnames(names_task.train, alphabet)
    x, lengths = encode(names, alphabet_index(alphabet), names_task.seq_len)
    assert len(names) == len(names_task.train)
    assert torch.equal(x, names_task.train.x) and torch.equal(lengths, names_task.train.lengths)


def test_a_character_outside_the_alphabet_decodes_to_the_unknown_character(names_task):
    alphabet = names_task.info["alphabet"]
    assert "#" not in alphabet
    x, lengths = encode(["Ab#c"], alphabet_index(alphabet), names_task.seq_len)
    assert surnames(Split(x, torch.zeros(1, dtype=torch.long), lengths), alphabet) == [f"Ab{UNKNOWN_CHAR}c"]


def test_names_logreg_beats_the_majority_class_and_returns_log_probabilities(names_task):
    results = run_baselines(names_task, quick=True, metric="balanced_accuracy")
    assert [r.name for r in results] == ["char-ngram-logreg", "char-ngram-logreg-balanced"]
    y_val = names_task.val.y.numpy()
    majority = np.full_like(y_val, np.bincount(names_task.train.y.numpy()).argmax())
    majority_balanced = scores(y_val, majority, 18)["balanced_accuracy"]  # 1/18
    for result in results:
        assert result.val_logprob.shape == (len(names_task.val), 18)
        assert result.test_logprob.shape == (len(names_task.test), 18)
        for logprob in (result.val_logprob, result.test_logprob):
            np.testing.assert_allclose(np.exp(logprob).sum(1), 1, atol=1e-6)
        assert result.chosen["C"] in (1, 10) and f"C={result.chosen['C']}" in result.description
        assert scores(y_val, result.val_logprob.argmax(1), 18)["balanced_accuracy"] > 3 * majority_balanced


@pytest.fixture(scope="module")
def small_har_baselines(small_har):
    return run_baselines(small_har, quick=True)


def test_har_features_read_the_raw_signals(small_har):
    features = har_features(small_har.train, small_har.info)
    assert features.shape == (len(small_har.train), 174) and np.isfinite(features).all()
    gravity = features[:, -6:-3]  # unit vector of the mean total acceleration, in g
    np.testing.assert_allclose(np.linalg.norm(gravity, axis=1), 1, atol=1e-6)
    # Unstandardised: the mean total_acc magnitude (feature 11 of the means) is about 1 g at rest or walking.
    assert 0.8 < features[:, 11].mean() < 1.2


def test_har_svm_beats_chance(small_har, small_har_baselines):
    by_name = {r.name: r for r in small_har_baselines}
    assert set(by_name) == {"features-svm-rbf", "features-hgb"}
    for result in small_har_baselines:
        assert result.val_logprob.shape == (len(small_har.val), 6)
        assert result.test_logprob.shape == (len(small_har.test), 6)
    svm = by_name["features-svm-rbf"]
    assert scores(small_har.val.y.numpy(), svm.val_logprob.argmax(1), 6)["accuracy"] > 3 / 6  # chance is 1/6


def test_the_choice_uses_the_validation_split_only(small_har, small_har_baselines):
    generator = torch.Generator().manual_seed(0)
    test = small_har.test
    scrambled = Split(test.x[torch.randperm(len(test), generator=generator)],
                      test.y[torch.randperm(len(test), generator=generator)], test.lengths)
    task = Task("har", small_har.train, small_har.val, scrambled, list(small_har.class_names), dict(small_har.info))
    again = run_baselines(task, quick=True)
    for before, after in zip(small_har_baselines, again):
        assert after.chosen == before.chosen
        np.testing.assert_array_equal(after.val_logprob, before.val_logprob)
        assert not np.array_equal(after.test_logprob, before.test_logprob)


def test_refit_fits_the_chosen_model_again_on_training_and_validation(small_har, small_har_baselines):
    refitted = run_baselines(small_har, quick=True, refit=True)
    for before, after in zip(small_har_baselines, refitted):
        assert before.refit_test_logprob is None and after.chosen == before.chosen
        np.testing.assert_array_equal(after.test_logprob, before.test_logprob)  # the plain fit is unchanged
        assert after.refit_test_logprob.shape == after.test_logprob.shape
        assert not np.allclose(after.refit_test_logprob, after.test_logprob)  # 200 more windows moved it
    # The gradient-boosted trees (deterministic) refitted by hand with the chosen hyper-parameters.
    hgb = refitted[1]
    features = {s: har_features(getattr(small_har, s), small_har.info) for s in ("train", "val", "test")}
    by_hand = HistGradientBoostingClassifier(max_leaf_nodes=hgb.chosen["max_leaf_nodes"], max_iter=hgb.chosen["max_iter"],
                                             early_stopping=False, random_state=0)
    by_hand.fit(np.concatenate([features["train"], features["val"]]),
                np.concatenate([small_har.train.y.numpy(), small_har.val.y.numpy()]))
    np.testing.assert_allclose(np.exp(hgb.refit_test_logprob), by_hand.predict_proba(features["test"]), atol=1e-9)


def test_best_index_takes_the_best_validation_score_and_the_first_on_ties():
    y_val = np.array([0, 0, 0, 1])
    always_0 = np.log(np.array([[0.9, 0.1]] * 4))
    perfect = np.log(np.array([[0.9, 0.1]] * 3 + [[0.1, 0.9]]))
    assert best_index([always_0, perfect, perfect], y_val, "accuracy", 2) == 1
    assert best_index([always_0, always_0], y_val, "balanced_accuracy", 2) == 0


def test_cli_bad_metric_and_missing_data_exit_2_with_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["names", "--metric", "auc"])
    assert exc.value.code == 2 and "--metric" in capsys.readouterr().err
    assert main(["names", "--data", str(tmp_path / "absent")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error:") and "absent" in err


def test_cli_prints_one_line_per_baseline(tmp_path, capsys):
    small = tmp_path / "names"  # the first 60 lines of every real language file
    small.mkdir()
    for file in sorted(NAMES_DIR.glob("*.txt")):
        lines = file.read_text(encoding="utf-8").splitlines()[:60]
        (small / file.name).write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert main(["names", "--data", str(small), "--quick", "--metric", "accuracy"]) == 0
    out = capsys.readouterr().out
    assert "char-ngram-logreg " in out and "char-ngram-logreg-balanced" in out and "test acc" in out


def test_cli_on_one_class_data_gives_the_studies_data_check(tmp_path, capsys):
    one = tmp_path / "names"
    one.mkdir()
    (one / "English.txt").write_bytes((NAMES_DIR / "English.txt").read_bytes())
    assert main(["names", "--data", str(one), "--quick"]) == 2
    captured = capsys.readouterr()
    assert captured.err == f"error: data {one}: 1 class (English); a classifier needs at least 2\n"  # not scikit-learn's
    assert captured.out == ""
