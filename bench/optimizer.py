"""AdamW's step on CPU: the default (foreach) implementation against the fused one, on the names n-gram part.

    python bench/optimizer.py [--steps 180]

The n-gram part (models/ngrams.py) is a 65,536 x 18 embedding: every AdamW step updates all its rows. The
script times forward + backward + step over one epoch's worth of steps of 64 surnames, one torch thread,
and prints the seconds of each implementation and their ratio, measured in the same run.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from models.ngrams import BUCKETS, ngram_ids  # noqa: E402


def seconds(fused: bool, steps: int) -> float:
    torch.manual_seed(0)
    x = nn.functional.one_hot(torch.randint(0, 61, (64, 19)), 61).float()
    ids, real = ngram_ids(x, torch.randint(3, 19, (64,)), 3)
    part = nn.Embedding(BUCKETS, 18)
    optimizer = torch.optim.AdamW(part.parameters(), lr=1e-3, fused=fused)
    started = time.perf_counter()
    for _ in range(steps):
        optimizer.zero_grad()
        (part(ids) * real[..., None]).sum().backward()
        optimizer.step()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=180, help="AdamW steps (default 180: one epoch of the names CSV)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    default, fused = seconds(False, args.steps), seconds(True, args.steps)
    print(f"{args.steps} steps: default (foreach) {default:.2f} s, fused {fused:.2f} s, ratio {default / fused:.1f}x")


if __name__ == "__main__":
    main()
