"""The names data as a user would bring it: surname,language CSVs, with the names task's own test surnames.

    python bench/names_csv.py OUT [--data NAMES_DIR]     # writes OUT/surnames_TRAIN.csv and OUT/surnames_TEST.csv
    python -m search.fit OUT/surnames_TRAIN.csv --test OUT/surnames_TEST.csv --sampler-seed 0
    python -m search.report surnames

The training file holds the names task's training and validation surnames (search.fit draws its own validation
from it), the test file the names task's test surnames: so the file's test numbers and the names task's
(reports/names) are measured on the same strings.
"""
from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script from anywhere

from data.names import NAMES_URL, _read_files, _validate_download, split_surnames  # noqa: E402
from data.source import resolve  # noqa: E402


def write(path: Path, rows: list[tuple[str, str]]) -> None:
    with open(path, "w", encoding="utf-8", newline="") as f:
        out = csv.writer(f)
        out.writerow(["surname", "language"])
        out.writerows(rows)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out", help="folder to write surnames_TRAIN.csv and surnames_TEST.csv into")
    p.add_argument("--data", default=None, help="names folder or zip (default: $NAMES_DATA, else downloaded)")
    args = p.parse_args()
    source = resolve(args.data, "NAMES_DATA", "names_data.zip", "NAMES_DATA_URL", NAMES_URL, _validate_download)
    splits = split_surnames(_read_files(Path(source)), split_seed=0)  # the names task's split, fold 0
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write(out / "surnames_TRAIN.csv", splits["train"] + splits["val"])
    write(out / "surnames_TEST.csv", splits["test"])
    print(f"{out / 'surnames_TRAIN.csv'}: {len(splits['train']) + len(splits['val'])} rows; "
          f"{out / 'surnames_TEST.csv'}: {len(splits['test'])} rows")


if __name__ == "__main__":
    main()
