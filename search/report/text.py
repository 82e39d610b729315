"""Formatting of the report's text: numbers, mean ± std over seeds, seeds, durations, tables and images."""
from __future__ import annotations

import math

from .analysis import mean_std

LABEL = {"accuracy": "accuracy", "balanced_accuracy": "balanced accuracy", "macro_f1": "macro-F1",
         "acc_bal_hmean": "hmean(acc, bal acc)"}


def fmt(values: list, digits: int = 3) -> str:
    """mean ± std over the finite values (a diverged seed has none); the count when some are missing."""
    finite = [v for v in values if v is not None and math.isfinite(v)]
    if not finite:
        return "n/a"
    mean, std = mean_std(finite)
    text = f"{mean:.{digits}f} ± {std:.{digits}f}" if len(finite) > 1 else f"{mean:.{digits}f}"
    return text if len(finite) == len(values) else f"{text} ({len(finite)} of {len(values)} seeds)"


def num(value, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def duration(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h {rest // 60:02d}m {rest % 60:02d}s" if hours else f"{rest // 60}m {rest % 60:02d}s"


def seed_range(seeds: list[int]) -> str:
    return f"{seeds[0]}–{seeds[-1]}" if len(seeds) > 1 and seeds == list(range(seeds[0], seeds[-1] + 1)) \
        else ", ".join(map(str, seeds))


def seeds_named(seeds: list[int]) -> str:
    """'seed 100' or 'seeds 100–102'."""
    return f"seed{'s' * (len(seeds) > 1)} {seed_range(seeds)}"


def table(header: list[str], rows: list[list]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows] + [""]


def image(name: str, alt: str, caption: str) -> list[str]:
    return [f"![{alt}]({name})", "", f"*{caption}*", ""]


def search_cell(value: float, complete: bool) -> str:
    """The validation value the search saw; † marks a pruned trial (its last reported value)."""
    return f"{value:.3f}" + ("" if complete else " †")
