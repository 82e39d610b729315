"""The figures of reports and dashboard notes: small functions, each drawing one matplotlib Figure.

One style: `Figure` objects (no pyplot, no global state, Agg rendering), written by `save`.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure

from data import atomic_path

COLORS = colormaps["tab10"].colors


def figure(width: float = 6.4, height: float = 4.0) -> Figure:
    return Figure(figsize=(width, height), layout="constrained")


def save(fig: Figure, path: Path, dpi: int = 110) -> str:
    """Write through a temporary file; no metadata that changes between runs. Returns the file name."""
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", dpi=dpi, metadata={"Software": None})
    return Path(path).name


def as_array(runs: list[list]) -> np.ndarray:
    """Per-seed curves of possibly different lengths (a diverged seed stops early) -> (seeds, epochs), NaN padded."""
    epochs = max((len(r) for r in runs), default=0)
    out = np.full((len(runs), epochs), np.nan)
    for i, run in enumerate(runs):
        out[i, :len(run)] = [np.nan if v is None else v for v in run]
    return out


def curves(path: Path, series: dict[str, list[list]], ylabel: str, title: str) -> str:
    """One line per label: the mean over seeds, with a band from the seeds' min to max."""
    fig = figure()
    ax = fig.subplots()
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


def confusion_figure(matrix: np.ndarray, class_names: list[str], title: str, counts: np.ndarray | None = None) -> Figure:
    """Row-normalised confusion matrix (row = true class, column = predicted); the colour is the row share
    (recall), so rare classes stay visible. Cells show the counts when given, else the shares (up to 12 classes)."""
    matrix = np.asarray(matrix, dtype=float)
    n = len(class_names)
    size = max(4.0, 0.45 * n + 2)
    fig = figure(size + 1, size)
    ax = fig.subplots()
    image = ax.imshow(matrix, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(n), class_names, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(n), class_names, fontsize=8)
    if counts is not None or n <= 12:
        for i in range(n):
            for j in range(n):
                text = f"{counts[i][j]:.0f}" if counts is not None else f"{matrix[i, j]:.2f}"
                ax.text(j, i, text, ha="center", va="center", fontsize=7 if n <= 12 else 5,
                        color="white" if matrix[i, j] > 0.5 else "black")
    ax.set(xlabel="predicted", ylabel="true", title=title)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="fraction of the true class")
    return fig


def confusion(path: Path, matrix: np.ndarray, class_names: list[str], title: str) -> str:
    return save(confusion_figure(matrix, class_names, title), path)


def effect(path: Path, points: list[tuple[str, float, float, float]], xlabel: str, ylabel: str, title: str,
           scale: str = "categorical") -> str:
    """Trials as points (family, x, mean over seeds, std over seeds) with error bars.

    scale: "categorical" puts each distinct x at its own position; "log2" is a log axis.
    Families are shifted a little sideways so points at one x do not hide each other.
    """
    families = sorted({p[0] for p in points})
    values = sorted({p[1] for p in points})
    fig = figure()
    ax = fig.subplots()
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
    fig = figure(max(6.4, 0.55 * n + 2), 3.2 * len(panels))
    axes = fig.subplots(len(panels), 1, squeeze=False)
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


def frontier(path: Path, series: dict[str, list[dict]], chosen: dict[str, float], title: str) -> str:
    """Accuracy against balanced accuracy, one line per model as tau varies; points labelled with tau,
    the tau chosen on validation circled."""
    fig = figure(6.8, 4.8)
    ax = fig.subplots()
    for i, (label, points) in enumerate(series.items()):
        color = COLORS[i % len(COLORS)]
        x, y = [p["balanced_accuracy"] for p in points], [p["accuracy"] for p in points]
        ax.plot(x, y, marker="o", ms=4, color=color, label=label)
        for p in points:
            ax.annotate(f"{p['tau']:g}", (p["balanced_accuracy"], p["accuracy"]), fontsize=6,
                        textcoords="offset points", xytext=(3, 3), color=color)
            if p["tau"] == chosen.get(label):
                ax.plot(p["balanced_accuracy"], p["accuracy"], "o", ms=11, mfc="none", color=color)
    ax.set(xlabel="test balanced accuracy", ylabel="test accuracy", title=title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return save(fig, path)


def history(path: Path, points: list[tuple[int, float]], ylabel: str, title: str) -> str:
    """Each complete trial's search value in trial order, with the best so far."""
    fig = figure(7, 4.5)
    ax = fig.subplots()
    numbers, values = [p[0] for p in points], [p[1] for p in points]
    ax.plot(numbers, values, "o", ms=4, alpha=0.7, label="complete trial")
    ax.step(numbers, np.maximum.accumulate(values), where="post", color="C3", label="best so far")
    ax.set(xlabel="trial number", ylabel=ylabel, title=title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save(fig, path)


def importances(path: Path, values: dict[str, float], title: str) -> str:
    """Horizontal bars, most important parameter on top."""
    names = list(values)[::-1]
    fig = figure(7, max(2.5, 0.35 * len(names) + 1))
    ax = fig.subplots()
    ax.barh(names, [values[n] for n in names], color="C0")
    ax.set(xlabel="importance (fANOVA)", title=title)
    ax.grid(axis="x", alpha=0.3)
    return save(fig, path)
