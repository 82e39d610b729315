"""What more training subjects give MiniRocket's ridge and the minirocket family's trained head, on validation.

    python bench/refit_gain.py [--folds 0,1,2,3] [--seeds 2] [--drop 4] [--data PATH]

The report refits its recommendation and the baselines on train + validation (about 30 % more subjects) before
the one test. This simulates that step without the test split: on validation fold f, each seed's features
(the family's MiniRocket corner, its biases and standardisation fitted on the whole training split, as the
training loop draws them for seeds 50+f, 60+f, ...) feed two classifiers, each trained once on the training
split less `--drop` of its subjects (every fourth) and once on all of it:
ridge (the family's ridge start: RidgeClassifierCV's alpha grid and leave-one-out choice) and the corner's head
(its learning rate, weight decay, epochs, batch size, AdamW with the cosine schedule, in a plain loop).
Printed per fold and seed: each one's validation accuracy with fewer and with all subjects, and the gain.
"""
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

import numpy as np  # noqa: E402
import torch  # noqa: E402

from minirocket_variants import head_accuracy, standardised, transform_all  # noqa: E402
from models import create_model  # noqa: E402
from search.tasks import HAR_CORNER, load  # noqa: E402
from search.train import TrialSpec  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folds", default="0,1,2,3", help="validation folds, comma-separated (default 0,1,2,3)")
    parser.add_argument("--seeds", type=int, default=2, help="seeds per fold (default 2)")
    parser.add_argument("--drop", type=int, default=4, help="training subjects left out of the smaller fit (default 4)")
    parser.add_argument("--data", help="UCI HAR (default: HAR_DATA or the download cache)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    spec = TrialSpec(**HAR_CORNER)
    print("fold  seed  ridge: fewer   all    gain     head: fewer   all    gain")
    gains = {"ridge": [], "head": []}
    for fold in (int(f) for f in args.folds.split(",")):
        task = load("har", args.data, fold=fold)
        with np.load(task.info["cache"]) as arrays:  # the loader's parsed copy: each training window's subject
            subjects = arrays["subject_train"]
        rows_subjects = subjects[~np.isin(subjects, task.info["subjects"]["val"])]  # the training split's, in order
        left_out = task.info["subjects"]["train"][1::4][:args.drop]
        fewer = torch.from_numpy(~np.isin(rows_subjects, left_out))
        for seed in (50 + fold + 10 * i for i in range(args.seeds)):
            torch.manual_seed(seed)
            model = create_model(spec, task.input_size, task.num_classes, task.seq_len)
            model.fit_features(task.train.x, task.train.lengths)
            z, zv = (transform_all(model, split.x, split.lengths) for split in (task.train, task.val))
            row = {}
            for name, rows in (("fewer", fewer), ("all", torch.ones_like(fewer))):
                # Standardised by the rows it is trained on, as a fit on them would be.
                zs, zvs = standardised(z[rows], zv)
                ys = task.train.y[rows]
                with torch.no_grad():  # ridge_start runs inside fit_features' no_grad
                    model.ridge_start(zs, ys)
                    ridge = model.head(zvs.float()).argmax(1)
                row[f"ridge {name}"] = (ridge == task.val.y).float().mean().item()
                row[f"head {name}"] = head_accuracy(spec, seed, zs, ys, zvs, task.val.y)
            for kind in gains:
                gains[kind].append(row[f"{kind} all"] - row[f"{kind} fewer"])
            print(f"{fold:4d}  {seed:4d}        {row['ridge fewer']:.4f}  {row['ridge all']:.4f}  "
                  f"{gains['ridge'][-1]:+.4f}         {row['head fewer']:.4f}  {row['head all']:.4f}  "
                  f"{gains['head'][-1]:+.4f}", flush=True)
    print(f"mean gain: ridge {statistics.fmean(gains['ridge']):+.4f}, head {statistics.fmean(gains['head']):+.4f}")


if __name__ == "__main__":
    main()
