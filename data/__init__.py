"""Dataset loaders: each returns a Task with train/val/test splits of padded sequences."""
from . import har, names
from .har import load_har
from .names import load_names
from .files import atomic_path, process_alive, write_text
from .source import cache_dir
from .task import DataError, Split, Task
from .user import load_file

LOADERS = {"har": load_har, "names": load_names}
FOLDS = {"har": har.FOLDS, "names": names.FOLDS}  # validation folds; fold 0 is the search's split


def load_task(name: str, path=None, fold: int = 0) -> Task:
    if name not in LOADERS:
        raise DataError(f"task must be one of {sorted(LOADERS)}, got {name!r}")
    return LOADERS[name](path, fold=fold)


class Folds:
    """A task's validation folds, each loaded once when first asked for (fold 0 is `task`); source: where
    the other folds are loaded from. refit=True: the fold with its validation rows in training (Task.refit)."""

    def __init__(self, task: Task, source=None):
        self.source, self.tasks = source, {(0, False): task}

    def __call__(self, fold: int, refit: bool = False) -> Task:
        if (fold, refit) not in self.tasks:
            self.tasks[fold, refit] = self(fold).refit() if refit else \
                load_task(self.tasks[0, False].name, self.source, fold=fold)
        return self.tasks[fold, refit]


__all__ = ["DataError", "FOLDS", "Folds", "LOADERS", "atomic_path", "process_alive", "write_text", "Split", "Task", "cache_dir", "load_file", "load_har", "load_names", "load_task"]
