"""The review's figures: matplotlib Figure objects (Agg canvas) drawn from its plain data, saved as PNG."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import NullLocator

from .. import figures

DPI = 90
FAMILY_NAMES = {"rnn": "Elman RNN", "lstm": "LSTM", "gru": "GRU"}
COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b"]


def save(fig: Figure, path: Path) -> str:
    """PNG through a temporary file, without metadata that changes between runs. Returns the file name."""
    return figures.save(fig, path, dpi=DPI)


def spread(values: list[float]) -> tuple[float, float, float]:
    """Mean, min and max (the figures' line and band)."""
    a = np.asarray(values, dtype=float)
    return float(a.mean()), float(a.min()), float(a.max())


def geo_mean(values: list[float]) -> float:
    """Geometric mean; 0 when any value is 0 (a gradient that underflowed float32)."""
    a = np.asarray(values, dtype=float)
    return 0.0 if (a <= 0).any() else float(np.exp(np.log(a).mean()))


def log_x(ax, values: list[int]) -> None:
    """A log x axis labelled with the values measured, not with powers of ten."""
    ax.set_xscale("log")
    ax.set_xticks(values, [str(v) for v in values])
    ax.xaxis.set_minor_locator(NullLocator())


def clipping_init_figure(c: dict, path: Path) -> str:
    fig = Figure(figsize=(9, 3.6), layout="constrained")
    axes = fig.subplots(1, 2, sharey=True)
    for ax, family in zip(axes, ("rnn", "lstm")):
        for i, scale in enumerate(c["scales"]):
            rows = [spread(c["init"][family][str(scale)][str(t)]) for t in c["lengths"]]
            mean, low, high = (np.array(v) for v in zip(*rows))
            label = f"W_hh x{scale:g} (radius {c['radius'][family][str(scale)]:.2f})"
            ax.plot(c["lengths"], mean, marker="o", ms=3, color=COLORS[i], label=label)
            ax.fill_between(c["lengths"], low, high, color=COLORS[i], alpha=0.2)
        ax.set(yscale="log", xlabel="sequence length (steps)", title=FAMILY_NAMES[family])
        log_x(ax, c["lengths"])
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    axes[0].set_ylabel("gradient norm at initialisation")
    return save(fig, path)


def clipping_training_figure(c: dict, path: Path) -> str:
    fig = Figure(figsize=(12, 3.6), layout="constrained")
    peak_ax, rate_ax, step_ax = fig.subplots(1, 3)
    clip = str(c["clipnorm"])
    for i, family in enumerate(("rnn", "lstm")):
        for key, style, label in (("0.0", "-", "no clipping"), (clip, "--", f"clipnorm {c['clipnorm']:g}")):
            runs = c["runs"][family][key]
            peaks = [np.median([max(r["grad_norms"]) for r in runs[str(t)]]) for t in c["train_lengths"]]
            rates = [np.mean([r["diverged_at"] is not None for r in runs[str(t)]]) for t in c["train_lengths"]]
            name = f"{FAMILY_NAMES[family]}, {label}"
            peak_ax.plot(c["train_lengths"], peaks, style, marker="o", ms=3, color=COLORS[i], label=name)
            rate_ax.plot(c["train_lengths"], rates, style, marker="o", ms=3, color=COLORS[i], label=name)
    log_x(peak_ax, c["train_lengths"])
    log_x(rate_ax, c["train_lengths"])
    peak_ax.set(yscale="log", xlabel="sequence length (steps)",
                ylabel="largest gradient norm (median over seeds)", title="gradient norm during training")
    rate_ax.set(xlabel="sequence length (steps)", ylabel="fraction of seeds diverged",
                title="divergence rate", ylim=(-0.05, 1.05))
    longest = str(c["train_lengths"][-1])
    for key, style, label in (("0.0", "-", "no clipping"), (clip, "--", f"clipnorm {c['clipnorm']:g}")):
        norms = c["runs"]["rnn"][key][longest][0]["grad_norms"]
        step_ax.plot(range(len(norms)), norms, style, color=COLORS[0], label=label)
    step_ax.set(yscale="log", xlabel="training step", ylabel="gradient norm (before clipping)",
                title=f"Elman RNN, {longest} steps, seed {c['seeds'][0]}")
    for ax in (peak_ax, rate_ax, step_ax):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return save(fig, path)


def memory_figures(m: dict, accuracy_path: Path, gradient_path: Path) -> tuple[str, str]:
    fig = Figure(figsize=(6.4, 4), layout="constrained")
    ax = fig.subplots()
    for i, (label, by_length) in enumerate(m["results"].items()):
        rows = [spread([r["accuracy"] for r in by_length[str(t)]]) for t in m["lengths"]]
        mean, low, high = (np.array(v) for v in zip(*rows))
        ax.plot(m["lengths"], mean, marker="o", ms=3, color=COLORS[i], label=label)
        ax.fill_between(m["lengths"], low, high, color=COLORS[i], alpha=0.2)
    ax.axhline(1 / m["symbols"], color="grey", ls=":", label="chance")
    log_x(ax, m["lengths"])
    ax.set(xlabel="sequence length (steps)", ylabel="test accuracy", ylim=(0, 1.05),
           title="remember the first symbol")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    accuracy = save(fig, accuracy_path)

    fig = Figure(figsize=(6.4, 4), layout="constrained")
    ax = fig.subplots()
    for i, (label, by_length) in enumerate(m["results"].items()):
        for key, style in (("grad_first_init", ":"), ("grad_first_trained", "-")):
            mean = [geo_mean([r[key] for r in by_length[str(t)]]) or np.nan  # 0 (underflow) is not drawn
                    for t in m["lengths"]]
            ax.plot(m["lengths"], mean, style, marker="o", ms=3, color=COLORS[i],
                    label=f"{label}, {'initialised' if key == 'grad_first_init' else 'trained'}")
    log_x(ax, m["lengths"])
    ax.set(yscale="log", xlabel="sequence length (steps)",
           ylabel="|dLoss / dx_0| (geometric mean over seeds)", title="error signal reaching the first step")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    return accuracy, save(fig, gradient_path)


def forecast_figure(f: dict, path: Path) -> str:
    fig = Figure(figsize=(13, 3.8), layout="constrained")
    mse_ax, example_ax = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1, 1.3]})
    fields = [r["receptive_field"] for r in f["causal"]]
    for key, style, label in (("online_mse", "-", "causal, forecast from x[..t]"),
                              ("offline_mse", "--", "causal, one pass over the series")):
        rows = [spread([s[key] for s in r["seeds"]]) for r in f["causal"]]
        mean, low, high = (np.array(v) for v in zip(*rows))
        mse_ax.plot(fields, mean, style, marker="o", ms=3, color=COLORS[0], label=label)
        if key == "online_mse":
            mse_ax.fill_between(fields, low, high, color=COLORS[0], alpha=0.2)
    leak = f["leaking"]
    for key, marker, label in (("offline_mse", "v", "same padding, one pass (leaks)"),
                               ("online_mse", "^", "same padding, forecast from x[..t]")):
        mse_ax.plot([leak["receptive_field"]], [np.mean([s[key] for s in leak["seeds"]])], marker, ms=8,
                    color=COLORS[3], ls="", label=label)
    for (name, value), style in zip(f["baselines"].items(), (":", "-.", "--")):
        mse_ax.axhline(value, color="grey", ls=style, label=f"baseline: {name}")
    mse_ax.axvline(f["horizon"], color=COLORS[2], ls=":", label=f"horizon ({f['horizon']} steps)")
    log_x(mse_ax, fields)
    mse_ax.set(xlabel="receptive field (input samples)", ylabel="test MSE (standardised)",
               title="error against receptive field")
    mse_ax.grid(alpha=0.3)
    mse_ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    ex = f["example"]
    t = np.arange(ex["start"], ex["start"] + len(ex["truth"]))
    example_ax.plot(t, ex["truth"], color="black", lw=1, label="series")
    example_ax.plot(t, ex["forecast"], color=COLORS[0], lw=1.2,
                    label=f"forecast {f['horizon']} steps ahead (receptive field {ex['receptive_field']})")
    example_ax.set(xlabel="time step (test part)", ylabel="value (standardised)", title="causal forecast")
    example_ax.grid(alpha=0.3)
    example_ax.legend(fontsize=7)
    return save(fig, path)
