"""Parameter counts of stacked recurrent classifiers, PyTorch (two biases) vs textbook (one bias).

    python -m models.params rnn --input 30 --hidden 32 64 --classes 10 --seq-len 100
"""
from __future__ import annotations

import argparse

from torch import nn

from .recurrent import recurrent_params
from .registry import FAMILIES, is_recurrent

# Gate counts and cells are the families' own (models/rnn.py, gru.py, lstm.py): defined once.
GATES = {name: cls.gates for name, cls in FAMILIES.items() if is_recurrent(name)}
CELLS = {name: cls.cell for name, cls in FAMILIES.items() if is_recurrent(name)}
MAX_BUILT = 100_000_000  # parameters: the modules are built to check the formula only below this


def built_count(family: str, input_size: int, hidden: list[int], classes: int) -> int:
    """Count from real PyTorch modules: one single-layer cell per hidden size, then nn.Linear."""
    sizes = [input_size] + hidden
    cells = [CELLS[family](a, b) for a, b in zip(sizes, sizes[1:])]
    return sum(p.numel() for m in cells + [nn.Linear(hidden[-1], classes)] for p in m.parameters())


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m models.params", description=__doc__.splitlines()[0])
    parser.add_argument("family", choices=sorted(GATES))
    parser.add_argument("--input", type=int, required=True, help="features per time step")
    parser.add_argument("--hidden", type=int, nargs="+", required=True, help="hidden size of each layer")
    parser.add_argument("--classes", type=int, required=True)
    parser.add_argument("--seq-len", type=int, default=None, help="shown only: it does not change the count")
    args = parser.parse_args(argv)
    sizes = [("--input", args.input), ("--classes", args.classes)] + [("--hidden", h) for h in args.hidden]
    for name, value in sizes + ([("--seq-len", args.seq_len)] if args.seq_len is not None else []):
        if value < 1:
            parser.error(f"{name} must be an int >= 1, got {value}")
    gates = GATES[args.family]
    pytorch = recurrent_params(gates, args.input, args.hidden, args.classes, biases=2)
    textbook = recurrent_params(gates, args.input, args.hidden, args.classes, biases=1)
    # The formula needs no memory; building the modules does (4 bytes a parameter): skip that for huge sizes.
    built = built_count(args.family, args.input, args.hidden, args.classes) if pytorch <= MAX_BUILT \
        else f"not built, {pytorch * 4 / 1e9:.1f} GB of weights"
    print(f"{args.family} input={args.input} hidden={args.hidden} classes={args.classes}"
          + (f" seq_len={args.seq_len} (does not change the count)" if args.seq_len else ""))
    print(f"PyTorch (b_ih + b_hh per layer): {pytorch}  (built modules: {built})")
    print(f"textbook/Keras (one bias):       {textbook}  (difference {pytorch - textbook} = one bias vector per gate and layer)")


if __name__ == "__main__":
    main()
