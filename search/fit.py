"""python -m search.fit PATH: run (or continue) a study on a user's own sequence-classification file.

    python -m search.fit GunPoint_TRAIN.ts --trials 50            # finds GunPoint_TEST.ts beside it
    python -m search.fit recordings.npz                            # x_train (N, T, C), y_train [, x_test ...]
    python -m search.fit surnames.csv --text-column surname --label-column language

The study is named after the file; `search.report NAME`, `search.export NAME --trial N` and the
dashboard take it as they take a registered task. The options of search.har apply.
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from .cli import parser as study_parser, run


def task_name(path: str) -> str:
    """The study's name: the file's name without its extension and a UCR/UEA `_TRAIN` suffix."""
    return re.sub(r"_TRAIN$", "", Path(path).name.split(".")[0], flags=re.IGNORECASE) or "data"


def parser() -> argparse.ArgumentParser:
    p = study_parser("file", prog="python -m search.fit",
                     description="Run (or continue) an Optuna study on your own sequence-classification file: "
                                 "UCR/UEA .ts, NumPy .npz, or text .csv/.tsv.")
    p.add_argument("path", help="NAME_TRAIN.ts (its NAME_TEST.ts is found beside it), a .npz, or a .csv/.tsv")
    p.add_argument("--test", default=None, metavar="PATH",
                   help="the test split's file (default: NAME_TEST.ts beside a .ts file, x_test in a .npz, "
                        "else 20 %% of the file held out)")
    text = p.add_argument_group("text files (.csv, .tsv)")
    text.add_argument("--text-column", default=None, help="the column holding the text (default: the first)")
    text.add_argument("--label-column", default=None, help="the column holding the label (default: the second)")
    text.add_argument("--group-column", default=None,
                      help="rows of one group stay in one split (default: identical texts form a group)")
    p.add_argument("--split-seed", type=int, default=0, help="the seed of the held-out and validation splits")
    return p


def source_of(args: argparse.Namespace) -> dict:
    """How to read the file again: workers, reports and exports load it from these options."""
    path = Path(args.path)
    if not path.is_file():
        raise SystemExit(f"error: {args.path}: no such file")
    source = {"path": str(path.resolve()), "split_seed": args.split_seed}
    if args.test is not None:
        if not Path(args.test).is_file():
            raise SystemExit(f"error: --test {args.test}: no such file")
        source["test"] = str(Path(args.test).resolve())
    for name in ("text_column", "label_column", "group_column"):
        if getattr(args, name) is not None:
            source[name] = getattr(args, name)
    return source


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    try:
        source = source_of(args)
    except SystemExit as exc:
        print(exc, file=sys.stderr)
        sys.exit(2)
    run(task_name(args.path), args, source)


if __name__ == "__main__":
    main()
