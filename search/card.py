"""model.md: the model card people read (what the model is, how to use it, test metrics, what it is for)."""
from __future__ import annotations

import json
import shlex
from pathlib import Path

import numpy as np

from .predictor import plural
from .train import METRICS
from .util import shown_path
from .windowfiles import reads_folders

WEIGHTS = "weights"
TOP_CONFUSIONS = 5


def model_card(card: dict, folder: Path) -> str:
    """model.md: what the model is, how to use it, test metrics, known confusions, what it is (not) for."""
    task, spec, names, pre = card["task"], card["spec"], card["class_names"], card["preprocessing"]
    seeds, metrics, source, decision = card["seeds"], card["metrics"] or {}, card["source"] or {}, card["decision"]
    use, nouns = card.get("intended_use") or {}, card["nouns"]
    setting = " ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in spec.items() if k != "family")
    where = f"trial #{source['trial']} of study {source.get('study')!r}" if "trial" in source else "a study"
    refit = " on the training and validation rows together (refit)" if source.get("trained_on") == "train+validation" else ""
    shown = shown_path(str(folder))  # relative to where it was written from: no machine path in the card
    folder = shlex.quote(shown)
    lines = [f"# {task} model: {spec['family']} ensemble of {len(seeds)} seeds", "",
             f"An ensemble of {len(seeds)} `{spec['family']}` networks ({card['params']:,} parameters each), the "
             f"configuration of {where}, retrained on seeds {', '.join(map(str, seeds))} (the final seeds, never "
             f"the search's){refit}. It predicts one of {len(names)} {plural(nouns['label'])}: {', '.join(names)}.",
             "", f"Configuration: `{setting}`.", "",
             f"Probabilities are the mean of the seeds' softmax outputs; the label is "
             f"argmax(log p - tau * log prior) with tau = {decision['tau']:g} and prior = the training class "
             f"frequencies{' (tau 0: the most probable class)' if not decision['tau'] else ''}.", "",
             "## Use", "", "```bash", f"python -m search.predict --model {folder} {use.get('example') or 'INPUT'}"]
    lines += (text_use if pre["kind"] == "text" else series_use)(pre, nouns, folder, shown)
    lines += test_section(metrics, names)
    lines += ["## Meant for", "", use.get("meant_for") or "Not recorded.", "", "## Not meant for", ""]
    lines += [f"- {item}" for item in use.get("not_meant_for") or ["Not recorded."]] + [""]
    data = card["data"]
    lines += ["## Training data", "", f"`{data.get('source', '?')}`: {data.get('split', '')}.", ""]
    counts = data.get("counts") or {}
    if counts:
        lines += [f"| {nouns['label']} | train | val | test |", "|---|---|---|---|"]
        lines += [f"| {name} | {counts['train'][i]} | {counts['val'][i]} | {counts['test'][i]} |"
                  for i, name in enumerate(names)]
        lines += [f"| **total** | {sum(counts['train'])} | {sum(counts['val'])} | {sum(counts['test'])} |", ""]
    lines += ["## Files", "", "- `model.json`: everything above, machine-readable (format "
              f"{card['format']}); `load_model` refuses another format.",
              f"- `{WEIGHTS}/seed-N.pt`: one state_dict per seed "
              f"({sum(w['bytes'] for w in card['weights']) / 2**20:.2f} MiB in all), checked against model.json's sha256."]
    if source.get("command"):
        lines += [f"- Produced by: `{source['command']}`"]
    return "\n".join(lines) + "\n"


def text_use(pre: dict, nouns: dict, folder: str, shown: str) -> list[str]:
    noun = nouns["input"]
    return [f"python -m search.predict --model {folder} --format csv - < {plural(noun)}.txt   # one per line",
            f"python -m search.predict --model {folder} --text-column COLUMN {plural(noun)}.csv",
            "```", "", "```python", "from search.export import load_model", f"model = load_model({shown!r})",
            f"model.predict_proba([...])  # {plural(noun)} (strings) -> (N, C) probabilities",
            "model.predict(...)  # class names, by the decision rule", "```", "", "## Input", "",
            f"A {noun} as text. {pre.get('normalisation') or 'NFKD-normalised'}. Characters left that are not in the "
            f"training alphabet (`{pre['alphabet']}`) go to the unknown-character slot, as in training; a {noun} is "
            f"cut at {pre['seq_len']} characters (the longest in training). Case matters.", ""]


def series_use(pre: dict, nouns: dict, folder: str, shown: str) -> list[str]:
    noun, channels, steps = nouns["input"], pre["channels"], pre["steps"]
    shape = f"(N, {steps or 'T'}, {len(channels)})"
    length = (f"exactly {steps} steps" if steps else
              f"1 to {pre['seq_len']} steps (shorter ones are zero-padded after their end and masked, as in training; "
              f"longer ones are cut at {pre['seq_len']})")
    lines = [f"python -m search.predict --model {folder} {plural(noun)}.npz --format json", "```", "",
             "```python", "from search.export import load_model", f"model = load_model({shown!r})",
             f"model.predict_proba(x)  # x: {shape} raw values (NaN after a shorter series' end, or lengths=) "
             "-> (N, C) probabilities",
             "model.predict(...)  # class names, by the decision rule", "```", "", "## Input", "",
             f"Raw {plural(noun)} of {length} x {len(channels)} channel(s) in this order: {', '.join(channels)}, "
             "standardised inside with the training split's statistics:", "",
             "| channel | mean | std |", "|---|---|---|"]
    lines += [f"| {c} | {m:.6g} | {s:.6g} |" for c, m, s in zip(channels, pre["mean"], pre["std"])]
    lines += ["", f"Accepted files: a `.npy` array or a `.npz` holding `x` (or `x_test`, as `search.fit` reads) of "
              f"shape {shape}, unequal lengths given by `lengths` (`lengths_test`) or NaN after a series' end; a "
              "UCR/UEA `.ts` file; a CSV with " + (pre.get("csv_layout") or "one series per row")
              + (", or a UCI-layout `Inertial Signals` folder (`<channel>_<split>.txt`, one window per row)"
                 if reads_folders(channels, steps) else "") + ".", ""]
    return lines


def test_section(metrics: dict, names: list[str]) -> list[str]:
    lines = ["## Test metrics", ""]
    if not metrics:
        return lines + ["No test metrics were recorded.", ""]
    keys = [k for k in METRICS
            if k in (metrics.get("mean") or {}) or k in (metrics.get("ensemble") or {})]
    if keys:
        lines += [f"On the test split ({metrics.get('examples', '?')} examples, evaluated once):", "",
                  "| metric | mean ± std over seeds | ensemble |", "|---|---|---|"]
        for k in keys:
            mean, std = (metrics.get("mean") or {}).get(k), (metrics.get("std") or {}).get(k)
            ens = (metrics.get("ensemble") or {}).get(k)
            lines.append(f"| {k.replace('_', ' ')} | {'n/a' if mean is None else f'{mean:.3f} ± {std or 0:.3f}'} | "
                         f"{'n/a' if ens is None else f'{ens:.3f}'} |")
        lines.append("")
    else:
        lines += ["```", json.dumps(metrics, indent=1)[:2000], "```", ""]
    lines += ["## Known confusions", ""]
    confusion = metrics.get("confusion")
    if not confusion:
        return lines + ["No test confusion matrix was recorded.", ""]
    total = np.asarray(confusion, dtype=float)
    rates = total / np.clip(total.sum(1, keepdims=True), 1, None)
    pairs = sorted(((rates[i, j], total[i, j], i, j) for i in range(len(names)) for j in range(len(names))
                    if i != j and total[i, j] > 0), key=lambda p: (-p[0], -p[1], p[2], p[3]))[:TOP_CONFUSIONS]
    if not pairs:
        return lines + ["No test example was misclassified.", ""]
    lines += ["From the test confusion matrix summed over the seeds (share of the true class):", ""]
    lines += [f"- {names[i]} taken for {names[j]}: {rate:.1%} ({int(n)} of {int(total[i].sum())})"
              for rate, n, i, j in pairs]
    recall = np.diag(rates)
    weakest = sorted(range(len(names)), key=lambda i: (recall[i], names[i]))[:3]
    lines += ["", "Weakest classes (recall): " + ", ".join(f"{names[i]} {recall[i]:.1%}" for i in weakest) + ".", ""]
    return lines
