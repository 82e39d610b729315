"""How far does one training run move a configuration's validation value, against the examples' standard error?

    python bench/fold_noise.py [TASK] [--seeds 3] [--folds 0,1,2,3] [--data PATH] [--ridge-most N]

The task's first try (its `standard`, search/tasks.py: HAR's MiniRocket corner) is trained on each validation
fold (other subjects held out; the test split is never read) with the seeds 50+f, 60+f, ... on fold f, one
thread. Printed per fold: each seed's validation accuracy, their spread (max - min) and standard deviation,
the examples' one standard error of that accuracy (search.rerank.margin over the fold's validation examples),
and the seeds' ensemble (mean of probabilities). A choice value is one seed per re-ranking fold: where the
seeds' spread is several examples' errors, a lead within it is the training run's luck, not the configuration's.
--ridge-most N starts a minirocket head at ridge on training splits of up to N examples for this run
(models.minirocket.RIDGE_MOST, 3,000 in the product; HAR's splits are larger).
"""
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

import torch  # noqa: E402

import models.minirocket as minirocket  # noqa: E402
from search.rerank import margin  # noqa: E402
from search.tasks import load, standard_of  # noqa: E402
from search.train import train_seeds  # noqa: E402


def fold_parser(doc: str, task_help: str) -> argparse.ArgumentParser:
    """The arguments of a script that trains a task's first try on its validation folds (minirocket_variants.py too)."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("task", nargs="?", default="har", help=task_help)
    parser.add_argument("--seeds", type=int, default=3, help="seeds per fold (default 3)")
    parser.add_argument("--folds", default="0,1,2,3", help="validation folds, comma-separated (default 0,1,2,3)")
    parser.add_argument("--data", help="the task's data (default: its environment variable or download cache)")
    return parser


def main() -> None:
    parser = fold_parser(__doc__, "a registered task with a first try (default har)")
    parser.add_argument("--ridge-most", type=int, default=minirocket.RIDGE_MOST, help="largest training split a "
                        f"minirocket head starts at ridge on (default {minirocket.RIDGE_MOST})")
    args = parser.parse_args()
    minirocket.RIDGE_MOST = args.ridge_most
    torch.set_num_threads(1)
    folds = [int(f) for f in args.folds.split(",")]
    spec = standard_of(load(args.task, args.data))
    if spec is None:
        parser.error(f"task {args.task!r} has no first try (TaskEntry.standard)")
    print(f"{args.task}: {spec.family} width {spec.width}, {spec.epochs} epochs, ridge start on up to "
          f"{minirocket.RIDGE_MOST:,} training examples; validation accuracy per seed")
    print("fold  examples  seeds                     spread   std     examples' error  ensemble")
    for fold in folds:
        task = load(args.task, args.data, fold=fold)
        results = train_seeds(spec, task, [50 + fold + 10 * i for i in range(args.seeds)])
        values = [r.history["val_accuracy"][-1] for r in results]
        probabilities = sum(r.logits["val"].softmax(-1) for r in results)
        ensemble = (probabilities.argmax(-1) == task.val.y).float().mean().item()
        spread = statistics.stdev(values) if len(values) > 1 else 0.0
        print(f"{fold:4d}  {len(task.val):8d}  {' '.join(f'{v:.4f}' for v in values):24s}  "
              f"{max(values) - min(values):.4f}   {spread:.4f}  {margin(statistics.fmean(values), len(task.val)):.4f}"
              f"           {ensemble:.4f}", flush=True)


if __name__ == "__main__":
    main()
