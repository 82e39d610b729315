"""How a search spends its budget across seeds and epochs: strategies compared at equal trial counts.

    python bench/strategies.py [--task har] [--family dense] [--trials 16] [--epochs 6] [--seeds 3]
                               [--sampler-seed 0] [--train N] [--threads 1] [--data PATH]

Every strategy runs its own study (temporary SQLite file) with the same sampler seed, so the
first TPE startup trials (10 random ones) are the same configurations for all; later ones follow
each study's own results. Printed per strategy: seed-epochs spent (sum of the trials'
user_attrs["seed_epochs"]), wall seconds, trials per hour, fraction pruned, best value (mean over
seeds of the best complete trial; validation split) and its gap to plain lockstep without pruning.
Seed-epochs do not depend on the machine; wall seconds do.
"""
from __future__ import annotations

import argparse
import shlex
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

import optuna  # noqa: E402
import torch  # noqa: E402

from data import DataError, Split, Task  # noqa: E402
from search.tasks import load as load_task  # noqa: E402
from models import FAMILIES  # noqa: E402
from search.study import StudyConfig, StudyError, quiet_optuna, run_study  # noqa: E402

_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"  # ../shared/data beside the checkout
SHARED = {"har": str(_DATA / "UCI_HAR_Dataset.zip"), "names": str(_DATA / "names")}
REFERENCE = ("lockstep", "none")
STRATEGIES = [REFERENCE, ("lockstep", "median"), ("lockstep", "hyperband"), ("racing", "median"),
              ("racing", "hyperband")]


def subset(split: Split, n: int) -> Split:
    """n examples drawn at random with a fixed seed (the splits are ordered by subject or by language)."""
    if n <= 0 or n >= len(split):
        return split
    keep = torch.randperm(len(split), generator=torch.Generator().manual_seed(0))[:n].sort().values
    return Split(split.x[keep], split.y[keep], split.lengths[keep])


def run_strategy(task: Task, args, strategy: str, pruner: str, folder: Path, command: str) -> dict:
    config = StudyConfig(task=args.task, trials=args.trials, storage=f"sqlite:///{folder / 'strategies.db'}",
                         study_name=f"{strategy}-{pruner}", seeds=args.seeds, strategy=strategy, pruner=pruner,
                         sampler_seed=args.sampler_seed, fixed={"family": args.family, "epochs": args.epochs},
                         command=command, artifact_dir=str(folder / "artifacts"))
    started = time.perf_counter()
    study = run_study(config, task, write=lambda line: print(f"  [{strategy}/{pruner}] {line}", file=sys.stderr))
    wall = time.perf_counter() - started
    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    return {
        "strategy": f"{strategy} + {pruner}",
        "seed_epochs": sum(t.user_attrs.get("seed_epochs", 0) for t in trials),
        "wall": wall,
        "per_hour": len(trials) / wall * 3600,
        "pruned": sum(t.state == optuna.trial.TrialState.PRUNED for t in trials) / len(trials),
        "failed": sum(t.state == optuna.trial.TrialState.FAIL for t in trials),
        "best": max((t.value for t in complete), default=float("nan")),
    }


def fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python bench/strategies.py", description=__doc__.splitlines()[0])
    p.add_argument("--task", choices=sorted(SHARED), default="har")
    p.add_argument("--data", default=None, help="data folder or archive (default: the shared copy)")
    p.add_argument("--family", choices=sorted(FAMILIES), default="dense", help="fixed; the search runs over the rest")
    p.add_argument("--trials", type=int, default=16)
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--sampler-seed", type=int, default=0)
    p.add_argument("--train", type=int, default=0, help="use the first N training examples (0 = all)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1: see bench/README.md)")
    args = p.parse_args(argv)
    for name, value, minimum in (("--trials", args.trials, 1), ("--epochs", args.epochs, 1),
                                 ("--seeds", args.seeds, 1), ("--train", args.train, 0), ("--threads", args.threads, 1)):
        if value < minimum:
            fail(f"{name} must be an int >= {minimum}, got {value}")
    quiet_optuna()
    torch.set_num_threads(args.threads)
    command = " ".join(shlex.quote(a) for a in ["python", "bench/strategies.py"] + (argv or sys.argv[1:]))
    try:
        full = load_task(args.task, args.data or SHARED[args.task])
    except DataError as exc:
        fail(str(exc))
    task = Task(full.name, subset(full.train, args.train), full.val, full.test, full.class_names, full.info)
    print(f"command: {command}")
    print(f"task {args.task}: {len(task.train)} train / {len(task.val)} validation examples; family {args.family}, "
          f"{args.epochs} epochs, {args.seeds} seeds, {args.trials} trials per strategy, sampler seed "
          f"{args.sampler_seed}, torch threads {args.threads}; metric on the validation split")
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for strategy, pruner in STRATEGIES:
            try:
                rows.append(run_strategy(task, args, strategy, pruner, Path(folder), command))
            except StudyError as exc:
                fail(str(exc))
    reference = rows[0]
    print(f"\n{'strategy':<22} {'seed-epochs':>11} {'share':>6} {'wall s':>7} {'trials/h':>8} {'pruned':>6} "
          f"{'failed':>6} {'best':>7} {'gap (points)':>12}")
    for row in rows:
        print(f"{row['strategy']:<22} {row['seed_epochs']:>11} {row['seed_epochs'] / reference['seed_epochs']:>6.2f} "
              f"{row['wall']:>7.0f} {row['per_hour']:>8.0f} {row['pruned']:>6.0%} {row['failed']:>6} "
              f"{row['best']:>7.4f} {100 * (row['best'] - reference['best']):>+12.2f}")
    print(f"\nshare: seed-epochs / those of {reference['strategy']}; gap: best - its best, in percentage points")


if __name__ == "__main__":
    main()
