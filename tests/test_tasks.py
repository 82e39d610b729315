"""search/tasks.py: the registry's entries, and the entry a user's file gets, sized to its data."""
from __future__ import annotations

from pathlib import Path

import aeon.datasets
import pytest

from conftest import names_rows, write_csv
from data import load_file
from search.defaults import FINAL_SEEDS, LARGE_FILE, LARGE_FILE_SEEDS
from search.space import Suggest, max_epochs
from search.tasks import HAR, NAMES, REGISTRY, RIDGE_LR, entry_of, epochs_for, for_data
from search.train import TrialSpec

AEON = Path(aeon.datasets.__file__).parent / "data"


@pytest.mark.parametrize("series, expected", [(10, (100, 200)), (40, (40, 80)), (150, (10, 20)), (7_000, (10, 20))])
def test_epoch_budgets_follow_the_number_of_series_as_ints(series, expected):
    assert epochs_for(series) == expected and all(type(e) is int for e in epochs_for(series))


@pytest.mark.parametrize("problem", ["GunPoint", "JapaneseVowels"])
def test_a_users_file_gets_an_entry_whose_space_every_family_can_train(problem):
    """The space follows the file's size, and MiniRocket's corner is its one warm start."""
    import optuna
    task = load_file(AEON / problem / f"{problem}_TRAIN.ts")
    entry = entry_of(task)
    assert entry.name == problem and entry.time_limit > 0
    (warm,) = entry.warm_starts  # MiniRocket's corner, inside the space
    study = optuna.create_study()
    study.enqueue_trial(entry.space.as_params(warm))  # as a new study queues it
    trial = study.ask()
    suggest = Suggest(trial)
    entry.space(suggest)
    assert suggest.values == warm and warm["family"] == "minirocket" and warm["width"] == 119
    # A small file: the head starts at MiniRocket's ridge, and the corner's learning rate keeps it there.
    assert warm["lr"] == RIDGE_LR and entry.space.overrides["minirocket"]["lrs"] == (RIDGE_LR, 1e-2)
    assert trial.params["lr:minirocket"] == RIDGE_LR
    for name, distribution in trial.distributions.items():  # no value outside its distribution (Optuna would warn)
        assert distribution._contains(distribution.to_internal_repr(trial.params[name])), name
    assert max_epochs(entry.space, {}, {}) == max(epochs_for(len(task.train)))
    for family in entry.space.families:  # each family's sample is a valid spec of the task's epochs
        suggest = Suggest(optuna.create_study().ask(), fixed={"family": family})
        entry.space(suggest)
        spec = TrialSpec(**suggest.values)
        assert type(spec.epochs) is int and 1 <= spec.epochs <= max_epochs(entry.space, {}, {})


def test_registered_tasks_are_their_entries_and_a_file_gets_one_sized_to_it():
    assert REGISTRY == {"har": HAR, "names": NAMES}
    task = load_file(AEON / "GunPoint" / "GunPoint_TRAIN.ts")
    assert for_data(task).name == "GunPoint" and entry_of(task).space.overrides["minirocket"]["max_width"] == 119


def test_only_a_file_small_enough_for_the_ridge_start_searches_learning_rates_that_keep_it(har_task):
    """HAR's windows as a user's file: too many for the ridge start (models.minirocket.RIDGE_MOST), so the corner
    trains its head at the usual rate, as HAR's own corner does."""
    from models.minirocket import RIDGE_MOST
    assert len(har_task.train) + len(har_task.val) > RIDGE_MOST
    entry = for_data(har_task)
    assert "lrs" not in entry.space.overrides["minirocket"] and entry.warm_starts[0]["lr"] == 3e-4
    assert HAR.warm_starts[0]["lr"] == 3e-4


def test_a_text_file_gets_the_ngram_corner_inside_a_space_sized_to_it(small_names_dir, tmp_path):
    """A surname,language CSV: half the epochs of series (strings are short), and the character n-gram corner,
    the field's first try for text, as its one warm start."""
    import optuna
    task = load_file(write_csv(tmp_path / "surnames.csv", names_rows(folder=small_names_dir)))
    entry = entry_of(task)
    assert entry.kind == "text" and entry.metric == "acc_bal_hmean"  # 18 languages, strongly imbalanced
    assert len(task.train) <= LARGE_FILE and entry.final_seeds == FINAL_SEEDS
    assert entry.space.epochs == epochs_for(len(task.train), least=10) == (5, 10)
    (warm,) = entry.warm_starts
    assert warm["family"] == "conv1d" and warm["ngrams"] == 3 and warm["decision"] == "logit_adjust"
    study = optuna.create_study()
    study.enqueue_trial(entry.space.as_params(warm))
    trial = study.ask()
    suggest = Suggest(trial)
    entry.space(suggest)
    assert suggest.values == warm
    for name, distribution in trial.distributions.items():
        assert distribution._contains(distribution.to_internal_repr(trial.params[name])), name


def test_a_large_file_gets_fewer_final_seeds_so_its_report_fits_the_budget(shared_data, tmp_path):
    """All the surnames as a CSV: more training strings than LARGE_FILE, so its report trains fewer seeds."""
    task = load_file(write_csv(tmp_path / "surnames.csv", names_rows(folder=shared_data / "names")))
    assert len(task.train) > LARGE_FILE and entry_of(task).final_seeds == LARGE_FILE_SEEDS < FINAL_SEEDS
    assert NAMES.final_seeds == HAR.final_seeds == FINAL_SEEDS  # the registered tasks keep theirs
