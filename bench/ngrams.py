"""What the n-gram part adds, on validation only: the same networks with and without `ngrams`.

    python bench/ngrams.py [--seeds 1] [--epochs 10] [--only NAME,NAME] [--data PATH]

Each configuration trains on the names training split (seeds 0, 1, ...: search seeds, as a study's would be;
the test split is never touched) and is scored on the validation split at tau 0 and at the post-hoc
logit-adjustment tau with the best acc_bal_hmean there (search.decision.TAUS), mean over seeds. The
configurations are the ones bench/README.md quotes ("The n-gram part"): a one-layer conv1d, the names warm-start
GRU and the linear family (the n-gram part almost alone), each plain and with 1-3- or 1-5-grams.
"""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script from anywhere

import numpy as np  # noqa: E402
import torch  # noqa: E402

from search.tasks import load as load_task  # noqa: E402
from search.decision import TAUS, frontier  # noqa: E402
from search.tasks import NAMES  # noqa: E402
from search.train import TrialSpec, log_prior, train_seeds  # noqa: E402

GRU = TrialSpec(**{**NAMES.warm_starts[0], "width": 82, "lr": 4.9e-3, "clipnorm": 4.0, "weight_decay": 2.4e-6,
                   "dropout": 0.02})  # the GRU #33 the example report recommended before the n-gram part
CONV = replace(GRU, family="conv1d", layers=1, width=64, bidirectional=False, kernel_size=5, batch_size=64)
LINEAR = replace(GRU, family="linear", batch_size=64, lr=3e-3)
CONFIGURATIONS = {"conv1d": CONV, "conv1d+3": replace(CONV, ngrams=3), "conv1d+5": replace(CONV, ngrams=5),
                  "gru": GRU, "gru+5": replace(GRU, ngrams=5), "linear": LINEAR, "linear+5": replace(LINEAR, ngrams=5)}


def scored(spec: TrialSpec, task, seeds: list[int]) -> dict:
    """Validation accuracy / balanced accuracy / acc_bal_hmean per tau, mean over seeds, and seconds per seed."""
    started = time.perf_counter()
    results = train_seeds(spec, task, seeds)
    prior = log_prior(task.train, task.num_classes)
    points = [frontier(r.logits["val"], task.val.y.numpy(), prior) for r in results]
    mean = {key: np.mean([[p[i][key] for i in range(len(TAUS))] for p in points], axis=0)
            for key in ("accuracy", "balanced_accuracy", "acc_bal_hmean")}
    return {"mean": mean, "seconds": (time.perf_counter() - started) / len(seeds)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=1, help="seeds per configuration (0, 1, ...)")
    parser.add_argument("--epochs", type=int, default=10, help="epochs per configuration (the names space's 10)")
    parser.add_argument("--only", default=",".join(CONFIGURATIONS), help="configurations, comma-separated")
    parser.add_argument("--data", help="the names data (default: NAMES_DATA or the download cache)")
    args = parser.parse_args(argv)
    names = [n for n in args.only.split(",") if n]
    unknown = [n for n in names if n not in CONFIGURATIONS]
    if unknown or args.seeds < 1 or args.epochs < 1:
        problem = (f"--only: unknown configuration(s) {unknown}; known: {list(CONFIGURATIONS)}" if unknown
                   else f"--seeds and --epochs must be ints >= 1, got {args.seeds} and {args.epochs}")
        print(f"error: {problem}", file=sys.stderr)
        sys.exit(2)
    torch.set_num_threads(1)
    task = load_task("names", args.data)
    print(f"{'configuration':<14} {'s/seed':>7}  {'tau 0: acc / bal (hmean)':<26}  best tau: acc / bal (hmean)")
    for name in names:
        found = scored(replace(CONFIGURATIONS[name], epochs=args.epochs), task, list(range(args.seeds)))
        m = found["mean"]
        best = int(np.argmax(m["acc_bal_hmean"]))  # the first maximum: the smallest tau
        cell = lambda i: f"{m['accuracy'][i]:.3f} / {m['balanced_accuracy'][i]:.3f} ({m['acc_bal_hmean'][i]:.3f})"  # noqa: E731
        print(f"{name:<14} {found['seconds']:7.1f}  {cell(0):<26}  tau {TAUS[best]:g}: {cell(best)}", flush=True)


if __name__ == "__main__":
    main()
