"""What did pruning cost? Re-run a finished study's configurations without pruning and compare.

    python bench/replay.py names [--storage sqlite:///studies.db] [--study-name names] [--data PATH]
                                 [--workers N] [--threads 1]

Every trial of the study (same parameters, fixed values and grid, same seeds, so the same training up to where the
original stopped) is enqueued into a study named `<study>-unpruned` on the same storage and run
with `--strategy lockstep --pruner none`: every configuration trains all its seeds for all its
epochs. Printed: seed-epochs of both, their ratio, the best validation value of both and the gap
in percentage points, and where each study's best configuration stands in the other. Re-running
the command continues the replay (configurations already replayed are not run again).
"""
from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

import optuna  # noqa: E402
import torch  # noqa: E402

from data import DataError, load_task  # noqa: E402
from search.study import DEFAULT_STORAGE, StudyConfig, StudyError, open_storage, prepare_study, quiet_optuna  # noqa: E402
from search.workers import default_workers, run_workers  # noqa: E402

COMPLETE = optuna.trial.TrialState.COMPLETE


def fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def key(params: dict) -> tuple:
    return tuple(sorted(params.items()))


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
    done = {key(t.params) for t in replay.get_trials(deepcopy=False) if t.state.is_finished()}
    todo = [t for t in trials if key(t.params) not in done]
    for trial in todo:
        replay.enqueue_trial(trial.params, user_attrs={"replays": trial.number})
    print(f"command: {command}\nreplaying {len(todo)} of {len(trials)} configurations of study {name!r} "
          f"({config.seeds} seeds, lockstep, no pruning) as {config.study_name!r}", flush=True)
    if todo:
        config.trials = len(todo)
        if run_workers(config, args.data, min(args.workers, len(todo)), args.threads):
            fail("the replay was interrupted or a worker failed; run the command again to continue it")

    replayed = [t for t in replay.get_trials(deepcopy=False) if t.state.is_finished()]
    by_config = {key(t.params): t for t in replayed}
    ours, theirs = best(trials), best(replayed)
    print(f"\n{'study':<22} {'trials':>6} {'seed-epochs':>11} {'share':>6} {'best':>7} {'trial':>6}")
    for label, group, top in ((name, trials, ours), (config.study_name, replayed, theirs)):
        print(f"{label:<22} {len(group):>6} {spent(group):>11} {spent(group) / spent(replayed):>6.2f} "
              f"{top.value if top else float('nan'):>7.4f} {('#%d' % top.number) if top else '-':>6}")
    if ours and theirs:
        print(f"\ngap: {100 * (ours.value - theirs.value):+.2f} points ({attrs.get('metric')}, validation)")
        twin = [t for t in trials if key(t.params) == key(theirs.params)][0]
        print(f"the unpruned best (#{theirs.number}) is trial #{twin.number} of {name!r}: "
              f"{twin.state.name.lower()}, {twin.user_attrs.get('ended')}, value {twin.value}")
        mirror = by_config.get(key(ours.params))
        if mirror is not None:
            print(f"the best of {name!r} (#{ours.number}, {ours.value:.4f}) scores {mirror.value:.4f} unpruned")


if __name__ == "__main__":
    main()
