"""MiniRocket as the report's baseline runs it (search.baselines.minirocket): HAR, three UCR/UEA problems, numba.

    python bench/minirocket.py [--data HAR_ZIP] [--seeds 3] [--threads 1] [--quick] [--skip-har] [--skip-compile]

1. numba: a small MiniRocket fit + transform (univariate and multivariate) in a fresh process with an empty
   NUMBA_CACHE_DIR, then again in a second process with the same folder: what the first run pays to compile.
2. HAR (default $HAR_DATA): fitted on the training subjects, validation accuracy; the test split once with
   that fit and once refitted on train + validation (as the report deploys it). Seed 0.
3. GunPoint, BasicMotions, JapaneseVowels from aeon's wheel, read as `python -m search.fit` reads a user's
   .ts file (data.load_file: a stratified fifth of the training file is validation, channels standardised
   on training, unequal lengths zero-padded to the longest training series); the test file's accuracy with
   the train-only fit and with the refit on the whole training file (the UCR protocol), mean ± std over the
   seeds (each seed: the split seed and MiniRocket's random_state).
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script from anywhere

import aeon  # noqa: E402
import numpy as np  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

from data import Task, load_file, load_har  # noqa: E402
from search.baselines import minirocket  # noqa: E402
from search.train import scores  # noqa: E402

UCR = ("GunPoint", "BasicMotions", "JapaneseVowels")
COMPILE = """
import time, numpy as np
from aeon.transformations.collection.convolution_based import MiniRocket
started = time.perf_counter()
for channels in (1, 3):
    x = np.random.default_rng(0).normal(size=(20, channels, 50))
    MiniRocket(n_kernels=84, random_state=0).fit(x).transform(x)
print(f"{time.perf_counter() - started:.2f}")
"""


def ucr_task(name: str, seed: int) -> Task:
    """A UCR/UEA problem of aeon's wheel read as a user's file is (search.fit's loader), split seed `seed`."""
    return load_file(Path(aeon.__file__).parent / "datasets" / "data" / name / f"{name}_TRAIN.ts", split_seed=seed)


def accuracy(task: Task, split: str, logprob: np.ndarray) -> dict:
    return scores(getattr(task, split).y.numpy(), logprob.argmax(1), task.num_classes)


def compile_times() -> list[float]:
    """Seconds of the same small MiniRocket run in two fresh processes sharing one empty numba cache folder."""
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "NUMBA_CACHE_DIR": cache}
        return [float(subprocess.run([sys.executable, "-c", COMPILE], env=env, check=True, capture_output=True,
                                     text=True).stdout.split()[-1]) for _ in range(2)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=os.environ.get("HAR_DATA"), help="the UCI HAR zip (default $HAR_DATA)")
    parser.add_argument("--seeds", type=int, default=3, help="seeds of the UCR/UEA problems")
    parser.add_argument("--threads", type=int, default=1, help="BLAS threads (MiniRocket's numba part uses 1)")
    parser.add_argument("--quick", action="store_true", help="1,000 kernels instead of 10,000")
    parser.add_argument("--skip-har", action="store_true")
    parser.add_argument("--skip-compile", action="store_true")
    args = parser.parse_args(argv)
    kernels = "1,000" if args.quick else "10,000"
    if not args.skip_compile:
        first, second = compile_times()
        print(f"numba: a small MiniRocket fit + transform (1 and 3 channels; after the imports), fresh process, "
              f"empty cache {first:.2f} s; again with that cache {second:.2f} s", flush=True)
    with threadpool_limits(limits=args.threads):
        if not args.skip_har:
            task = load_har(args.data)
            result = minirocket(task, "accuracy", args.quick, refit=True, seed=0)
            val, test = accuracy(task, "val", result.val_logprob), accuracy(task, "test", result.test_logprob)
            refit = accuracy(task, "test", result.refit_test_logprob)
            print(f"HAR MiniRocket {kernels} kernels, {args.threads} thread(s), train {len(task.train)} val "
                  f"{len(task.val)} test {len(task.test)}: fit + refit {result.seconds:.0f} s; val acc "
                  f"{val['accuracy']:.3f} bal {val['balanced_accuracy']:.3f}; test (train only) acc "
                  f"{test['accuracy']:.3f} bal {test['balanced_accuracy']:.3f}; test (refit train+val) acc "
                  f"{refit['accuracy']:.3f} bal {refit['balanced_accuracy']:.3f}; alpha {result.chosen['alpha']:g}",
                  flush=True)
        print(f"\nUCR/UEA, MiniRocket {kernels} kernels, test accuracy over seeds 0-{args.seeds - 1} (mean ± std)")
        print(f"{'problem':<16} {'train/val/test':>15} {'val':>13} {'test, train only':>17} {'test, refit':>13} "
              f"{'s/seed':>7}")
        for name in UCR:
            found = {"val": [], "test": [], "refit": []}
            started = time.perf_counter()
            for seed in range(args.seeds):
                task = ucr_task(name, seed)
                result = minirocket(task, "accuracy", args.quick, refit=True, seed=seed)
                found["val"].append(accuracy(task, "val", result.val_logprob)["accuracy"])
                found["test"].append(accuracy(task, "test", result.test_logprob)["accuracy"])
                found["refit"].append(accuracy(task, "test", result.refit_test_logprob)["accuracy"])
            cells = [f"{statistics.mean(v):.3f} ± {statistics.pstdev(v):.3f}" for v in found.values()]
            sizes = f"{len(task.train)}/{len(task.val)}/{len(task.test)}"
            print(f"{name:<16} {sizes:>15} {cells[0]:>13} {cells[1]:>17} {cells[2]:>13} "
                  f"{(time.perf_counter() - started) / args.seeds:7.1f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
