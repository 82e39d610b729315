"""The n-gram part's ids per epoch: hashed in every batch's forward pass against once per split.

    python bench/ngram_ids.py [--data PATH] [--orders 3 5] [--repeats 3]

One epoch's batches of the names training split (batch size 64, one thread): the seconds ngram_ids takes
when each batch computes its own ids, and when the split's ids are computed once (search.batching.DeviceSplit)
plus what cutting each batch's rows from them adds to `take`. Best of --repeats.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from anywhere

import torch  # noqa: E402

from models.ngrams import ngram_ids  # noqa: E402
from search.batching import DeviceSplit, batches, epoch_order  # noqa: E402
from search.tasks import load  # noqa: E402


def best(repeats: int, work) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="the names data (default: NAMES_DATA or the download cache)")
    parser.add_argument("--orders", type=int, nargs="+", default=[3, 5], help="n-gram orders (default 3 5)")
    parser.add_argument("--repeats", type=int, default=3, help="timings per figure, the best kept (default 3)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    train = load("names", args.data).train
    generator = torch.Generator().manual_seed(0)
    cpu = torch.device("cpu")
    for order in args.orders:
        index = list(batches(epoch_order(train, 18, False, generator), train.lengths, 64, generator))
        each = best(args.repeats, lambda: [ngram_ids(train.x[i, :int(train.lengths[i].max())], train.lengths[i], order)
                                           for i in index])
        once = best(args.repeats, lambda: DeviceSplit(train, cpu, order))
        with_ids, plain = DeviceSplit(train, cpu, order), DeviceSplit(train, cpu)
        cut = best(args.repeats, lambda: [with_ids.take(i) for i in index]) - \
            best(args.repeats, lambda: [plain.take(i) for i in index])
        print(f"order {order}: {len(index)} batches; ids in every batch {each:.3f} s an epoch; once per split "
              f"{once:.3f} s, then {cut:.3f} s an epoch to cut each batch's rows")


if __name__ == "__main__":
    main()
