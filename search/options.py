"""The options several command lines share, defined once and handed to argparse as `parents`."""
from __future__ import annotations

import argparse

from . import defaults

OPTIONS = {
    "storage": (("--storage",), dict(default=defaults.STORAGE,
                                     help="the studies' SQLAlchemy URL (default %(default)s); a password in it is "
                                          "never printed or stored")),
    "study_name": (("--study-name",), dict(default=None, help="the study (default: the task or study named first)")),
    "artifacts": (("--artifacts",), dict(default=None, metavar="DIR",
                                         help="the studies' figure folder (default: artifacts/ beside a SQLite file, "
                                              "else ./artifacts)")),
    "task_data": (("--data",), dict(default=None, help="data folder or archive (else $HAR_DATA/$NAMES_DATA, cache, "
                                                       "download)")),
    "study_data": (("--data",), dict(default=None, help="data folder or archive (default: the source the study "
                                                        "recorded)")),
    "device": (("--device",), dict(choices=["auto", "cpu", "cuda"], default=defaults.DEVICE,
                                   help="where to train (default %(default)s: CUDA when there is one)")),
    "threads": (("--threads",), dict(type=int, default=defaults.THREADS,
                                     help="torch and OpenMP threads per process (default %(default)s: faster than 2 "
                                          "on shared cores, see bench/README.md; use more processes instead)")),
    "workers": (("--workers",), dict(type=int, default=None,
                                     help="processes, one torch thread each (default: one per core; 1 for an "
                                          "in-memory storage)")),
}


def common(*names: str) -> argparse.ArgumentParser:
    """A parent parser holding the named options: argparse.ArgumentParser(parents=[common("storage", ...)])."""
    p = argparse.ArgumentParser(add_help=False)
    for name in names:
        flags, settings = OPTIONS[name]
        p.add_argument(*flags, **settings)
    return p
