"""search/rerank.py: the top trials retrained on fresh seeds and other validation folds before one is recommended."""
from __future__ import annotations

import math
import statistics

import optuna
import pytest
from optuna.trial import create_trial

from search import defaults
from conftest import HAR_ZIP
from search.tasks import Folds
from search.evaluate import ranked
from search.rerank import (Reranking, choice_loss, choice_value, cycle_folds, margin, recommend, rerank_spec,
                           standard_errors)
from search.tasks import REGISTRY
from search.train import TrialSpec

pytestmark = pytest.mark.usefixtures("one_torch_thread")
METRIC = "accuracy"


def leaders(*search: list[float], losses: list[list[float]] | None = None) -> list[optuna.trial.FrozenTrial]:
    """COMPLETE trials (numbers 0, 1, ...) whose seeds scored `search` on validation, and `losses` (each seed's
    last validation loss), as the objective records them."""
    study = optuna.create_study(direction="maximize")
    for i, values in enumerate(search):
        curves = [{"val_loss": [2.0, loss]} for loss in losses[i]] if losses else []
        study.add_trial(create_trial(value=sum(values) / len(values), params={},
                                     distributions={}, user_attrs={"seeds": list(range(len(values))),
                                                                   "seed_metrics": {METRIC: values},
                                                                   "curves": curves}))
    return study.trials


@pytest.mark.slow
def test_rerank_seeds_are_neither_search_seeds_nor_final_seeds():
    most_search_seeds = set(range(defaults.RERANK_SEED_BASE))  # StudyConfig allows --seeds up to this many
    most_rerank_seeds = set(defaults.rerank_seeds(defaults.FINAL_SEED_BASE - defaults.RERANK_SEED_BASE))
    assert defaults.rerank_seeds() == [50, 51, 52]
    assert not most_rerank_seeds & most_search_seeds
    assert not most_rerank_seeds & set(defaults.final_seeds(20))


@pytest.mark.slow
def test_each_rerank_seed_validates_on_another_fold_and_the_search_fold_is_never_one_of_them():
    har, names = REGISTRY["har"].folds, REGISTRY["names"].folds
    assert cycle_folds(har, [50, 51, 52]) == [1, 2, 3]
    assert cycle_folds(har, [50, 51, 52, 53]) == [1, 2, 3, 1]  # HAR has 4 folds: they cycle
    assert cycle_folds(names, list(range(50, 57))) == [1, 2, 3, 4, 5, 6, 1]


def test_a_trial_lucky_on_its_search_split_loses_to_one_that_holds_up_on_other_folds():
    lucky, steady = leaders([0.72, 0.70, 0.68], [0.70, 0.69, 0.68])
    entries = {0: {"folds": [1, 2, 3], "values": [0.60, 0.61, 0.62]},
               1: {"folds": [1, 2, 3], "values": [0.69, 0.70, None]}}  # None: a diverged seed
    # The mean of the fold means: the search's fold 0 (mean of its seeds) counts once, like each other fold.
    assert choice_value(lucky, entries[0], METRIC) == pytest.approx((0.70 + 0.60 + 0.61 + 0.62) / 4)
    assert choice_value(steady, entries[1], METRIC) == pytest.approx((0.69 + 0.69 + 0.70) / 3)
    # Two seeds on one fold are averaged first.
    assert choice_value(lucky, {"folds": [1, 1], "values": [0.60, 0.62]}, METRIC) == pytest.approx((0.70 + 0.61) / 2)
    assert recommend([lucky, steady], entries, METRIC).number == 1
    # Without re-ranking, the choice is the best search value.
    assert recommend([lucky, steady], {0: None, 1: None}, METRIC).number == 0
    assert choice_value(lucky, None, METRIC) == pytest.approx(lucky.value)


def test_equal_validation_values_go_to_the_lower_validation_loss():
    """On a small validation split every leader may score 1.0 (10 series): the validation loss, averaged over the
    folds as the choice value is, still tells them apart, before the trial number does."""
    first, surer, unknown = leaders([1.0, 1.0, 1.0], [1.0, 1.0, 1.0], [1.0, 1.0, 1.0],
                                    losses=[[0.09, 0.11, 0.10], [0.02, 0.04, 0.03], []])
    entries = {0: {"folds": [1, 2, 3], "values": [1.0, 1.0, 1.0], "losses": [0.2, 0.1, 0.3]},
               1: {"folds": [1, 2, 3], "values": [1.0, 1.0, 1.0], "losses": [0.3, 0.3, None]}}  # None: diverged
    assert choice_loss(first, entries[0]) == pytest.approx((0.10 + 0.2 + 0.1 + 0.3) / 4)
    assert choice_loss(surer, entries[1]) == pytest.approx((0.03 + 0.3 + 0.3) / 3)
    assert choice_loss(unknown, None) == math.inf  # no recorded loss (a bare trial): ranks last
    assert recommend([first, surer, unknown], entries, METRIC).number == 0  # 0.175 < 0.21
    assert recommend([first, surer, unknown], {}, METRIC).number == 1  # fold 0 alone: 0.03 < 0.10
    # A better choice value still wins whatever its loss; the search's ranking breaks ties the same way.
    assert recommend([first, surer], {0: {"folds": [1], "values": [0.9], "losses": [0.01]}}, METRIC).number == 1
    study = optuna.create_study(direction="maximize")
    study.add_trials([first, surer, unknown])
    assert [t.number for t in ranked(study)] == [1, 0, 2]


@pytest.mark.slow
def test_rerank_trains_each_seed_on_its_fold_on_validation_only_and_a_seed_fixes_the_result(har_task):
    spec = TrialSpec(family="linear", epochs=2, batch_size=256, lr=1e-2, decision="logit_adjust")
    folds = Folds(har_task, str(HAR_ZIP))
    first = rerank_spec(spec, folds, [50, 51], METRIC)
    assert first["seeds"] == [50, 51] and first["folds"] == [1, 2] and first["statuses"] == ["finished", "finished"]
    assert all(0 <= v <= 1 for v in first["values"])
    assert all(tau in (0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0) for tau in first["taus"])
    assert "test" not in first  # the test split is never read to choose
    # Each fold validates on other subjects than the search's split; the test subjects never change.
    subjects = [folds(f).info["subjects"] for f in (0, 1, 2)]
    assert all(set(s["val"]).isdisjoint(t["val"]) for i, s in enumerate(subjects) for t in subjects[i + 1:])
    assert all(not set(s["val"]) & set(s["train"]) and s["test"] == subjects[0]["test"] for s in subjects)
    assert rerank_spec(spec, folds, [50, 51], METRIC) == first
    other = rerank_spec(spec, folds, [52, 53], METRIC)
    assert other["folds"] == [1, 2] and other["values"] != first["values"]
    assert not any(math.isnan(v) for v in other["values"])


@pytest.mark.slow
def test_reranking_trains_each_seed_in_a_worker_process_and_caches_what_it_found(har_task, tmp_path):
    spec = TrialSpec(family="linear", epochs=1, batch_size=256, lr=1e-2)
    lines = []
    reranking = Reranking(tmp_path / "reranking.json", {"task": "har"}, [50, 51], METRIC, har_task, str(HAR_ZIP),
                          workers=2, write=lines.append)
    reranking.run([spec])
    entry = reranking.get(spec)
    keys = ("spec", "seeds", "folds", "values", "taus")
    assert reranking.trained == 1 and {k: entry[k] for k in keys} == \
        {k: v for k, v in rerank_spec(spec, Folds(har_task, str(HAR_ZIP)), [50, 51], METRIC).items() if k in keys}
    again = Reranking(tmp_path / "reranking.json", {"task": "har"}, [50, 51], METRIC, har_task, str(HAR_ZIP))
    again.run([spec])
    assert again.trained == 0 and again.get(spec) == entry
    # Other seeds or other data are other entries.
    assert Reranking(tmp_path / "reranking.json", {"task": "other"}, [50, 51], METRIC, har_task).get(spec) is None


def test_the_fields_first_try_is_kept_unless_a_leader_beats_it_by_more_than_a_standard_error():
    """The one-standard-error rule: on 54 validation series x 4 folds, a leader 0.005 above MiniRocket's corner is
    within the noise (the corner is kept); 0.04 above is not. A perfect score on few examples still has an error."""
    first, close, clear = leaders([0.95] * 3, [0.955] * 3, [0.99] * 3)
    entries = {0: {"folds": [1, 2, 3], "values": [0.95] * 3}, 1: {"folds": [1, 2, 3], "values": [0.955] * 3},
               2: {"folds": [1, 2, 3], "values": [0.99] * 3}}
    p = (0.955 * 216 + 2) / 220
    assert margin(0.955, 216) == pytest.approx(math.sqrt(p * (1 - p) / 220))  # about 0.014
    assert recommend([first, close], entries, METRIC).number == 1  # no standard: the best choice value
    assert recommend([first, close], entries, METRIC, standard=first, examples=216).number == 0
    assert recommend([first, close, clear], entries, METRIC, standard=first, examples=216).number == 2
    assert recommend([first, close], entries, METRIC, standard=close, examples=216).number == 1  # the best itself
    assert 0.03 < margin(1.0, 40) < 0.035  # 10 series x 4 folds, all right


def test_a_lead_that_changes_from_fold_to_fold_keeps_the_first_try_whatever_the_examples_say():
    """The rule's error is the larger of the examples' margin and the folds' standard error of the lead: a seed or a
    fold moves one configuration's validation value more than the binomial margin of thousands of examples."""
    first, steady, erratic = leaders([0.970] * 3, [0.975] * 3, [0.985] * 3)
    entries = {0: {"folds": [1, 2, 3], "values": [0.950, 0.940, 0.930]},
               1: {"folds": [1, 2, 3], "values": [0.955, 0.945, 0.935]},  # 0.005 above on every fold
               2: {"folds": [1, 2, 3], "values": [0.940, 0.960, 0.925]}}  # +0.015, -0.010, +0.020, -0.005
    examples = 4 * 1700
    assert margin(0.96, examples) < 0.003
    lead = choice_value(erratic, entries[2], METRIC) - choice_value(first, entries[0], METRIC)
    assert lead == pytest.approx(0.005)
    errors = standard_errors(erratic, first, entries, METRIC, examples)
    assert errors["folds"] == pytest.approx(statistics.stdev([0.015, -0.010, 0.020, -0.005]) / 2)  # about 0.0074
    assert errors["examples"] == pytest.approx(margin(choice_value(erratic, entries[2], METRIC), examples))
    assert recommend([first, erratic], entries, METRIC, standard=first, examples=examples).number == 0  # kept
    # The same lead on every fold has no spread: the examples' margin alone decides, and it is beaten.
    assert standard_errors(steady, first, entries, METRIC, examples)["folds"] == pytest.approx(0.0, abs=1e-12)
    assert recommend([first, steady], entries, METRIC, standard=first, examples=examples).number == 1
