"""Render the review's plain data as markdown and PNG figures (matplotlib Figure objects, Agg canvas)."""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import NullLocator

from data import write_text
from .. import figures

DPI = 90
NOISE_FLOOR = "noise floor (the noise's variance)"
FAMILY_NAMES = {"rnn": "Elman RNN", "lstm": "LSTM", "gru": "GRU"}
COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b"]


def save(fig: Figure, path: Path) -> str:
    """PNG through a temporary file, without metadata that changes between runs. Returns the file name."""
    return figures.save(fig, path, dpi=DPI)


def spread(values: list[float]) -> tuple[float, float, float]:
    """Mean, min and max (the figures' line and band)."""
    a = np.asarray(values, dtype=float)
    return float(a.mean()), float(a.min()), float(a.max())


def mean_std(values: list[float], digits: int = 2) -> str:
    a = np.asarray(values, dtype=float)
    return f"{a.mean():.{digits}f}" if len(a) == 1 else f"{a.mean():.{digits}f} ± {a.std():.{digits}f}"


def geo_mean(values: list[float]) -> float:
    """Geometric mean; 0 when any value is 0 (a gradient that underflowed float32)."""
    a = np.asarray(values, dtype=float)
    return 0.0 if (a <= 0).any() else float(np.exp(np.log(a).mean()))


def sci(value: float) -> str:
    return "inf" if not np.isfinite(value) else f"{value:.3g}"


def seeds_text(seeds: list[int]) -> str:
    return f"{len(seeds)} seed{'s' if len(seeds) > 1 else ''} ({', '.join(map(str, seeds))})"


# --- figures -------------------------------------------------------------------------------------------------

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


# --- markdown ------------------------------------------------------------------------------------------------

def header(data: dict) -> list[str]:
    run = data["run"]
    minutes, seconds = divmod(round(run["wall_seconds"]), 60)
    return [
        "# Review questions, answered by experiment",
        "",
        f"Generated by `{run['command']}` in {minutes} min {seconds:02d} s of wall time "
        f"({run['compute_seconds']:.0f} s of experiments; {run['cpu_seconds']:.0f} s of CPU time), "
        f"{run['threads']} torch thread(s), "
        f"torch {run['torch']}, Python {run['python']}, CPU only. "
        f"{'**Quick budget (a test run): the numbers below are not the study figures.** ' if run['quick'] else ''}"
        f"Seeds {', '.join(map(str, run['seeds']))} fix every number on one machine; the plain data is in "
        "[results.json](results.json). Every model is small and every budget short (minutes on two cores): "
        "the measurements show the mechanisms, not the best each model can do.",
        "",
    ]


def task_kinds(data: dict) -> list[str]:
    lines = ["## 1. Kinds of sequence tasks", "",
             "| kind | input -> output | example applications | in this project |", "| --- | --- | --- | --- |"]
    lines += [f"| {kind} | {io} | {example} | {covered} |" for kind, io, example, covered in data["task_kinds"]]
    lines += ["", "Both studies are many-to-one: a whole window or surname in, one class out. Every recurrent "
              "family reads the sequence and classifies its last state (`models/recurrent.py`).", ""]
    return lines


def parameter_counts(data: dict) -> list[str]:
    p = data["params"]
    q = p["question"]
    lines = [
        "## 2. Parameter counts of the two-layer Elman RNN and LSTM", "",
        f"The question's models: {q['input_size']} features per step, a first recurrent layer of {q['hidden'][0]} "
        f"units, a second of {q['hidden'][1]}, a dense softmax layer of {q['classes']} classes, sequences of "
        f"{q['seq_len']} steps. The closed form (`models.recurrent_params`) counts per layer "
        "`gates x (h x in + h x h + b x h)` (gates 1 Elman, 4 LSTM, 3 GRU; b = 2 biases in PyTorch, "
        "b_ih and b_hh, and 1 in the textbook and Keras), then `h x classes + classes`. The built counts are "
        "the parameters of real `nn.RNN` / `nn.LSTM` / `nn.GRU` and `nn.Linear` modules; for the one-bias "
        "convention every `bias_hh` is left out of the count, since b_ih + b_hh act as one bias.", "",
        "| model | formula, PyTorch (2 biases) | built modules | formula, textbook (1 bias) | built, without b_hh "
        "| difference |", "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for r in p["stacked"]:
        lines.append(f"| {FAMILY_NAMES[r['family']]} ({r['gates']} gate{'s' if r['gates'] > 1 else ''}) "
                     f"| {r['pytorch']:,} | {r['pytorch_built']:,} | {r['textbook']:,} | {r['textbook_built']:,} "
                     f"| {r['pytorch'] - r['textbook']:,} |")
    lines += [
        "", f"The sequence length ({q['seq_len']}) does not enter: the same weights are applied at every step. "
        f"The difference is one bias vector per gate and layer: gates x ({' + '.join(map(str, q['hidden']))}). "
        "`python -m models.params rnn --input 30 --hidden 32 64 --classes 10` prints the same.", "",
        "The project's models have equal widths in all layers (`ModelSpec(layers=2, width=w)`); their "
        "closed-form `models.param_count` against the module `create_model` builds:", "",
        "| model | width | formula | built |", "| --- | ---: | ---: | ---: |"]
    lines += [f"| {FAMILY_NAMES[r['family']]} | {r['width']} | {r['formula']:,} | {r['built']:,} |"
              for r in p["equal_width"]]
    return lines + [""]


def clipping(data: dict, figures: dict) -> list[str]:
    c = data["clipping"]
    seeds, clip = c["seeds"], str(c["clipnorm"])
    lines = [
        "## 3. Why clipping matters more for long sequences", "",
        "Task (also used in section 4): *remember the first symbol*. Step 0 holds one of "
        f"{data['memory']['symbols']} symbols (one-hot), every later step Gaussian noise on a fifth channel; the "
        "label is the first symbol. The models are the project's one-layer Elman RNN and LSTM, "
        f"{data['memory']['width']} units, reading the last state.", "",
        "Backpropagation through time multiplies one Jacobian per step, `dh_t/dh_(t-1) = diag(f') W_hh` for "
        "an Elman network. When these products shrink (spectral radius of W_hh below 1, PyTorch's default "
        "initialisation), the gradient from far steps vanishes and the total gradient does not depend on the "
        "length. When they grow (radius above 1, where a network that has learnt to keep information for "
        "many steps sits), the gradient grows exponentially with the number of steps, so the same "
        "learning rate that is safe on short sequences throws the weights far away on long ones. The "
        "recurrent matrix below is PyTorch's initialisation multiplied by a scale, to put it on either side.",
        "",
        "**Gradient norm at initialisation** (one batch of "
        f"{c['batch']}; mean over {seeds_text(seeds)}):", "",
        "| model | W_hh scale (spectral radius) | " + " | ".join(f"{t} steps" for t in c["lengths"]) + " |",
        "| --- | --- | " + " | ".join("---:" for _ in c["lengths"]) + " |"]
    for family in ("rnn", "lstm"):
        for scale in c["scales"]:
            cells = [sci(np.mean(c["init"][family][str(scale)][str(t)])) for t in c["lengths"]]
            lines.append(f"| {FAMILY_NAMES[family]} | x{scale:g} ({c['radius'][family][str(scale)]:.2f}) | "
                         + " | ".join(cells) + " |")
    lines += [
        "", f"![gradient norm at initialisation]({figures['clip_init']})", "",
        f"*Figure: gradient norm of the cross-entropy at initialisation (0 training steps) against sequence "
        f"length, one batch of {c['batch']} per seed; mean over {seeds_text(seeds)}, band min to max. For the "
        "LSTM the radius is that of the cell-candidate block of W_hh.*", "",
        f"**Training** with the recurrent matrix scaled x{c['train_scale']:g}: SGD, learning rate {c['lr']:g}, "
        f"momentum 0.9, batches of {c['batch']}, {c['steps']} steps, without clipping and with "
        f"`clip_grad_norm_(max_norm={c['clipnorm']:g})`. A run *diverged* when its loss or gradient became "
        "non-finite or its parameter norm passed 10x its initial value (then it stops). Largest gradient norm "
        f"before clipping (median over seeds) and divergence rate over {seeds_text(seeds)}:", "",
        "| model | length | largest gradient norm, no clipping | diverged, no clipping | largest gradient "
        f"norm, clipnorm {c['clipnorm']:g} | diverged, clipnorm {c['clipnorm']:g} |",
        "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for family in ("rnn", "lstm"):
        for t in c["train_lengths"]:
            row = []
            for key in ("0.0", clip):
                runs = c["runs"][family][key][str(t)]
                diverged = [r["diverged_at"] for r in runs if r["diverged_at"] is not None]
                where = f" (step {', '.join(map(str, diverged))})" if diverged else ""
                row += [sci(float(np.median([max(r["grad_norms"]) for r in runs]))),
                        f"{len(diverged)}/{len(runs)}{where}"]
            lines.append(f"| {FAMILY_NAMES[family]} | {t} | " + " | ".join(row) + " |")
    rates = {family: {key: np.mean([r["diverged_at"] is not None for t in c["train_lengths"]
                                    for r in c["runs"][family][key][str(t)]]) for key in ("0.0", clip)}
             for family in ("rnn", "lstm")}
    lines += [
        "", f"![gradient norm during training and divergence]({figures['clip_training']})", "",
        f"*Figure: training with W_hh x{c['train_scale']:g}, {c['steps']} SGD steps per run, "
        f"{seeds_text(seeds)} per point. Left: largest gradient norm before clipping, median over seeds. "
        "Middle: fraction of seeds diverged. Right: the gradient norm at every step of one run (Elman RNN, "
        f"longest sequence, seed {seeds[0]}); a diverged run stops where it diverged.*", "",
        f"Over all lengths, without clipping {rates['rnn']['0.0']:.0%} of the Elman runs and "
        f"{rates['lstm']['0.0']:.0%} of the LSTM runs diverged; with clipping {rates['rnn'][clip]:.0%} and "
        f"{rates['lstm'][clip]:.0%}. Clipping does not make the gradient smaller where it is computed; it "
        "bounds the step taken, so that one exploding batch cannot throw the weights into the region where "
        "tanh saturates or the loss overflows. The LSTM's cell state is updated additively through a gate "
        "(`c_t = f c_(t-1) + i g`), not through a matrix and a squashing function, so its gradient grows "
        "far less with length at the same scale of W_hh; the search spaces still offer clipnorm to all "
        "recurrent families.", ""]
    return lines


def memory(data: dict, figures: dict) -> list[str]:
    m = data["memory"]
    seeds = m["seeds"]
    lines = [
        "## 4. Long-term dependencies: Elman RNN, LSTM and GRU", "",
        f"The same first-symbol task, lengths {', '.join(map(str, m['lengths']))}. Each model has one layer of "
        f"{m['width']} units and trains {m['steps']} Adam steps (learning rate {m['lr']:g}, clipnorm "
        f"{m['clipnorm']:g}) on fresh batches of {m['batch']}; accuracy is measured on {m['test_size']} fixed test "
        f"sequences per length (chance {1 / m['symbols']:.2f}). *LSTM, chrono init* is the same LSTM with its "
        "forget-gate biases set to log(U(1, length - 1)) and its input-gate biases to their negatives (Tallec "
        "& Ollivier 2018); PyTorch initialises both near 0, so a fresh LSTM halves its cell content at every "
        f"step. Test accuracy, mean ± std over {seeds_text(seeds)}:", "",
        "| model | " + " | ".join(f"{t} steps" for t in m["lengths"]) + " |",
        "| --- | " + " | ".join("---:" for _ in m["lengths"]) + " |"]
    for label, by_length in m["results"].items():
        lines.append(f"| {label} | " + " | ".join(mean_std([r["accuracy"] for r in by_length[str(t)]])
                                                  for t in m["lengths"]) + " |")
    lines += ["", f"![accuracy against length]({figures['memory_accuracy']})", "",
              f"*Figure: test accuracy against sequence length, {m['steps']} training steps per run; mean over "
              f"{seeds_text(seeds)}, band min to max.*", "",
              "Gradient reaching the first step, |dLoss/dx_0| per example on 64 test sequences (geometric mean "
              "over seeds), at initialisation -> after training:", "",
              "| model | " + " | ".join(f"{t} steps" for t in m["lengths"]) + " |",
              "| --- | " + " | ".join("---:" for _ in m["lengths"]) + " |"]
    for label, by_length in m["results"].items():
        cells = []
        for t in m["lengths"]:
            runs = by_length[str(t)]
            before, after = (geo_mean([r[k] for r in runs]) for k in ("grad_first_init", "grad_first_trained"))
            cells.append(f"{sci(before)} -> {sci(after)}")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines += ["", f"![gradient at the first step]({figures['memory_gradient']})", "",
              f"*Figure: |dLoss/dx_0| against sequence length at initialisation (dotted) and after "
              f"{m['steps']} training steps (solid); geometric mean over {seeds_text(seeds)}. A point is missing "
              "where the gradient underflowed to 0 in float32 (0 in the table).*", "",
              learnt_text(m), "", signal_text(m), "",
              "The label depends on step 0 only, so the only useful error signal is the one that travels "
              "back through every step. In an Elman network it is multiplied by diag(tanh') W_hh at each "
              "step and shrinks geometrically with length; once it is far below the noise of the gradients "
              "from the later steps, nothing moves the weights towards remembering. An LSTM (and a GRU) "
              "carries its memory through a gated sum: with the forget gate near 1 the error passes "
              "back almost unchanged. That advantage exists only when the gates start, or are trained, "
              "open: with PyTorch's initialisation the forget gate is about 0.5 and a fresh LSTM forgets as "
              "fast as the Elman network, so on a short budget it does no better; with chrono initialisation "
              "the gradient at step 0 stays large as the length grows and the LSTM learns what the others "
              "cannot. "
              "LSTMs (and GRUs) do better when the dependency is long, the budget allows the gates to "
              "learn, or the gates are initialised to remember; on short dependencies the Elman network is "
              "as good and cheaper.", ""]
    return lines


def learnt_text(m: dict) -> str:
    """The longest length each model learnt (mean test accuracy >= 0.95), in words."""
    parts = []
    for label, by_length in m["results"].items():
        learnt = [t for t in m["lengths"] if np.mean([r["accuracy"] for r in by_length[str(t)]]) >= 0.95]
        parts.append(f"{label} {max(learnt)} steps" if learnt else f"{label} none of the lengths")
    return ("Longest length learnt (mean test accuracy at least 0.95) within "
            f"{m['steps']} steps: " + "; ".join(parts) + f" (of {', '.join(map(str, m['lengths']))}).")


def signal_text(m: dict) -> str:
    """How the first-step gradient at initialisation falls from the shortest to the longest length."""
    first, last = str(m["lengths"][0]), str(m["lengths"][-1])
    parts = [f"{label} {sci(geo_mean([r['grad_first_init'] for r in by_length[first]]))} -> "
             f"{sci(geo_mean([r['grad_first_init'] for r in by_length[last]]))}"
             for label, by_length in m["results"].items()]
    return (f"At initialisation the error signal at step 0 falls from {first} to {last} steps as follows: "
            + "; ".join(parts) + " (0: below float32's smallest number). After training, a model that has "
            "learnt the task has a small loss and so small gradients everywhere; the signal at "
            "initialisation is what decides whether learning can start.")


def forecasting(data: dict, figures: dict) -> list[str]:
    f = data["forecast"]
    seeds, leak = f["seeds"], f["leaking"]
    lines = [
        "## 5. Convolutions over time for forecasting", "",
        f"Series: two sines (periods 24 and 7 steps) plus Gaussian noise (std 0.2), {f['length']} steps; the "
        f"first 70 % trains, the last 30 % tests (split in time), standardised with the training part's mean "
        f"and std. The forecaster (`CausalConvForecaster` in `search/review/convolution.py`) stacks Conv1d "
        f"layers with kernel {f['kernel_size']} and dilations 1, 2, 4, ... and predicts x[t + {f['horizon']}] "
        f"at every step t (many-to-many, aligned); {f['steps']} Adam steps on random windows of 128 steps. "
        "What must be respected:", "",
        "- **Causal padding.** Each layer pads (k - 1) x d zeros on the left only, so output t reads inputs "
        "t - (k - 1) x d .. t. `padding='same'` pads both sides and output t reads future samples.",
        f"- **No future leakage.** Targets are the series shifted by the horizon ({f['horizon']} steps); the "
        "train/test split is in time, and standardisation uses the training part only. The check: replace "
        "every sample after t and compare outputs 0..t. `tests/test_review.py` runs it on the module.",
        "- **Receptive field against horizon.** One output sees 1 + sum (k - 1) x d past samples. It must "
        "cover the history the forecast needs, which depends on the series, not on the horizon; a field longer "
        "than the training windows (128) would see only padding there. The warm-up outputs, whose field "
        "reaches back before the window, are left out of the loss.", "",
        "Both test errors are taken over every forecast origin of the test part; the forecast from x[..t] "
        "gives the model the 256 samples up to t, more than any receptive field here.", "",
        "| model | receptive field | test MSE, forecast from x[..t] | test MSE, one pass over the series | "
        "largest change of outputs 0..100 when samples 101.. change |", "| --- | ---: | ---: | ---: | ---: |"]
    for r in f["causal"]:
        lines.append(f"| causal, {r['layers']} layer{'s' if r['layers'] > 1 else ''} | {r['receptive_field']} "
                     f"| {mean_std([s['online_mse'] for s in r['seeds']], 3)} "
                     f"| {mean_std([s['offline_mse'] for s in r['seeds']], 3)} "
                     f"| {max(s['future_influence'] for s in r['seeds']):.3g} |")
    lines.append(f"| same padding, {leak['layers']} layers (sees {leak['future_samples']} future samples) "
                 f"| {leak['receptive_field']} | {mean_std([s['online_mse'] for s in leak['seeds']], 3)} "
                 f"| {mean_std([s['offline_mse'] for s in leak['seeds']], 3)} "
                 f"| {max(s['future_influence'] for s in leak['seeds']):.3g} |")
    for name, value in f["baselines"].items():
        lines.append(f"| baseline: {name} | - | {value:.3f} | {value:.3f} | - |")
    lines += [
        "", f"![forecasting]({figures['forecast']})", "",
        f"*Figure: left, test MSE against receptive field ({f['steps']} training steps per model, mean over "
        f"{seeds_text(seeds)}, band min to max for the causal forecast); right, one causal forecast "
        f"(seed {seeds[0]}, receptive field {f['example']['receptive_field']}) on the start of the test part.*", "",
        f"For the causal models both evaluations agree and changing the future changes nothing. "
        f"{field_text(f)} The same-padded model scores "
        f"{np.mean([s['offline_mse'] for s in leak['seeds']]):.3f} in a single pass over the series, where it "
        f"reads up to {leak['future_samples']} samples ahead, the target among them; forecasting from the past "
        f"alone, as it must in use, it scores {np.mean([s['online_mse'] for s in leak['seeds']]):.3f}, against "
        f"{np.mean([s['online_mse'] for s in f['causal'][-1]['seeds']]):.3f} for the causal model of the same "
        "size: a leaking model's validation score is not a forecast.", ""]
    return lines


def field_text(f: dict) -> str:
    """What the receptive-field rows say, in numbers."""
    errors = [(r["receptive_field"], float(np.mean([s["online_mse"] for s in r["seeds"]]))) for r in f["causal"]]
    below = [e for e in errors if e[0] < f["horizon"]]
    text = "Test MSE against receptive field: " + ", ".join(f"{field}: {mse:.3f}" for field, mse in errors) + ". "
    if below and below[-1][1] < f["baselines"]["zero (the mean)"]:
        text += (f"A field shorter than the horizon ({below[-1][0]} < {f['horizon']}) still beats the mean; it "
                 "is the history the series needs that matters, not the horizon. ")
    return text + ("A sum of two sines follows a short linear recurrence, so a few samples locate the phase; "
                   "longer fields average more noise away, towards the noise floor "
                   f"({f['baselines'][NOISE_FLOOR]:.3f}).")


def conv_layouts(data: dict) -> list[str]:
    c = data["conv"]
    rows = [("`Conv1d(F, C, w)`", "conv1d", "(batch, features F as channels, time)", "the reference"),
            ("`Conv2d(F, C, (w, 1))`", "conv2d_w1", "(batch, F as channels, time, 1)", "equal"),
            ("`Conv2d(1, C, (w, F))`", "conv2d_image", "(batch, 1, time, F): the series as an image", "equal"),
            ("`Conv2d(1, C, (w, 1))`", "conv2d_per_feature", "(batch, 1, time, F)",
             "a different model: one filter shared by all features")]
    lines = [
        "## 6. Conv1d with kernel w against Conv2d with kernel (w, 1)", "",
        f"One random input of {c['batch']} sequences, {c['time']} steps, F = {c['features']} features (HAR's "
        f"shape); C = {c['out_channels']} output channels, w = {c['kernel_size']}. The Conv2d weights are "
        "copied from the Conv1d: `(C, F, w)` -> `(C, F, w, 1)` for kernel (w, 1), `(C, F, w)` -> "
        "`(C, 1, w, F)` for kernel (w, F).", "",
        "| layer | input layout | input shape | output shape | parameters | max abs difference from Conv1d |",
        "| --- | --- | --- | --- | ---: | --- |"]
    for name, key, layout, note in rows:
        r = c[key]
        diff = f"{r['max_abs_diff']:.3g} ({note})" if "max_abs_diff" in r else note
        lines.append(f"| {name} | {layout} | {tuple(r['input'])} | {tuple(r['output'])} | {r['params']:,} "
                     f"| {diff} |")
    lines += [
        "", "Conv1d slides along one axis (time) and mixes all input channels (the features) at every "
        "position. Conv2d slides along two axes; with a kernel of width 1 on a width-1 axis, the second "
        "axis does nothing, and the same multiply-adds happen: the outputs are equal to floating-point "
        "precision with the same parameter count. The difference is only in how the input is laid out: "
        "Conv1d wants (batch, channels, time) - which is why the project transposes its (batch, time, "
        "features) tensors - and Conv2d wants (batch, channels, height, width), so the series gets a dummy "
        "axis. Laying it out as a one-channel image (batch, 1, time, features) is different: kernel (w, 1) "
        "then filters every feature separately with one shared filter and never mixes features, and only "
        "kernel (w, F) gives the Conv1d back.", ""]
    return lines


def rounded(value):
    """Floats to 5 significant digits, for a results.json that stays small and readable."""
    if isinstance(value, float):
        return float(f"{value:.5g}") if np.isfinite(value) else str(value)
    if isinstance(value, dict):
        return {k: rounded(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [rounded(v) for v in value]
    return value


def write_report(data: dict, folder: Path) -> Path:
    """Figures first, then results.json and report.md, each written to a temporary file and renamed."""
    folder.mkdir(parents=True, exist_ok=True)
    figures = {
        "clip_init": clipping_init_figure(data["clipping"], folder / "clipping_init.png"),
        "clip_training": clipping_training_figure(data["clipping"], folder / "clipping_training.png"),
        "forecast": forecast_figure(data["forecast"], folder / "forecast.png"),
    }
    figures["memory_accuracy"], figures["memory_gradient"] = memory_figures(
        data["memory"], folder / "memory_accuracy.png", folder / "memory_gradient.png")
    data["run"]["wall_seconds"] = time.perf_counter() - data["run"].pop("started")
    data["run"]["cpu_seconds"] = time.process_time()  # this process's CPU time: what the run costs on an idle core
    write_text(folder / "results.json", json.dumps(rounded(data)) + "\n")
    text = "\n".join(header(data) + task_kinds(data) + parameter_counts(data) + clipping(data, figures)
                     + memory(data, figures) + forecasting(data, figures) + conv_layouts(data))
    path = folder / "report.md"
    write_text(path, text)
    return path
