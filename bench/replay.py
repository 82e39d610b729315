"""What did pruning cost? Re-run a finished study's pruned configurations without pruning and compare.

    python bench/replay.py names [--storage sqlite:///studies.db] [--study-name names] [--data PATH]
                                 [--workers N] [--threads 1] [--no-run]

Every trial of the study that did not complete (pruned, raced out, failed) is enqueued, with
the same parameters, fixed values, grid and seeds, into a study named `<study>-unpruned` on the
same storage and run with `--strategy lockstep --pruner none`: all seeds, all epochs. A COMPLETE
trial already trained all its seeds for all its epochs, and a seed fixes a run on this machine,
so its value is what an unpruned run gives and it is not trained again. The unpruned study is
then: the complete trials as they are, plus the replayed ones. Printed: seed-epochs of both,
their ratio, the best validation value of both and the gap in percentage points, and where each
best configuration stands in the other. Re-running the command continues the replay.
"""
from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

import optuna  # noqa: E402
import torch  # noqa: E402

from data import DataError  # noqa: E402
from search.tasks import load as load_task  # noqa: E402
from search.study import DEFAULT_STORAGE, StudyConfig, StudyError, open_storage, prepare_study, quiet_optuna  # noqa: E402
from search.workers import default_workers, run_workers  # noqa: E402

COMPLETE = optuna.trial.TrialState.COMPLETE


def fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def key(params: dict) -> tuple:
    return tuple(sorted(params.items()))


def ran(trial) -> bool:
    """Finished after training (a queued trial failed by hand never ran)."""
    return trial.state.is_finished() and "seed_epochs" in trial.user_attrs


def spent(trials) -> int:
    return sum(t.user_attrs.get("seed_epochs", 0) for t in trials)


def best(trials):
    done = [t for t in trials if t.state == COMPLETE]
    return max(done, key=lambda t: (t.value, -t.number)) if done else None


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("task", choices=["har", "names"])
    p.add_argument("--storage", default=DEFAULT_STORAGE)
    p.add_argument("--study-name", default=None, help="the study to replay (default: the task)")
    p.add_argument("--data", default=None)
    p.add_argument("--workers", type=int, default=default_workers())
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--no-run", action="store_true", help="only compare what has been replayed so far")
    args = p.parse_args(argv)
    quiet_optuna()
    torch.set_num_threads(args.threads)
    name = args.study_name or args.task
    try:
        original = optuna.load_study(study_name=name, storage=open_storage(args.storage))
    except (KeyError, StudyError) as exc:
        fail(f"--study-name {name!r} on {args.storage}: {exc}")
    trials = [t for t in original.get_trials(deepcopy=False) if t.state.is_finished() and t.params]
    if not trials:
        fail(f"study {name!r} has no finished trial to replay")
    attrs = original.user_attrs
    command = " ".join(shlex.quote(a) for a in ["python", "bench/replay.py"] + (argv or sys.argv[1:]))
    try:
        task = load_task(args.task, args.data)
        config = StudyConfig(task=args.task, trials=None, storage=args.storage, study_name=f"{name}-unpruned",
                             seeds=attrs.get("seeds", 3), metric=attrs.get("metric"), strategy="lockstep",
                             pruner="none", fixed=attrs.get("fixed", {}), grid=attrs.get("grid", {}), command=command)
        replay = prepare_study(config, task)
    except (DataError, StudyError) as exc:
        fail(str(exc))
    done = {key(t.params) for t in replay.get_trials(deepcopy=False) if ran(t)}
    waiting = {key(t.params) for t in replay.get_trials(deepcopy=False, states=[optuna.trial.TrialState.WAITING])}
    todo = [t for t in trials if t.state != COMPLETE and key(t.params) not in done]
    print(f"command: {command}\nreplaying the {len(todo)} unfinished of {len(trials)} configurations of study "
          f"{name!r} ({config.seeds} seeds, lockstep, no pruning) as {config.study_name!r}", flush=True)
    if todo and not args.no_run:
        for trial in todo:
            if key(trial.params) not in waiting:  # an interrupted replay left these queued
                replay.enqueue_trial(trial.params, user_attrs={"replays": trial.number})
        config.trials = len(todo)
        if run_workers(config, args.data, min(args.workers, len(todo)), args.threads):
            fail("the replay was interrupted or a worker failed; run the command again to continue it")

    complete = [t for t in trials if t.state == COMPLETE]
    replayed = [t for t in replay.get_trials(deepcopy=False) if ran(t)]
    unpruned = complete + replayed  # one finished run of every configuration, all seeds, all epochs
    if len(unpruned) < len(trials):
        print(f"partial: {len(replayed)} of the {len(trials) - len(complete)} unfinished configurations replayed so far")
    ours, theirs = best(trials), best(unpruned)
    print(f"\n{'study':<30} {'configs':>7} {'seed-epochs':>11} {'share':>6} {'best':>7} {'trial':>6}")
    for label, group, top in ((name, trials, ours), (f"{name} + {config.study_name}", unpruned, theirs)):
        print(f"{label:<30} {len(group):>7} {spent(group):>11} {spent(group) / spent(unpruned):>6.2f} "
              f"{top.value if top else float('nan'):>7.4f} {('#%d' % top.number) if top else '-':>6}")
    if ours and theirs:
        print(f"\ngap: {100 * (ours.value - theirs.value):+.2f} points ({attrs.get('metric')}, validation)")
        if theirs in replayed:
            twin = [t for t in trials if key(t.params) == key(theirs.params)][0]
            print(f"the unpruned best is {config.study_name!r} #{theirs.number}, a replay of {name!r} #{twin.number} "
                  f"({twin.user_attrs.get('ended')}, last value {twin.user_attrs.get('metric_mean')})")
        else:
            print(f"the unpruned best is the best of {name!r}, #{theirs.number}: pruning lost nothing here")
        values = sorted((t.value for t in unpruned if t.state == COMPLETE), reverse=True)
        print(f"rank of the best of {name!r} among the {len(values)} unpruned values: {values.index(ours.value) + 1}")


if __name__ == "__main__":
    main()
