"""GPU figures of issue 15: one training epoch, and a whole HAR study, on the device named.

    python bench/gpu.py [--device cuda] [--har PATH] [--study-trials 100] [--workers 4] [--train N]

Prints, from one run:
1. HAR conv1d 3x64 with batch norm, 3 seeds, one epoch over the full training split, three ways:
   the loop before (bench/reference.py: a host read after every batch), now with one model per seed
   (data on the device, one read per epoch: the CPU default), and now with the seeds stacked (one
   vmapped computation for the 3 seeds: the CUDA default). Best of 3 after a warm-up epoch.
   Target on an H100-class GPU: <= 0.5 s.
2. LSTM 2x64 and dense 2x128, the same way (recurrent models do not stack: "-").
3. With --study-trials N: `python -m search.har --trials N --device DEVICE --workers W` on a fresh
   SQLite file, its wall time and best validation accuracy. Target: 100 trials <= 3 min.
The device's name is printed first, so every figure says which card produced it. With --device cpu
it runs on the CPU too (a check of the script; --train N keeps the first N training and validation
windows to make it short).
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

import torch  # noqa: E402

from data import DataError, Split, Task, load_har  # noqa: E402
from reference import reference_history  # noqa: E402  (bench/reference.py, beside this script)
from search.train import TrialSpec, stacks, train_seeds  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
MODELS = {
    "conv1d 3x64 batch norm": TrialSpec(family="conv1d", layers=3, width=64, kernel_size=5, pool=2, norm=True,
                                        epochs=1, batch_size=64),
    "lstm 2x64": TrialSpec(family="lstm", layers=2, width=64, epochs=1, batch_size=64),
    "dense 2x128": TrialSpec(family="dense", layers=2, width=128, epochs=1, batch_size=64),
}


def timed(run, device: str) -> float:
    if device == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    run()
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - started


def first(split: Split, n: int) -> Split:
    return Split(split.x[:n], split.y[:n], split.lengths[:n])


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python bench/gpu.py", description=__doc__.splitlines()[0])
    p.add_argument("--device", choices=["cpu", "cuda"], default="cuda")
    p.add_argument("--har", default=str(SHARED / "UCI_HAR_Dataset.zip"))
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--study-trials", type=int, default=0, help="also time a whole study of this many trials")
    p.add_argument("--workers", type=int, default=4, help="processes for the study")
    p.add_argument("--train", type=int, default=0, help="only the first N training and validation windows (0: all)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("error: --device cuda but no CUDA device is available", file=sys.stderr)
        sys.exit(2)
    try:
        task = load_har(args.har)
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    if args.train:
        task = Task(task.name, first(task.train, args.train), first(task.val, args.train), task.test,
                    task.class_names, task.info)
    card = torch.cuda.get_device_name() if args.device == "cuda" else f"CPU, {torch.get_num_threads()} thread(s)"
    print(f"device: {card}; torch {torch.__version__}; HAR train windows {len(task.train)}")
    seeds = list(range(args.seeds))
    print(f"\n1-2. one epoch, {len(seeds)} seeds (seconds, best of {args.repeats} after a warm-up)")
    print(f"{'model':<24} {'before s':>9} {'now s':>7} {'stacked s':>10} {'before/now':>10} {'now/stacked':>11}")
    for name, spec in MODELS.items():
        stackable = stacks(spec, task, len(seeds), args.device, "on")
        runs = {"before": lambda: [reference_history(spec, task, s, args.device) for s in seeds],
                "now": lambda: train_seeds(spec, task, seeds, args.device, stack="off")}
        if stackable:
            runs["stacked"] = lambda: train_seeds(spec, task, seeds, args.device, stack="on")
        reference_history(spec, task, seeds[0], args.device)  # warm-up: kernels, allocator
        train_seeds(spec, task, seeds[:1], args.device)
        if stackable:
            train_seeds(spec, task, seeds, args.device, stack="on")
        best = {key: min(timed(run, args.device) for _ in range(args.repeats)) for key, run in runs.items()}
        stacked = f"{best['stacked']:>10.2f}" if stackable else f"{'-':>10}"
        ratio = f"{best['now'] / best['stacked']:>11.2f}" if stackable else f"{'-':>11}"
        print(f"{name:<24} {best['before']:>9.2f} {best['now']:>7.2f} {stacked} {best['before'] / best['now']:>10.2f} "
              f"{ratio}", flush=True)
    if args.study_trials:
        with tempfile.TemporaryDirectory() as folder:
            command = [sys.executable, "-m", "search.har", "--trials", str(args.study_trials), "--device", args.device,
                       "--workers", str(args.workers), "--sampler-seed", "0", "--data", args.har,
                       "--storage", f"sqlite:///{folder}/gpu.db", "--artifacts", f"{folder}/artifacts"]
            started = time.perf_counter()
            done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
            seconds = time.perf_counter() - started
            best = [line for line in done.stdout.splitlines() if line.startswith("best trial")]
            print(f"\n3. python -m search.har --trials {args.study_trials} --device {args.device} --workers "
                  f"{args.workers}: {seconds:.0f} s wall, exit {done.returncode}; {best[0] if best else 'no best'}")
            if done.returncode:
                print(done.stderr[-2000:], file=sys.stderr)


if __name__ == "__main__":
    main()
