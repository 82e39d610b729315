"""Studies, objectives, reports and the command lines that run them.

The public names below are light to import; the report (`search.report`), figures and the
dashboard pull in matplotlib and optuna-dashboard and are imported from their modules.
"""
from .objective import STRATEGIES, Objective
from .train import METRICS
from .space import SPACES, Suggest, har_space, names_space
from .study import DEFAULT_STORAGE, StudyConfig, StudyError, create_study, prepare_study, run_study
from .train import SeedResult, TrialSpec, train_seeds
from .workers import default_workers, run_workers

__all__ = ["DEFAULT_STORAGE", "METRICS", "Objective", "SPACES", "STRATEGIES", "SeedResult", "StudyConfig",
           "StudyError", "Suggest", "TrialSpec", "create_study", "default_workers", "har_space", "names_space",
           "prepare_study", "run_study", "run_workers", "train_seeds"]
