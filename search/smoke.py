"""Smoke run: every model family trains on both tasks for a short while, one line per (task, family).

    python -m search.smoke [--har PATH] [--names PATH] [--epochs 1]

Data is found as everywhere else: the path given, then HAR_DATA / NAMES_DATA, then the cache, then a
download. Exit status 0 when every run finished, 1 when one diverged, 2 on bad data or arguments.
"""
from __future__ import annotations

import argparse
import sys
import time

from data import DataError, load_har, load_names
from models import FAMILIES, param_count

from .train import TrialSpec, train_seeds

SEED = 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m search.smoke", description=__doc__.splitlines()[0])
    parser.add_argument("--har", metavar="PATH", help="UCI HAR folder or zip (default: HAR_DATA, cache, download)")
    parser.add_argument("--names", metavar="PATH", help="surnames folder or zip (default: NAMES_DATA, cache, download)")
    parser.add_argument("--epochs", type=int, default=1, help="epochs per model (default 1)")
    args = parser.parse_args(argv)
    try:
        TrialSpec(family="linear", epochs=args.epochs)  # checks --epochs before any data is read
        tasks = [load_har(args.har), load_names(args.names)]
        unfinished = 0
        for task in tasks:
            for family in FAMILIES:
                spec = TrialSpec(family=family, epochs=args.epochs)
                started = time.perf_counter()
                (result,) = train_seeds(spec, task, [SEED])
                seconds = time.perf_counter() - started
                final = result.final
                status = "" if result.status == "finished" else f"  {result.status}"
                unfinished += result.status != "finished"
                params = param_count(spec, task.input_size, task.num_classes, task.seq_len)
                print(f"{task.name:<6} {family:<7} params {params:>8,}  seconds {seconds:6.2f}"
                      f"  val accuracy {final['accuracy']:.3f}"
                      f"  balanced accuracy {final['balanced_accuracy']:.3f}{status}", flush=True)
    except (DataError, ValueError) as exc:
        print("error: " + " ".join(str(exc).splitlines()), file=sys.stderr)
        sys.exit(2)
    if unfinished:
        print(f"error: {unfinished} run(s) did not finish", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
