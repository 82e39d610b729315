"""Studies, objectives, reports and the command lines that run them.

The public names below are light to import; the report (`search.report`), figures and the
dashboard pull in matplotlib and optuna-dashboard and are imported from their modules.
"""
from .objective import STRATEGIES, Objective
from .train import METRICS
from .space import Space, Suggest
from .tasks import REGISTRY, TaskEntry, entry_of
from .study import DEFAULT_STORAGE, StudyConfig, StudyError, create_study, prepare_study, run_study
from .train import SeedResult, TrialSpec, train_seeds
from .workers import default_workers, run_workers

__all__ = ["DEFAULT_STORAGE", "METRICS", "Objective", "REGISTRY", "STRATEGIES", "SeedResult", "Space", "StudyConfig",
           "StudyError", "Suggest", "TaskEntry", "TrialSpec", "create_study", "default_workers", "entry_of",
           "prepare_study", "run_study", "run_workers", "train_seeds"]
