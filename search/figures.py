"""The report's figures: small matplotlib functions, each writing one PNG (Agg backend, no display needed)."""
from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

COLORS = plt.get_cmap("tab10").colors


def save(fig, path: Path) -> str:
    """Write through a temporary file; no metadata that changes between runs. Returns the file name."""
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.png")
    try:
        fig.savefig(tmp, format="png", dpi=110, metadata={"Software": None})
        os.replace(tmp, path)
    finally:
        plt.close(fig)
        tmp.unlink(missing_ok=True)
    return path.name


def as_array(runs: list[list]) -> np.ndarray:
    """Per-seed curves of possibly different lengths (a diverged seed stops early) -> (seeds, epochs), NaN padded."""
    epochs = max((len(r) for r in runs), default=0)
    out = np.full((len(runs), epochs), np.nan)
    for i, run in enumerate(runs):
        out[i, :len(run)] = [np.nan if v is None else v for v in run]
    return out


def curves(path: Path, series: dict[str, list[list]], ylabel: str, title: str) -> str:
    """One line per label: the mean over seeds, with a band from the seeds' min to max."""
    fig, ax = plt.subplots(figsize=(6.4, 4), layout="constrained")
    for i, (label, runs) in enumerate(series.items()):
        values = as_array(runs)
        if values.size == 0:
            continue
        epochs = np.arange(1, values.shape[1] + 1)
        color = COLORS[i % len(COLORS)]
        with np.errstate(all="ignore"):
            ax.plot(epochs, np.nanmean(values, 0), marker="o", ms=3, color=color, label=label)
            ax.fill_between(epochs, np.nanmin(values, 0), np.nanmax(values, 0), color=color, alpha=0.2)
    ax.set(xlabel="epoch", ylabel=ylabel, title=title)
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save(fig, path)


def confusion(path: Path, matrix: np.ndarray, class_names: list[str], title: str) -> str:
    """Row-normalised confusion matrix: row = true class, column = predicted class."""
    n = len(class_names)
    size = max(4.0, 0.45 * n + 2)
    fig, ax = plt.subplots(figsize=(size + 1, size), layout="constrained")
    image = ax.imshow(matrix, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(n), class_names, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(n), class_names, fontsize=8)
    if n <= 12:
        for i in range(n):
            for j in range(n):
                ax.text(j, i, f"{matrix[i, j]:.2f}", ha="center", va="center", fontsize=7,
                        color="white" if matrix[i, j] > 0.5 else "black")
    ax.set(xlabel="predicted", ylabel="true", title=title)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="fraction of the true class")
    return save(fig, path)


def effect(path: Path, points: list[tuple[str, float, float, float]], xlabel: str, ylabel: str, title: str,
           scale: str = "categorical") -> str:
    """Trials as points (family, x, mean over seeds, std over seeds) with error bars.

    scale: "categorical" puts each distinct x at its own position; "log2" is a log axis.
    Families are shifted a little sideways so points at one x do not hide each other.
    """
    families = sorted({p[0] for p in points})
    values = sorted({p[1] for p in points})
    fig, ax = plt.subplots(figsize=(6.4, 4), layout="constrained")
    for i, family in enumerate(families):
        rows = [p for p in points if p[0] == family]
        shift = (i - (len(families) - 1) / 2) * 0.08
        if scale == "log2":
            x = [r[1] * 2 ** (shift / 3) for r in rows]  # a third of a position, in octaves
        else:
            x = [values.index(r[1]) + shift for r in rows]
        ax.errorbar(x, [r[2] for r in rows], yerr=[r[3] for r in rows], fmt="o", ms=4, capsize=3,
                    color=COLORS[i % len(COLORS)], label=f"{family} ({len(rows)})", alpha=0.8)
    if scale == "log2":
        ax.set_xscale("log", base=2)
        powers = [2 ** k for k in range(int(np.floor(np.log2(values[0]))), int(np.ceil(np.log2(values[-1]))) + 1)]
        ax.set_xticks(powers, [f"{v:g}" for v in powers])
        ax.minorticks_off()
    else:
        ax.set_xticks(range(len(values)), [f"{v:g}" for v in values])
        ax.set_xlim(-0.5, len(values) - 0.5)
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, title="family (trials)", title_fontsize=8)
    return save(fig, path)


def grouped_bars(path: Path, class_names: list[str], panels: dict[str, dict[str, list[float]]], title: str) -> str:
    """One panel per quantity (e.g. recall, F1); per class, one bar per group (e.g. imbalance strategy)."""
    n = len(class_names)
    fig, axes = plt.subplots(len(panels), 1, figsize=(max(6.4, 0.55 * n + 2), 3.2 * len(panels)),
                             squeeze=False, layout="constrained")
    for ax, (quantity, groups) in zip(axes[:, 0], panels.items()):
        width = 0.8 / max(len(groups), 1)
        for i, (group, values) in enumerate(groups.items()):
            ax.bar(np.arange(n) + (i - (len(groups) - 1) / 2) * width, values, width, label=group,
                   color=COLORS[i % len(COLORS)])
        ax.set_xticks(range(n), class_names, rotation=60, ha="right", fontsize=8)
        ax.set(ylabel=quantity, ylim=(0, 1))
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=8, ncol=len(groups))
    axes[0, 0].set_title(title)
    return save(fig, path)


def from_axes(path: Path, ax) -> str:
    """Save a figure that another library drew (Optuna's matplotlib views return Axes)."""
    fig = ax.figure if not isinstance(ax, np.ndarray) else ax.flat[0].figure
    fig.set_size_inches(7, 4.5)
    fig.tight_layout()
    return save(fig, path)
