"""The command line shared by `python -m search.har` and `python -m search.names`."""
from __future__ import annotations

import argparse
import signal
import sys
from dataclasses import replace

import torch

from data import DataError
from . import defaults, signals
from .objective import STRATEGIES
from .options import common
from .space import FIELDS, parse_value
from .storage import StorageError, can_share, check_reachable, hide_password
from .stopping import raise_interrupt
from .study import count_finished, prepare_study, quiet_optuna, run_study, summary, trials_to_run
from .studyconfig import PRUNERS, StudyConfig, StudyError
from .tasks import REGISTRY, entry_of, load
from .train import METRICS
from .workers import default_workers, exit_now, run_workers


def parser(task: str, prog: str | None = None, description: str | None = None) -> argparse.ArgumentParser:
    entry = REGISTRY.get(task)
    shared = ["storage", "artifacts", "study_name", "device", "threads", "workers"] + (["task_data"] if entry else [])
    p = argparse.ArgumentParser(prog=prog or f"python -m search.{task}", parents=[common(*shared)],
                                description=description or f"Run (or continue) an Optuna study on the {task} task.")
    p.add_argument("--trials", type=int, default=100, help="trials to ADD to the study in this run (default 100)")
    p.add_argument("--seeds", type=int, default=defaults.SEEDS, help="seeds per trial (default %(default)s)")
    p.add_argument("--metric", choices=METRICS, default=None,
                   help=f"default {entry.metric if entry else 'accuracy, or acc_bal_hmean for imbalanced classes'}")
    p.add_argument("--strategy", choices=STRATEGIES, default=defaults.STRATEGY,
                   help="how a trial spends seed-epochs (default %(default)s)")
    p.add_argument("--pruner", choices=PRUNERS, default=defaults.PRUNER,
                   help="racing + hyperband spent the fewest seed-epochs in bench/strategies.py (default %(default)s)")
    p.add_argument("--sampler-seed", type=int, default=None,
                   help="makes the sampled parameters reproducible (worker i samples with seed S+i)")
    p.add_argument("--timeout", type=float, default=None,
                   help="stop starting trials after this many seconds; 0: no limit (default for a search: "
                        f"{entry.time_limit if entry else 'the task entry'}'s, so that 100 trials end inside the "
                        "task's budget on 2 cores; "
                        "for a grid: none)")
    p.add_argument("--heartbeat", type=int, default=defaults.HEARTBEAT,
                   help="seconds between trial heartbeats; a trial of a run killed on another machine is failed "
                        "after 4 (default %(default)s)")
    p.add_argument("--warm-start", action=argparse.BooleanOptionalAction, default=True,
                   help="a new study without --grid or fixed parameters first trains the known-good "
                        "configurations of its entry in search/tasks.py (default: on)")
    p.add_argument("--grid", action="append", default=[], metavar="NAME=V1,V2,...",
                   help="run a plain grid over these values (repeatable); other parameters fixed or default")
    fixed = p.add_argument_group("fix a parameter (the search runs over the rest)")
    for name in FIELDS:
        fixed.add_argument(f"--{name.replace('_', '-')}", dest=f"fix_{name}", default=None, metavar="VALUE")
    return p


def config_from_args(task: str, args: argparse.Namespace, time_limit: float) -> StudyConfig:
    fixed = {name: parse_value(name, getattr(args, f"fix_{name}"))
             for name in FIELDS if getattr(args, f"fix_{name}") is not None}
    grid = {}
    for item in args.grid:
        name, sep, values = item.partition("=")
        if not sep or not values:
            raise StudyError(f"--grid takes NAME=V1,V2,..., got {item!r}")
        if name in grid:
            raise StudyError(f"--grid {name} is given twice; list all its values once: --grid {name}=V1,V2,...")
        if name in fixed:
            raise StudyError(f"--{name.replace('_', '-')} and --grid {name} both given; use one")
        grid[name] = [parse_value(name, v) for v in values.split(",")]
    timeout = args.timeout
    if timeout is None and not grid:
        timeout = time_limit
    config = StudyConfig(task=task, trials=args.trials, storage=args.storage, study_name=args.study_name,
                         seeds=args.seeds, metric=args.metric, strategy=args.strategy, pruner=args.pruner,
                         sampler_seed=args.sampler_seed, timeout=timeout, device=args.device,
                         fixed=fixed, grid=grid, heartbeat=args.heartbeat,
                         artifact_dir=args.artifacts, warm_start=args.warm_start)
    if args.timeout is None and config.timeout is not None:  # recorded: the default limit can end a run early
        config.command += f" --timeout {config.timeout:g}"
    return config


def main(task: str, argv: list[str] | None = None) -> None:
    args = parser(task).parse_args(argv)
    run(task, args, args.data)


def run(task: str, args: argparse.Namespace, source) -> None:
    """Run the study of task (a registered name, or a user's file's) on its data (source: see tasks.load)."""
    signals.ctrl_c_raises()  # until here Ctrl-C ended the process at once; from here on trials are saved first
    quiet_optuna()
    signal.signal(signal.SIGTERM, raise_interrupt)  # until the trials run: `kill` is Ctrl-C
    try:
        if args.workers is None:  # an in-memory database exists in one process only
            args.workers = default_workers() if can_share(args.storage) else 1
        for name in ("threads", "workers"):
            if getattr(args, name) < 1:
                raise StudyError(f"--{name} must be an int >= 1, got {getattr(args, name)}")
        if args.workers > 1 and not can_share(args.storage):
            raise StudyError(f"--workers {args.workers}: the in-memory storage {args.storage!r} exists in one process "
                             "only; use --workers 1, or a SQLite file (--storage sqlite:///studies.db) for several")
        config = config_from_args(task, args, 0)
        torch.set_num_threads(args.threads)
        check_reachable(config.storage)  # a bad URL or an unwritable file: one line before loading data
        data = load(task, source)  # also fills the cache before workers read it
        config = config_from_args(task, args, entry_of(data).time_limit)
        study = prepare_study(config, data)  # every other check, before anything is created
        trials = trials_to_run(study, config, data)
        finished_before = count_finished(study)
        if trials == 0:
            print(f"the grid of study {config.study_name!r} has run every point; nothing to do")
        else:
            config = replace(config, trials=trials)
            workers = min(args.workers, trials or args.workers)
            shared = workers > 1
            if shared:
                print(f"{workers} workers x {args.threads} torch thread(s) on {hide_password(config.storage)}")
            if config.timeout is not None:
                print(f"new trials stop after {config.timeout:g} s (--timeout; 0: no limit)")
            sys.stdout.flush()
            if shared:
                code = run_workers(config, source, workers, args.threads, study=study)
                if code == 130:
                    raise KeyboardInterrupt
                if code:
                    print("error: a worker failed (its message is above); finished trials are saved", file=sys.stderr)
                    sys.exit(1)
            else:
                run_study(config, data, setup=False, study=study)
    except (StudyError, StorageError, DataError, ValueError) as exc:
        print(f"error: {hide_password(str(exc))}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted: finished trials are saved; the running ones are marked FAIL", file=sys.stderr)
        exit_now(130)
    ran = count_finished(study) - finished_before
    if config.timeout is not None and trials and ran < trials:
        print(f"time limit: {ran} of {trials} trials ran before --timeout {config.timeout:g} s stopped new ones")
    print(summary(study, config.storage))
