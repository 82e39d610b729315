"""How much does the answer depend on luck? Run the default study several times and test each answer.

    python bench/spread.py TASK [--runs 3] [--first 0] [--trials 100] [--parallel 1] [--workers W] [--device D]
                                [--dir bench/spread] [--data PATH] [--final-seeds 5] [--timeout S] [--no-run]
                                [--top 3] [--rerank-seeds 3] [--no-refit]

Run i (i = --first, --first + 1, ...) is `python -m search.TASK --trials N --sampler-seed i` on its own
SQLite file (DIR/TASK-i.db), `--parallel` of them at a time, each with `--workers` processes and the
study's default time limit (the task entry's time_limit, search/tasks.py) unless --timeout is given. A file whose study
already has N finished trials, or whose run stopped at its time limit, is not run again, so an
interrupted bench continues. Then each study's recommendation is chosen as `search.report` chooses it
(its --top best trials re-ranked on the seeds 50, 51, ..., each on another validation fold, search/rerank.py; --rerank-seeds 0:
the best search value), retrained on the final seeds (100, 101, ...), refitted on train + validation with the
tau the training split's seeds chose on validation (--no-refit: the training split only), and measured once
on the test split, exactly as the report does (search.evaluate.evaluate_spec). Printed: one row per run (wall minutes, trials
complete/pruned, best search value, the recommended trial and its choice value, its test accuracy and
balanced accuracy as mean +/- std over the final seeds, and the seed ensemble), then the spread over runs.
"""
from __future__ import annotations

import argparse
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

import optuna  # noqa: E402
import torch  # noqa: E402

from search.tasks import REGISTRY, load as load_task, standard_of  # noqa: E402
from search import defaults  # noqa: E402
from search.evaluate import evaluate_spec, ranked, select, spec_of  # noqa: E402
from search.export import evaluate_refit  # noqa: E402
from search.rerank import Reranking, choice_value  # noqa: E402
from search.report.analysis import mean_std  # noqa: E402
from search.study import count_finished, open_storage, quiet_optuna  # noqa: E402
from search.workers import default_workers  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def finished(db: Path, task: str, trials: int) -> bool:
    """The study holds its trials, or its run ended at the study's time limit (its log says so)."""
    if not db.exists():
        return False
    log = db.with_suffix(".log")
    if log.exists() and "time limit:" in log.read_text():
        return True
    try:
        study = optuna.load_study(study_name=task, storage=open_storage(f"sqlite:///{db}"))
    except KeyError:
        return False
    return count_finished(study) >= trials


def wall_seconds(study: optuna.Study) -> float:
    """From the first trial's start to the last trial's end, as the storage recorded them."""
    trials = [t for t in study.get_trials(deepcopy=False) if t.datetime_start and t.datetime_complete]
    return (max(t.datetime_complete for t in trials) - min(t.datetime_start for t in trials)).total_seconds()


def run_studies(args, dbs: dict[int, Path]) -> None:
    """Start the studies not yet finished, `--parallel` at a time; `dbs` maps sampler seed -> file."""
    todo = [(seed, db) for seed, db in dbs.items() if not finished(db, args.task, args.trials)]
    running: dict[Path, tuple[subprocess.Popen, float]] = {}
    while todo or running:
        while todo and len(running) < args.parallel:
            seed, db = todo.pop(0)
            command = [sys.executable, "-m", f"search.{args.task}", "--trials", str(args.trials),
                       "--sampler-seed", str(seed), "--storage", f"sqlite:///{db}",
                       "--workers", str(args.workers), "--device", args.device]
            command += ["--data", args.data] if args.data else []
            command += ["--timeout", str(args.timeout)] if args.timeout is not None else []
            command += shlex.split(args.extra)
            log = open(db.with_suffix(".log"), "w")
            print(f"start: {' '.join(command[1:])}", flush=True)
            running[db] = (subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT), time.time())
        time.sleep(2)
        for db, (process, started) in list(running.items()):
            if process.poll() is not None:
                print(f"done: {db.name} in {(time.time() - started) / 60:.1f} min (exit {process.returncode})", flush=True)
                del running[db]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python bench/spread.py", description=__doc__.splitlines()[0])
    p.add_argument("task", choices=["har", "names"])
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--first", type=int, default=0, help="sampler seed of the first run")
    p.add_argument("--trials", type=int, default=100)
    p.add_argument("--parallel", type=int, default=1, help="studies run at the same time")
    p.add_argument("--workers", type=int, default=default_workers(), help="processes per study")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.add_argument("--dir", default=str(ROOT / "bench" / "spread"), help="where the SQLite files go")
    p.add_argument("--data", default=None)
    p.add_argument("--final-seeds", type=int, default=defaults.FINAL_SEEDS)
    p.add_argument("--timeout", type=float, default=None,
                   help="passed to each study: stop starting trials after S s (default: the study's own limit, "
                        "search/tasks.py; 0: none)")
    p.add_argument("--no-run", action="store_true", help="only evaluate the studies already in --dir")
    p.add_argument("--no-refit", dest="refit", action="store_false",
                   help="test the recommendation trained on the training split only (default: refitted on "
                        "train + validation, as the report does)")
    p.add_argument("--top", type=int, default=3, help="top trials re-ranked, as the report's --top")
    p.add_argument("--rerank-seeds", type=int, default=defaults.SEEDS,
                   help="re-ranking seeds, as the report's --rerank-seeds (0: the best search value)")
    p.add_argument("--extra", default="", help="more study arguments, e.g. '--family linear --epochs 1' for a quick check")
    args = p.parse_args(argv)
    for name, low in (("runs", 1), ("first", 0), ("trials", 1), ("parallel", 1), ("workers", 1), ("final_seeds", 1),
                      ("top", 1), ("rerank_seeds", 0)):
        if getattr(args, name) < low:
            print(f"error: --{name.replace('_', '-')} must be an int >= {low}, got {getattr(args, name)}", file=sys.stderr)
            sys.exit(2)
    quiet_optuna()
    torch.set_num_threads(1)
    folder = Path(args.dir)
    folder.mkdir(parents=True, exist_ok=True)
    dbs = {i: folder / f"{args.task}-{i}.db" for i in range(args.first, args.first + args.runs)}
    if not args.no_run:
        run_studies(args, dbs)

    task = load_task(args.task, args.data)
    metric = REGISTRY[args.task].metric
    rows = []
    ran = "studies as found in --dir" if args.no_run else (
        f"python -m search.{args.task} --trials {args.trials} --sampler-seed i --workers {args.workers} "
        f"--device {args.device}{'' if args.timeout is None else f' --timeout {args.timeout:g}'} {args.extra}".strip())
    device = torch.cuda.get_device_name() if args.device != "cpu" and torch.cuda.is_available() else "cpu"
    print(f"\ncommand: {ran}; device: {device}; final seeds {defaults.final_seeds(args.final_seeds)}"
          f"{', refitted on train + validation' if args.refit else ', training split only'}")
    print(f"{'run':>3} {'min':>6} {'complete/pruned':>15} {'best val':>8} {'trial':>14} {'choice':>6} {'test acc':>13} "
          f"{'test bal':>13} {'ens acc':>7} {'ens bal':>7}")
    for i, db in dbs.items():
        study = optuna.load_study(study_name=args.task, storage=open_storage(f"sqlite:///{db}"))
        states = [t.state for t in study.get_trials(deepcopy=False)]
        data = {"task": args.task, "split": (study.user_attrs.get("data") or {}).get("split"),
                "counts": study.user_attrs.get("counts")}
        standard = standard_of(task)  # as the report: the first try re-ranked beside the top trials
        reranking = Reranking(db.with_suffix(".reranking.json"), data, defaults.rerank_seeds(args.rerank_seeds),
                              metric, task, args.data, args.device, args.workers, standard=standard)
        best, reranked = reranking.choose(select(study, args.top, standard)[1])
        spec = spec_of(best)
        seeds = defaults.final_seeds(args.final_seeds)
        evaluate = evaluate_refit if args.refit else evaluate_spec  # refit: tau from the train-only seeds
        entry, _ = evaluate(spec, task, seeds, metric, args.device)
        tests = [run["test"] for run in entry["runs"] if run["test"]]
        (acc, acc_std), (bal, bal_std) = (mean_std([t[k] for t in tests]) for k in ("accuracy", "balanced_accuracy"))
        ens = entry["ensemble"]["test"]
        top = ranked(study)[0].value
        rows.append({"acc": acc, "bal": bal, "ens_acc": ens["accuracy"], "val": top})
        print(f"{i:>3} {wall_seconds(study) / 60:6.1f} {states.count(optuna.trial.TrialState.COMPLETE):>7}/"
              f"{states.count(optuna.trial.TrialState.PRUNED):<7} {top:>8.4f} {f'#{best.number} {spec.family}':>14} "
              f"{choice_value(best, reranked[best.number], metric):6.4f} "
              f"{acc:.3f}±{acc_std:.3f} {bal:.3f}±{bal_std:.3f} {ens['accuracy']:>7.3f} {ens['balanced_accuracy']:>7.3f}",
              flush=True)
    for key, label in (("acc", "test accuracy (mean over final seeds)"), ("bal", "test balanced accuracy"),
                       ("ens_acc", "ensemble test accuracy"), ("val", f"best validation {metric}")):
        values = [row[key] for row in rows]
        print(f"spread of {label}: min {min(values):.3f} max {max(values):.3f} range {max(values) - min(values):.3f}"
              f" std {statistics.pstdev(values):.3f} over {len(values)} runs")


if __name__ == "__main__":
    main()
