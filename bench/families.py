"""The time-series families against conv1d on HAR validation, each given the same wall-clock budget.

    python bench/families.py [--budget 100] [--only NAME,NAME] [--threads 1] [--data PATH] [--no-aeon]

Each configuration trains one model (seed 0) on HAR's training subjects at a constant learning rate, epoch
after epoch, until its next epoch would overrun the budget (one epoch at least), and prints its validation
accuracy after that last epoch, the epochs it trained, seconds per epoch and in all. The peak over epochs is
printed too, for reference only: picking it would choose on validation. The test split is never touched.
For reference, aeon's MiniRocketClassifier (10,000 kernels, StandardScaler, RidgeClassifierCV) is fitted on
the same training windows (numba's compilation timed apart) and scored on the same validation windows.
The machine's load is printed before and after: the 2 cores are shared, so compare figures of one run.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script from anywhere

import numpy as np  # noqa: E402
import torch  # noqa: E402

from search.tasks import load as load_task  # noqa: E402
from models import param_count  # noqa: E402
from search.train import TrialSpec, train_seeds  # noqa: E402

# The HAR space's first warm start (the best conv1d of earlier studies), at a constant learning rate.
CONV = TrialSpec(family="conv1d", layers=3, width=64, dropout=0.09, kernel_size=3, pool=2, norm=True, clipnorm=1.0,
                 lr=1.4e-3, batch_size=32, weight_decay=2e-3, imbalance="class_weights", epochs=1000)
# The papers' training: Adam at 1e-3, batches of 64 (fcn 16, resnet 64), no weight decay; narrower than the papers
# (fcn 128, resnet 64, inception 32) so that an epoch takes seconds on a CPU core.
DEEP = TrialSpec(family="fcn", lr=1e-3, batch_size=64, epochs=1000)
CONFIGURATIONS = {
    "conv1d": CONV,
    "conv1d+augment": replace(CONV, augment=0.1),
    "fcn 32": replace(DEEP, family="fcn", layers=3, width=32),
    "fcn 32+augment": replace(DEEP, family="fcn", layers=3, width=32, augment=0.1),
    "resnet 16": replace(DEEP, family="resnet", layers=3, width=16),
    "inception 8x3": replace(DEEP, family="inception", layers=3, width=8, kernel_size=20),
    "inception 8x6": replace(DEEP, family="inception", layers=6, width=8, kernel_size=40),
    "minirocket 32": replace(DEEP, family="minirocket", width=32, weight_decay=1e-2),
    "minirocket 119": replace(DEEP, family="minirocket", width=119, weight_decay=1e-2),
    # The search's MiniRocket corner (search/tasks.py): 20 epochs at a cosine rate, then it stops.
    "minirocket cos20": replace(DEEP, family="minirocket", width=119, weight_decay=1e-2, lr=3e-4, epochs=20,
                                 schedule="cosine"),
}


def timed(spec: TrialSpec, task, budget: float) -> dict:
    """Train seed 0 until the next epoch would overrun the budget; the validation history and the seconds."""
    started = time.perf_counter()

    def enough(epoch: int, results) -> bool:
        spent = time.perf_counter() - started
        return spent + spent / epoch > budget

    (result,) = train_seeds(spec, task, [0], on_epoch=enough)
    accuracy = result.history["val_accuracy"]
    return {"accuracy": accuracy[-1], "peak": max(accuracy), "peak_epoch": int(np.argmax(accuracy)) + 1,
            "epochs": len(accuracy), "seconds": time.perf_counter() - started}


def aeon_minirocket(task, threads: int) -> dict:
    """aeon's MiniRocketClassifier on the task's training windows, scored on its validation windows."""
    from aeon.classification.convolution_based import MiniRocketClassifier
    as_numpy = lambda split: split.x.transpose(1, 2).numpy().astype(np.float32)  # noqa: E731  (N, channels, T)
    x_train, x_val = as_numpy(task.train), as_numpy(task.val)
    started = time.perf_counter()
    MiniRocketClassifier(n_kernels=84, random_state=0, n_jobs=threads).fit(x_train[:20], task.train.y[:20].numpy())
    compile_seconds = time.perf_counter() - started  # numba's first compilation (cached for later runs)
    started = time.perf_counter()
    model = MiniRocketClassifier(random_state=0, n_jobs=threads).fit(x_train, task.train.y.numpy())
    fit_seconds = time.perf_counter() - started
    started = time.perf_counter()
    accuracy = float((model.predict(x_val) == task.val.y.numpy()).mean())
    return {"accuracy": accuracy, "fit": fit_seconds, "predict": time.perf_counter() - started,
            "compile": compile_seconds}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--budget", type=float, default=100.0, help="seconds of training per configuration")
    parser.add_argument("--only", default=",".join(CONFIGURATIONS), help="configurations, comma-separated")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch (and numba) threads; one per process on the shared cores (bench/README.md)")
    parser.add_argument("--data", help="the HAR data (default: HAR_DATA or the download cache)")
    parser.add_argument("--aeon", action=argparse.BooleanOptionalAction, default=True,
                        help="also fit aeon's MiniRocketClassifier (default: on)")
    args = parser.parse_args(argv)
    names = [n for n in args.only.split(",") if n]
    unknown = [n for n in names if n not in CONFIGURATIONS]
    if unknown or args.budget <= 0 or args.threads < 1:
        problem = (f"--only: unknown configuration(s) {unknown}; known: {list(CONFIGURATIONS)}" if unknown
                   else f"--budget must be > 0 and --threads an int >= 1, got {args.budget} and {args.threads}")
        print(f"error: {problem}", file=sys.stderr)
        sys.exit(2)
    torch.set_num_threads(args.threads)
    task = load_task("har", args.data)
    print(f"HAR: {len(task.train)} training and {len(task.val)} validation windows; budget {args.budget:g} s, "
          f"{args.threads} threads; load average {os.getloadavg()[0]:.1f}", flush=True)
    print(f"{'configuration':<16} {'params':>8} {'epochs':>6} {'s/epoch':>7} {'seconds':>7}  val acc  (peak, epoch)")
    for name in names:
        spec = CONFIGURATIONS[name]
        found = timed(spec, task, args.budget)
        params = param_count(spec, task.input_size, task.num_classes, task.seq_len)
        print(f"{name:<16} {params:>8} {found['epochs']:>6} {found['seconds'] / found['epochs']:>7.1f} "
              f"{found['seconds']:>7.1f}  {found['accuracy']:.4f}  ({found['peak']:.4f}, {found['peak_epoch']})",
              flush=True)
    if args.aeon:
        found = aeon_minirocket(task, args.threads)
        print(f"{'aeon MiniRocket':<16} {'ridge':>8} {'-':>6} {'-':>7} {found['fit']:>7.1f}  {found['accuracy']:.4f}"
              f"  (fit {found['fit']:.1f} s, predict {found['predict']:.1f} s; numba compile "
              f"{found['compile']:.1f} s)", flush=True)
    print(f"load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
