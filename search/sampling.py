"""A study's sampler and pruner, and the sampler wrapper that marks a new trial with its worker at once."""
from __future__ import annotations

import optuna

from .processes import WORKER, this_worker
from .studyconfig import StudyConfig

State = optuna.trial.TrialState


def make_pruner(name: str, max_epochs: int) -> optuna.pruners.BasePruner:
    median = optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=3)
    return {
        "median": median,
        "percentile": optuna.pruners.PercentilePruner(33.0, n_startup_trials=5, n_warmup_steps=3),
        # Steps are epochs of the longest budget (search/objective.py): the first rung is at a fifth of it.
        "hyperband": optuna.pruners.HyperbandPruner(min_resource=max(1, max_epochs // 5), max_resource=max_epochs,
                                                    reduction_factor=3),
        "successive_halving": optuna.pruners.SuccessiveHalvingPruner(min_resource=2, reduction_factor=3),
        "patient": optuna.pruners.PatientPruner(median, patience=2),
        "none": optuna.pruners.NopPruner(),
    }[name]


def make_sampler(config: StudyConfig) -> optuna.samplers.BaseSampler:
    if config.grid:
        # Every grid point is queued (queue_grid) and a run takes no more trials than points queued, so
        # the sampler never chooses. Not GridSampler: it fails on a queued trial that lacks its grid_id.
        return optuna.samplers.RandomSampler(seed=config.sampler_seed)
    # multivariate + group: TPE models the conditional (per-family) parameters jointly.
    return optuna.samplers.TPESampler(seed=config.sampler_seed, multivariate=True, group=True,
                                      n_startup_trials=10, constant_liar=True)


class MarkedSampler(optuna.samplers.BaseSampler):
    """The study's sampler, plus: a new trial gets its worker (host:pid) and a first heartbeat the
    moment it exists. Optuna ignores a RUNNING trial that has no heartbeat yet, so without this a
    run killed between a trial's creation and its first heartbeat left that trial RUNNING forever."""

    def __init__(self, sampler: optuna.samplers.BaseSampler, storage: optuna.storages.RDBStorage):
        self.sampler, self.storage = sampler, storage

    def before_trial(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if trial.state == State.RUNNING:  # not when a finished trial is opened again to read its note
            self.storage.set_trial_system_attr(trial._trial_id, WORKER, this_worker())
            if self.storage.get_heartbeat_interval():
                self.storage.record_heartbeat(trial._trial_id)
        self.sampler.before_trial(study, trial)

    def infer_relative_search_space(self, study, trial):
        return self.sampler.infer_relative_search_space(study, trial)

    def sample_relative(self, study, trial, search_space):
        return self.sampler.sample_relative(study, trial, search_space)

    def sample_independent(self, study, trial, param_name, param_distribution):
        return self.sampler.sample_independent(study, trial, param_name, param_distribution)

    def after_trial(self, study, trial, state, values) -> None:
        self.sampler.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        self.sampler.reseed_rng()
