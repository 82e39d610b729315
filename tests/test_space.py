"""search/space.py: a family's overrides get Optuna names of their own, so one study samples them all."""
from __future__ import annotations

import optuna
import pytest

from search.space import Space, Suggest, max_epochs, spec_fields
from search.tasks import HAR, RANDOM_KERNELS
from search.train import TrialSpec


def test_an_overridden_family_samples_its_own_epochs_and_widths_in_the_same_study():
    space = Space(families=("conv1d", "minirocket"), max_width=64, epochs=(10, 20),
                  overrides={"minirocket": {"epochs": (1, 2), "max_width": 119}})
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=0, multivariate=True, group=True,
                                                                   n_startup_trials=4))
    seen = {"conv1d": set(), "minirocket": set()}
    for _ in range(30):  # TPE past its start-up trials: one study-wide distribution per Optuna name
        trial = study.ask()
        suggest = Suggest(trial)
        space(suggest)
        spec = TrialSpec(**suggest.values)
        seen[spec.family].add(spec.epochs)
        if spec.family == "minirocket":
            assert {"epochs:minirocket", "width:minirocket"} <= set(trial.params) and "epochs" not in trial.params
            assert 16 <= spec.width <= 119
        else:
            assert "epochs" in trial.params and spec.width <= 64
        study.tell(trial, spec.width / 119)
    assert seen["conv1d"] <= {10, 20} and seen["minirocket"] <= {1, 2} and all(seen.values())
    assert max_epochs(space, {}, {}) == 20


def test_a_fixed_value_pins_an_overridden_field_too():
    trial = optuna.create_study().ask()
    suggest = Suggest(trial, fixed={"family": "minirocket", "epochs": 3})
    HAR.space(suggest)
    assert suggest.values["epochs"] == 3 and trial.params["epochs:minirocket"] == 3


def test_warm_starts_are_queued_under_the_names_the_space_suggests():
    (mini,) = [w for w in HAR.warm_starts if w["family"] == "minirocket"]
    assert HAR.space.as_params(mini)["epochs:minirocket"] == mini["epochs"] in RANDOM_KERNELS["epochs"]
    assert HAR.space.as_params({"family": "conv1d", "epochs": 10}) == {"family": "conv1d", "epochs": 10}


@pytest.mark.parametrize("override", [{"epochs": (50,)}, {}])
def test_the_pruners_longest_budget_counts_every_family(override):
    space = Space(families=("conv1d", "minirocket"), epochs=(10, 20), overrides={"minirocket": override})
    assert max_epochs(space, {}, {}) == max(20, *override.get("epochs", (0,)))


def test_a_trials_params_read_back_as_its_spec_fields():
    (mini,) = [w for w in HAR.warm_starts if w["family"] == "minirocket"]
    assert spec_fields(HAR.space.as_params(mini)) == mini  # what a bare trial (no recorded spec) rebuilds from
