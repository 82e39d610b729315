"""The minirocket family's head against ridge on the same features, on a user's file's validation split.

    python bench/minirocket_head.py PATH [--seeds 3] [--fold 0]

For each seed: the family's torch features (width 119, MiniRocket's 9,996; channels and biases drawn as the
training loop draws them for that seed), then on the validation split of the given fold (the test file is
never read into a score): RidgeClassifierCV (alphas logspace(-3, 3, 10), as the baseline) and logistic
regression (C 0.01) on the standardised features; the family's MiniRocket corner as a study trains it
(search.tasks.for_data: on a small file its head starts at ridge and lr 1e-6 keeps it); the same head trained
at lr 3e-4 from the ridge start; and at lr 3e-4 from a random start (the ridge start off: the corner before it).
"""
from __future__ import annotations

import argparse
import statistics
import sys
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

import numpy as np  # noqa: E402
import torch  # noqa: E402
from sklearn.linear_model import LogisticRegression, RidgeClassifierCV  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

import models.minirocket  # noqa: E402
from data import load_file  # noqa: E402
from models import ModelSpec, create_model  # noqa: E402
from search.tasks import for_data  # noqa: E402
from search.train import TrialSpec, train_seeds  # noqa: E402


def trained(spec: TrialSpec, task, seed: int, ridge: bool = True) -> float:
    """The validation accuracy after the last epoch of spec trained on seed (ridge=False: no ridge start)."""
    most = models.minirocket.RIDGE_MOST
    models.minirocket.RIDGE_MOST = most if ridge else 0
    try:
        return train_seeds(spec, task, [seed])[0].history["val_accuracy"][-1]
    finally:
        models.minirocket.RIDGE_MOST = most


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", help="a user's training file (NAME_TRAIN.ts finds its _TEST sibling)")
    parser.add_argument("--seeds", type=int, default=3, help="seeds 0, 1, ... (default 3)")
    parser.add_argument("--fold", type=int, default=0, help="validation fold (default 0, the search's)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    task = load_file(args.path, fold=args.fold)
    corner = TrialSpec(**for_data(task).warm_starts[0])
    y_train, y_val = task.train.y.numpy(), task.val.y.numpy()
    faster = replace(corner, lr=3e-4)
    rows = {"ridge": [], "logistic C=0.01": [], f"corner (lr {corner.lr:.0e})": [], "lr 3e-4, ridge start": [],
            "lr 3e-4, random start": []}
    for seed in range(args.seeds):
        torch.manual_seed(seed)  # as SeedRun builds and fits the model
        model = create_model(ModelSpec("minirocket", width=119), task.input_size, task.num_classes, task.seq_len)
        model.fit_features(task.train.x, task.train.lengths)
        train, val = (model.transform(s.x, s.lengths).numpy() for s in (task.train, task.val))
        ridge = make_pipeline(StandardScaler(), RidgeClassifierCV(alphas=np.logspace(-3, 3, 10))).fit(train, y_train)
        rows["ridge"].append(ridge.score(val, y_val))
        logistic = make_pipeline(StandardScaler(), LogisticRegression(C=0.01, max_iter=3000)).fit(train, y_train)
        rows["logistic C=0.01"].append(logistic.score(val, y_val))
        rows[f"corner (lr {corner.lr:.0e})"].append(trained(corner, task, seed))
        rows["lr 3e-4, ridge start"].append(trained(faster, task, seed))
        rows["lr 3e-4, random start"].append(trained(faster, task, seed, ridge=False))
        print(f"seed {seed}: ridge alpha {ridge[-1].alpha_:.3g}", flush=True)
    print(f"{task.name}, fold {args.fold}: {len(task.train)} training and {len(task.val)} validation series; "
          f"validation accuracy per seed, mean")
    for name, found in rows.items():
        print(f"  {name:22s} {' '.join(f'{v:.3f}' for v in found)}   {statistics.fmean(found):.3f}")


if __name__ == "__main__":
    main()
