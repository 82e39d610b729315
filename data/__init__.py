"""Dataset loaders: each returns a Task with train/val/test splits of padded sequences (search/tasks.py
registers them as tasks)."""
from .har import load_har
from .names import load_names
from .files import atomic_path, process_alive, write_text
from .source import cache_dir
from .task import DataError, Split, Task
from .user import load_file

__all__ = ["DataError", "atomic_path", "process_alive", "write_text", "Split", "Task", "cache_dir", "load_file",
           "load_har", "load_names"]
