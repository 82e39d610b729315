"""Peak memory and time of `python -m search.predict names` as its input grows: streaming keeps memory flat.

    python bench/predict_memory.py [--counts 1 10000 100000 1000000] [--model DIR] [--batch-size 1024]
                                   [--data NAMES_FOLDER] [--root CHECKOUT]

For each count, the real surnames of the names data set (repeated in order up to the count) are piped
into the command as a user runs it,

    python -m search.predict names --model DIR --format csv - < surnames.txt > /dev/null

and its peak resident memory ("Maximum resident set size" of /usr/bin/time -v) and wall time are printed. Without --model, a small names model is trained first (a GRU of width 16, 1 epoch on
the training split, 2 seeds); the command's memory is the same for any model of the same size. --root runs
another checkout's command (an older version, for a before/after comparison) on the same model folder.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script from anywhere
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "names"


def small_model(data: Path, folder: Path) -> Path:
    """A names model folder trained here in a few seconds."""
    import torch
    from data import load_names
    from search.modelfolder import save_model
    from search.train import TrialSpec, train_seeds
    torch.set_num_threads(1)
    task = load_names(data)
    spec = TrialSpec(family="gru", width=16, epochs=1)
    models = [r.model for r in train_seeds(spec, task, [100, 101], keep_models=True)]
    return save_model(folder, spec, task, models, [100, 101], {"tau": 0.0}, {}, {"study": "bench"})


def surnames_file(data: Path, count: int, path: Path) -> Path:
    names = [line.strip() for file in sorted(data.glob("*.txt"))
             for line in file.read_text(encoding="utf-8").splitlines() if line.strip()]
    with open(path, "w", encoding="utf-8") as out:
        for i in range(count):
            out.write(names[i % len(names)] + "\n")
    return path


def measure(model: Path, surnames: Path, batch_size: int, report: Path, root: Path = ROOT) -> tuple[float, float]:
    """(wall seconds, peak RSS in MiB) of one run of the command on the file, as /usr/bin/time measures them.

    Through /usr/bin/time, not a fork of this process: a forked child starts with its parent's peak RSS
    (this process holds torch and a trained model), which would hide the command's own."""
    command = [sys.executable, "-m", "search.predict", "names", "--model", str(model), "--format", "csv",
               "--batch-size", str(batch_size), "-"]
    with open(surnames, "rb") as stdin:
        subprocess.run(["/usr/bin/time", "-o", str(report), "-f", "%e %M", *command], stdin=stdin,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=root, check=True)
    wall, peak_kib = report.read_text().split()[-2:]
    return float(wall), int(peak_kib) / 1024


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--counts", type=int, nargs="+", default=[1, 10_000, 100_000, 1_000_000])
    p.add_argument("--model", type=Path, default=None, help="a names model folder (default: train a small one)")
    p.add_argument("--batch-size", type=int, default=1024)
    p.add_argument("--root", type=Path, default=ROOT, help="the checkout whose search.predict runs (default: this one)")
    p.add_argument("--data", type=Path, default=Path(os.environ.get("NAMES_DATA", DEFAULT_DATA)))
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model or small_model(args.data, Path(tmp) / "model")
        print(f"model {model}, batch size {args.batch_size}, python {sys.version.split()[0]}")
        print(f"{'surnames':>10} {'wall s':>8} {'peak RSS MiB':>13} {'us/surname':>11}")
        for count in args.counts:
            wall, peak = measure(model, surnames_file(args.data, count, Path(tmp) / "in.txt"), args.batch_size,
                                 Path(tmp) / "time.txt", args.root)
            print(f"{count:>10,} {wall:>8.1f} {peak:>13.1f} {wall / count * 1e6:>11.1f}", flush=True)


if __name__ == "__main__":
    main()
