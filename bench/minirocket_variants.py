"""Variants of MiniRocket's features under the minirocket family's head, on a task's validation folds.

    python bench/minirocket_variants.py [TASK] [--folds 0,1,2,3] [--seeds 3] [--data PATH]

On fold f with seeds 50+f, 60+f, ... (bench/fold_noise.py's), the task's first try's head (its learning rate,
weight decay, epochs and batch size; AdamW with the cosine schedule, as the training loop trains it, here in a
plain loop over precomputed standardised features) is trained on each variant of its features:

- `minirocket`: the family's own, MiniRocket's (drawn for that seed as the training loop draws them);
- `draws 3`, `draws 6`: 3 or 6 independent draws of MiniRocket's random choices (each kernel and dilation's
  channels, each bias's training example) sharing the same number of features;
- `first differences`: MultiRocket's second series, half the features on the series and half on their first
  differences (a draw of its own).

Printed: each variant's validation accuracy per seed and its mean per fold and over the folds, one thread. The
test split is never read.
"""
from __future__ import annotations

import math
import statistics
import sys
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from fold_noise import fold_parser  # noqa: E402
from models import create_model  # noqa: E402
from search.tasks import load, standard_of  # noqa: E402


def features(spec, seed: int, width: int, train: tuple, val: tuple, classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """One draw's features of the (x, lengths) train and val pairs, biases fitted on train, as SeedRun fits them
    (the head's initialisation comes before the biases' draws, so the class count matters)."""
    torch.manual_seed(seed)
    model = create_model(replace(spec, width=width), train[0].shape[2], classes, train[0].shape[1])
    model.fit_features(*train)
    return transform_all(model, *train), transform_all(model, *val)


def transform_all(model, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """A fitted model's features of a whole split, in chunks that bound memory."""
    return torch.cat([model.transform(x[i:i + 512], lengths[i:i + 512]) for i in range(0, len(x), 512)])


def standardised(z: torch.Tensor, *others: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """z and others standardised (float64) by z's mean and variance, as the family's batch norm standardises."""
    mean, std = z.double().mean(0), z.double().var(0, unbiased=False).add(1e-5).sqrt()
    return tuple((t - mean) / std for t in (z, *others))


def differences(x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return x[:, 1:] - x[:, :-1], lengths - 1


def variant(name: str, spec, seed: int, task) -> tuple[torch.Tensor, torch.Tensor]:
    train, val, k = (task.train.x, task.train.lengths), (task.val.x, task.val.lengths), task.num_classes
    if name == "minirocket":
        return features(spec, seed, spec.width, train, val, k)
    if name.startswith("draws"):
        draws = int(name.split()[1])
        parts = [features(spec, seed * 1000 + d, math.ceil(spec.width / draws), train, val, k) for d in range(draws)]
    else:
        half = spec.width // 2
        parts = [features(spec, seed, spec.width - half, train, val, k),
                 features(spec, seed + 500, half, differences(*train), differences(*val), k)]
    return torch.cat([p[0] for p in parts], 1), torch.cat([p[1] for p in parts], 1)


def head_accuracy(spec, seed: int, z: torch.Tensor, y: torch.Tensor, zv: torch.Tensor, yv: torch.Tensor) -> float:
    """The validation accuracy of spec's head trained on standardised training features z (see `standardised`)."""
    z, zv = z.float(), zv.float()
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    head = torch.nn.Linear(z.shape[1], int(y.max()) + 1)
    optimizer = torch.optim.AdamW(head.parameters(), lr=spec.lr, weight_decay=spec.weight_decay, fused=True)
    for epoch in range(spec.epochs):
        for group in optimizer.param_groups:
            group["lr"] = spec.lr * 0.5 * (1 + math.cos(math.pi * epoch / spec.epochs))
        order = torch.randperm(len(y), generator=generator)
        for i in range(0, len(y), spec.batch_size):
            batch = order[i:i + spec.batch_size]
            optimizer.zero_grad()
            F.cross_entropy(head(F.dropout(z[batch], spec.dropout)), y[batch]).backward()
            optimizer.step()
    with torch.no_grad():
        return (head(zv).argmax(1) == yv).float().mean().item()


def main() -> None:
    parser = fold_parser(__doc__, "a registered task whose first try is minirocket (default har)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    spec = standard_of(load(args.task, args.data))
    if spec is None or spec.family != "minirocket":
        parser.error(f"task {args.task!r} has no minirocket first try (TaskEntry.standard)")
    names = ("minirocket", "draws 3", "draws 6", "first differences")
    means = {name: [] for name in names}
    for fold in (int(f) for f in args.folds.split(",")):
        task = load(args.task, args.data, fold=fold)
        for name in names:
            values = []
            for seed in (50 + fold + 10 * i for i in range(args.seeds)):
                z, zv = standardised(*variant(name, spec, seed, task))
                values.append(head_accuracy(spec, seed, z, task.train.y, zv, task.val.y))
            means[name].append(statistics.fmean(values))
            print(f"fold {fold}  {name:18s} {' '.join(f'{v:.4f}' for v in values)}   mean {means[name][-1]:.4f}",
                  flush=True)
    for name in names:
        print(f"{name:18s} mean over folds {statistics.fmean(means[name]):.4f}")


if __name__ == "__main__":
    main()
