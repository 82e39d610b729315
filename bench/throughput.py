"""Training throughput against the machine's limit: which families are compute-bound, which overhead-bound.

    python bench/throughput.py [--quick] [--har PATH] [--names PATH] [--train N] [--repeats R]

Prints, from one run (every ratio compares timings taken in that run, interleaved):
1. the machine: measured float32 matmul rate (2048x2048) at 1 and 2 threads, the load average;
2. per family and task, one seed: seconds per epoch at 1 and 2 threads, the analytic FLOPs of an
   epoch (forward + backward = 3x forward over train, plus one forward over validation), the
   achieved GFLOP/s and its share of the matmul rate;
3. the training loop now (data on the device, one host read per epoch) against the loop before it
   (bench/reference.py: a host read after every batch), one seed, per family, on --device;
4. 2 seeds: 1 process x 2 threads (seeds one after the other) vs 2 processes x 1 thread (one seed each).
Timings are the minimum over --repeats runs (the least disturbed by other work on a shared machine).
"""
from __future__ import annotations

import argparse
import math
import multiprocessing as mp
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

import torch  # noqa: E402

from data import DataError, Split, Task, load_har, load_names  # noqa: E402
from models import FAMILIES  # noqa: E402
from reference import reference_history  # noqa: E402  (bench/reference.py, beside this script)
from models.params import GATES  # noqa: E402
from search.train import TrialSpec, train_seeds  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"  # ../shared/data beside the checkout


# ---- analytic forward FLOPs per example (a multiply-add is 2 FLOPs; elementwise work is left out) ----

def linear_flops(spec, features: int, steps: float, seq_len: int, classes: int) -> float:
    return 2 * seq_len * features * classes


def dense_flops(spec, features: int, steps: float, seq_len: int, classes: int) -> float:
    sizes = [seq_len * features] + [spec.width] * spec.layers + [classes]
    return sum(2 * a * b for a, b in zip(sizes, sizes[1:]))


def conv1d_flops(spec, features: int, steps: float, seq_len: int, classes: int) -> float:
    total, fan_in = 0.0, features
    for _ in range(spec.layers):
        total += 2 * spec.kernel_size * fan_in * spec.width * steps
        fan_in, steps = spec.width, math.ceil(steps / spec.pool) if spec.pool > 1 else steps
    return total + 2 * 2 * spec.width * classes


def recurrent_flops(spec, features: int, steps: float, seq_len: int, classes: int) -> float:
    total = 0.0
    if spec.frontend:  # optional conv front-end; its pool shortens the recurrence
        total += 2 * spec.kernel_size * features * spec.frontend * steps
        features, steps = spec.frontend, math.ceil(steps / spec.pool) if spec.pool > 1 else steps
    directions = 2 if spec.bidirectional else 1
    fan_in = features
    for _ in range(spec.layers):
        total += directions * 2 * GATES[spec.family] * spec.width * (fan_in + spec.width) * steps
        fan_in = directions * spec.width
    return total + 2 * fan_in * classes


FLOPS = {"linear": linear_flops, "dense": dense_flops, "conv1d": conv1d_flops,
         "rnn": recurrent_flops, "gru": recurrent_flops, "lstm": recurrent_flops}


def flops(spec: TrialSpec, task: Task) -> float:
    """FLOPs of one training epoch: 3x forward over the train split + 1 forward over validation.

    Recurrent layers (packed) and convolutions (batches cut to their longest, sorted by length)
    run about the real steps, so `steps` is each split's mean length; dense/linear see seq_len.
    """
    def forward(split: Split) -> float:
        steps = split.lengths.double().mean().item()
        return len(split) * FLOPS[spec.family](spec, task.input_size, steps, task.seq_len, task.num_classes)
    return 3 * forward(task.train) + forward(task.val)


# ---- measurements ----

def matmul_gflops(n: int = 2048, repeats: int = 5) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b  # warm-up
    best = math.inf
    for _ in range(repeats):
        started = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - started)
    return 2 * n ** 3 / best / 1e9


def subset(split: Split, n: int) -> Split:
    """n examples drawn at random with a fixed seed (the splits are ordered by subject or by language)."""
    if n <= 0 or n >= len(split):
        return split
    keep = torch.randperm(len(split), generator=torch.Generator().manual_seed(0))[:n].sort().values
    return Split(split.x[keep], split.y[keep], split.lengths[keep])


def load(name: str, path: str, n_train: int, n_val: int) -> Task:
    task = load_har(path) if name == "har" else load_names(path)
    return Task(name, subset(task.train, n_train), subset(task.val, n_val), task.test, task.class_names, task.info)


def seconds(spec: TrialSpec, task: Task, seeds: list[int], threads: int, device: str = "cpu") -> float:
    torch.set_num_threads(threads)
    started = time.perf_counter()
    train_seeds(spec, task, seeds, device)
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - started


def reference_seconds(spec: TrialSpec, task: Task, seed: int, threads: int, device: str = "cpu") -> float:
    torch.set_num_threads(threads)
    started = time.perf_counter()
    reference_history(spec, task, seed, device)
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - started


def best_of(repeats: int, *measures):
    """Each measure run `repeats` times, interleaved (so a burst of load hits all alike); the minimum of each."""
    best = [math.inf] * len(measures)
    for _ in range(repeats):
        for i, measure in enumerate(measures):
            best[i] = min(best[i], measure())
    return best


def _worker(task_name, path, n_train, n_val, spec, seeds, threads, barrier, results):
    torch.set_num_threads(threads)
    task = load(task_name, path, n_train, n_val)
    train_seeds(spec, Task(task.name, subset(task.train, 64), subset(task.val, 64), task.test, task.class_names),
                seeds[:1], "cpu")  # warm-up outside the timing
    barrier.wait()
    started = time.time()
    train_seeds(spec, task, seeds, "cpu")
    results.put((started, time.time()))


def workers_seconds(task_name, path, n_train, n_val, spec, plan: list[tuple[list[int], int]]) -> float:
    """Wall time from the common start to the last finish; plan: one (seeds, threads) per process."""
    context = mp.get_context("spawn")
    barrier, results = context.Barrier(len(plan)), context.Queue()
    processes = [context.Process(target=_worker, args=(task_name, path, n_train, n_val, spec, seeds, threads,
                                                       barrier, results)) for seeds, threads in plan]
    for process in processes:
        process.start()
    spans = [results.get() for _ in processes]
    for process in processes:
        process.join()
    return max(end for _, end in spans) - min(start for start, _ in spans)


def fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def load_average() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


# ---- the report ----

def per_family(tasks, families, repeats, peak) -> None:
    print("\n1. One seed, one epoch (train + validation), width 64, 1 layer, batch 64")
    print(f"{'task':<6} {'family':<7} {'GFLOP/epoch':>11} {'s@1thr':>8} {'s@2thr':>8} {'2thr/1thr':>9} "
          f"{'GFLOP/s@1':>9} {'%peak@1':>8} {'GFLOP/s@2':>9} {'%peak@2':>8}")
    for name, task in tasks.items():
        for family in families:
            spec = TrialSpec(family=family, width=64, layers=1, epochs=1, batch_size=64)
            work = flops(spec, task) / 1e9
            one, two = best_of(repeats, lambda: seconds(spec, task, [0], 1), lambda: seconds(spec, task, [0], 2))
            print(f"{name:<6} {family:<7} {work:>11.2f} {one:>8.2f} {two:>8.2f} {two / one:>9.2f} "
                  f"{work / one:>9.2f} {100 * work / one / peak[1]:>7.1f}% {work / two:>9.2f} "
                  f"{100 * work / two / peak[2]:>7.1f}%", flush=True)
    print(f"load average now {load_average()}")


def loops(tasks, families, repeats, device) -> None:
    print(f"\n2. One seed, one epoch, width 64, 2 layers, on {device}: the loop before (a host read per batch) "
          "vs now (one read per epoch)")
    print(f"{'task':<6} {'family':<7} {'before s':>8} {'now s':>7} {'now/before':>10}")
    for name, task in tasks.items():
        for family in families:
            spec = TrialSpec(family=family, width=64, layers=2, epochs=1, batch_size=64, norm=family == "conv1d")
            before, now = best_of(repeats, lambda: reference_seconds(spec, task, 0, 1, device),
                                  lambda: seconds(spec, task, [0], 1, device))
            print(f"{name:<6} {family:<7} {before:>8.2f} {now:>7.2f} {now / before:>10.2f}", flush=True)
    print(f"load average now {load_average()}")


def processes(tasks, families, repeats, n_train, args) -> None:
    print("\n3. Two seeds, one epoch each, width 64: 1 process x 2 threads (seeds in turn) vs 2 processes x 1 thread")
    print(f"{'task':<6} {'family':<7} {'1x2 s':>7} {'2x1 s':>7} {'1x1 s':>7} {'(1x2)/(2x1)':>11}")
    for name, task in tasks.items():
        path = getattr(args, name)
        for family in families:
            spec = TrialSpec(family=family, width=64, layers=1, epochs=1, batch_size=64)
            plans = ([([0, 1], 2)], [([0], 1), ([1], 1)], [([0, 1], 1)])
            shared, split, single = best_of(repeats, *[
                (lambda plan=plan: workers_seconds(name, path, n_train, args.val, spec, plan)) for plan in plans])
            print(f"{name:<6} {family:<7} {shared:>7.2f} {split:>7.2f} {single:>7.2f} {shared / split:>11.2f}",
                  flush=True)
    print(f"load average now {load_average()}")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python bench/throughput.py", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="fewer families, widths and repeats, smaller subsets")
    p.add_argument("--har", default=str(SHARED / "UCI_HAR_Dataset.zip"))
    p.add_argument("--names", default=str(SHARED / "names"))
    p.add_argument("--tasks", nargs="+", choices=["har", "names"], default=["har", "names"])
    p.add_argument("--train", type=int, default=None, help="train examples per task (0 = all; default 3000, quick 1000)")
    p.add_argument("--val", type=int, default=500, help="validation examples per task (0 = all)")
    p.add_argument("--repeats", type=int, default=None, help="timings are the best of this many (default 3, quick 2)")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="device for section 2")
    p.add_argument("--sections", type=int, nargs="+", choices=[1, 2, 3], default=[1, 2, 3])
    p.add_argument("--families", nargs="+", choices=sorted(FAMILIES), default=None,
                   help="default: all (quick: linear dense conv1d lstm)")
    args = p.parse_args(argv)
    n_train = args.train if args.train is not None else (1000 if args.quick else 3000)
    repeats = args.repeats if args.repeats is not None else (2 if args.quick else 3)
    for name, value, minimum in (("--train", n_train, 0), ("--val", args.val, 0), ("--repeats", repeats, 1),
                                 ):
        if value < minimum:
            fail(f"{name} must be an int >= {minimum}, got {value}")
    tasks = {}
    for name in args.tasks:
        if not Path(getattr(args, name)).exists():
            fail(f"--{name} {getattr(args, name)}: no such file or folder")
        try:
            tasks[name] = load(name, getattr(args, name), n_train, args.val)
        except DataError as exc:
            fail(str(exc))
    families = args.families or (["linear", "dense", "conv1d", "lstm"] if args.quick else list(FAMILIES))
    cores = os.cpu_count()

    print(f"torch {torch.__version__}, {cores} cores, load average {load_average()} (1/5/15 min)")
    print(f"data: train examples per task {n_train or 'all'}, validation {args.val or 'all'}; "
          f"timings: best of {repeats}, interleaved")
    peak = {}
    for threads in (1, 2):
        torch.set_num_threads(threads)
        peak[threads] = matmul_gflops()
        print(f"float32 matmul 2048x2048, {threads} thread(s): {peak[threads]:.1f} GFLOP/s (best of 5)")

    for task in tasks.values():  # one-time costs (lazy initialisation, allocator) stay out of the timings
        for family in families:
            seconds(TrialSpec(family=family, epochs=1), Task(task.name, subset(task.train, 64), subset(task.val, 64),
                                                             task.test, task.class_names), [0, 1], 1)

    if 1 in args.sections:
        per_family(tasks, families, repeats, peak)
    if 2 in args.sections:
        loops(tasks, families, repeats, args.device)
    if 3 in args.sections:
        processes(tasks, families, repeats, n_train, args)


if __name__ == "__main__":
    main()
