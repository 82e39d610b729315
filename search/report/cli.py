"""python -m search.report TASK: the command line of the report (parse, build, print)."""
from __future__ import annotations

import argparse
import sys
import warnings

import optuna
import torch

from data import DataError
from .. import defaults
from ..options import common
from ..storage import StorageError
from ..studyconfig import StudyError
from .build import ReportConfig, ReportError, build


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m search.report",
                                parents=[common("storage", "study_name", "study_data", "device", "workers")],
                                description="Write a Markdown report (with PNG figures, summary.json and the exported "
                                            "recommended model) of a study, with final test-split evaluations.")
    p.add_argument("task", help="a registered task (har, names), or a user's file's study (python -m search.fit PATH)")
    p.add_argument("--seeds", type=int, default=None,
                   help=f"final seeds per evaluation: {defaults.FINAL_SEED_BASE}, {defaults.FINAL_SEED_BASE + 1}, ... "
                        f"(never a search seed; 1 to {defaults.MAX_FINAL_SEEDS}; default {defaults.FINAL_SEEDS}, "
                        f"{defaults.LARGE_FILE_SEEDS} for a user's file of more than {defaults.LARGE_FILE:,} "
                        "training examples)")
    p.add_argument("--family-seeds", type=int, default=defaults.FAMILY_SEEDS,
                   help="final seeds of a family's best trial that is not a top trial, the first of --seeds "
                        "(default %(default)s)")
    p.add_argument("--pruned-seeds", type=int, default=defaults.PRUNED_SEEDS,
                   help="final seeds of a family none of whose trials completed (its best pruned trial stands in "
                        "for it, retrained with its full epoch budget), the first of --family-seeds "
                        "(default %(default)s)")
    p.add_argument("--top", type=int, default=3,
                   help="top configurations overall to re-rank and evaluate; the recommendation is one of them "
                        "(default 3)")
    p.add_argument("--rerank-seeds", type=int, default=None,
                   help=f"seeds re-ranking the top configurations on validation: {defaults.RERANK_SEED_BASE}, "
                        f"{defaults.RERANK_SEED_BASE + 1}, ... (default: as many as the search used; 0: recommend the "
                        "best search value)")
    p.add_argument("--out", default="reports", help="reports folder; writes OUT/<study>/report.md (default reports)")
    p.add_argument("--baselines", choices=["full", "quick", "none"], default="full",
                   help="scikit-learn baselines: full grids (default), quick (small grids, for tests) or none")
    p.add_argument("--no-refit", dest="refit", action="store_false",
                   help="train the recommendation (and the baselines) on the training split only; by default they "
                        "are refitted on training + validation once everything is chosen, as deployed")
    return p


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    from ..workers import default_workers
    try:
        torch.set_num_threads(defaults.THREADS)
        # each final seed is a model trained per evaluated configuration
        if args.seeds is not None and args.seeds > defaults.MAX_FINAL_SEEDS:
            raise ReportError(f"--seeds must be an int from 1 to {defaults.MAX_FINAL_SEEDS}, got {args.seeds}")
        config = ReportConfig(task=args.task, storage=args.storage, study_name=args.study_name, data=args.data,
                              seeds=args.seeds, family_seeds=args.family_seeds,
                              pruned_seeds=args.pruned_seeds, top=args.top, rerank_seeds=args.rerank_seeds,
                              out=args.out, device=args.device,
                              workers=args.workers or default_workers(), baselines=args.baselines,
                              refit=args.refit)
        path, evaluations = build(config)
    except (ReportError, StudyError, StorageError, DataError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted: finished evaluations are kept in evaluations.json", file=sys.stderr)
        sys.exit(130)
    print(f"{path} ({evaluations.trained} configurations trained, {evaluations.reused} evaluations reused "
          f"from {evaluations.path})")
