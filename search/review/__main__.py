"""`python -m search.review [--quick] [--out reports] [--seeds N] [--threads 1]`: write the review report."""
from __future__ import annotations

import time

STARTED = time.perf_counter()  # the report's wall time counts the imports too

import argparse  # noqa: E402
import shlex  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402

from .. import signals  # noqa: E402
from ..artifacts import check_dir  # noqa: E402
from ..options import common  # noqa: E402
from . import run_review  # noqa: E402


class OneLineParser(argparse.ArgumentParser):
    def error(self, message: str):
        self.exit(2, f"error: {message}\n")


def main(argv: list[str] | None = None) -> None:
    signals.ctrl_c_raises()  # from here on Ctrl-C raises: files being written are cleaned up first
    argv = sys.argv[1:] if argv is None else argv
    parser = OneLineParser(prog="python -m search.review", parents=[common("threads")],
                           description="Answer the review questions with small experiments.")
    parser.add_argument("--quick", action="store_true", help="tiny budgets (for tests); not the study figures")
    parser.add_argument("--out", default="reports", help="the report goes to OUT/review/ (default reports)")
    parser.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1 for every experiment (default 3)")
    args = parser.parse_args(argv)
    for name in ("seeds", "threads"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be an int >= 1, got {getattr(args, name)}")
    out = Path(args.out)
    try:  # before the experiments: minutes of training must not end on a folder that cannot be written
        check_dir(str(out / "review"), create=False, option="--out")
    except ValueError as exc:
        parser.error(str(exc))
    torch.set_num_threads(args.threads)
    command = shlex.join(["python", "-m", "search.review", *argv])
    try:
        path = run_review(out, args.seeds, args.quick, command, STARTED)
    except KeyboardInterrupt:
        signals.exit_interrupted()
    print(path)


if __name__ == "__main__":
    main()
