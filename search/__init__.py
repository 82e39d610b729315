"""Studies, objectives, reports and the command lines that run them.

The public names below are light to import; the report (`search.report`), figures and the
dashboard pull in matplotlib and optuna-dashboard and are imported from their modules.
"""
from . import signals

signals.on_import()  # first: Ctrl-C during the seconds of imports below is one line, not a traceback

from .objective import STRATEGIES, Objective  # noqa: E402
from .train import METRICS  # noqa: E402
from .space import Space, Suggest  # noqa: E402
from .tasks import REGISTRY, TaskEntry, entry_of  # noqa: E402
from .study import DEFAULT_STORAGE, StudyConfig, StudyError, create_study, prepare_study, run_study  # noqa: E402
from .train import SeedResult, TrialSpec, train_seeds  # noqa: E402
from .workers import default_workers, run_workers  # noqa: E402

__all__ = ["DEFAULT_STORAGE", "METRICS", "Objective", "REGISTRY", "STRATEGIES", "SeedResult", "Space", "StudyConfig",
           "StudyError", "Suggest", "TaskEntry", "TrialSpec", "create_study", "default_workers", "entry_of",
           "prepare_study", "run_study", "run_workers", "train_seeds"]
