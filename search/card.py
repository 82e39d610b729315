"""model.md: the model card people read (what the model is, how to use it, test metrics, what it is for)."""
from __future__ import annotations

import json
import shlex
from pathlib import Path

import numpy as np

from .train import METRICS
from .util import shown_path

WEIGHTS = "weights"
TOP_CONFUSIONS = 5
MEANT_FOR = {
    "names": (
        "Guessing which of the 18 languages of the PyTorch tutorial data a surname written in Latin letters "
        "comes from, as a ranked list of candidates (the probabilities matter more than the first guess).",
        ["A person's nationality, ethnicity or origin: the label is the language list a surname appeared in, "
         "not a fact about anyone who bears it.",
         "Languages outside the 18 (every input gets one of them), given names, or scripts other than Latin "
         "(their characters fall into the unknown-character slot).",
         "Balanced use without reading the per-class figures: the training data is dominated by Russian and "
         "English, and some languages have fewer than 100 distinct training surnames."]),
    "har": (
        "Labelling 2.56 s windows (128 samples at 50 Hz) of waist-worn smartphone accelerometer and gyroscope "
        "signals with one of 6 activities, recorded and filtered as in UCI HAR (Samsung Galaxy S II; "
        "accelerations in g, angular velocity in rad/s, body/gravity split by the same Butterworth filter).",
        ["Other sensor placements, devices, sampling rates or units: the standardisation below assumes UCI HAR's.",
         "Activities outside the 6 (transitions, running, falls): every window gets one of the 6.",
         "Medical, safety or insurance decisions about a person; people unlike the 30 volunteers (aged 19-48)."]),
}


def model_card(card: dict, folder: Path) -> str:
    """model.md: what the model is, how to use it, test metrics, known confusions, what it is (not) for."""
    task, spec, names, pre = card["task"], card["spec"], card["class_names"], card["preprocessing"]
    seeds, metrics, source, decision = card["seeds"], card["metrics"] or {}, card["source"] or {}, card["decision"]
    setting = " ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in spec.items() if k != "family")
    where = f"trial #{source['trial']} of study {source.get('study')!r}" if "trial" in source else "a study"
    refit = " on the training and validation rows together (refit)" if source.get("trained_on") == "train+validation" else ""
    shown = shown_path(str(folder))  # relative to where it was written from: no machine path in the card
    folder = shlex.quote(shown)
    lines = [f"# {task} model: {spec['family']} ensemble of {len(seeds)} seeds", "",
             f"An ensemble of {len(seeds)} `{spec['family']}` networks ({card['params']:,} parameters each), the "
             f"configuration of {where}, retrained on seeds {', '.join(map(str, seeds))} (the final seeds, never "
             f"the search's){refit}. It predicts one of {len(names)} classes: {', '.join(names)}.", "",
             f"Configuration: `{setting}`.", "",
             f"Probabilities are the mean of the seeds' softmax outputs; the label is "
             f"argmax(log p - tau * log prior) with tau = {decision['tau']:g} and prior = the training class "
             f"frequencies{' (tau 0: the most probable class)' if not decision['tau'] else ''}.", "",
             "## Use", "", "```bash"]
    if task == "names":
        lines += [f"python -m search.predict names --model {folder} Nakamura \"O'Neill\" Schmidt",
                  f"python -m search.predict names --model {folder} --format csv - < surnames.txt"]
    else:
        lines += [f"python -m search.predict har --model {folder} 'UCI HAR Dataset/test/Inertial Signals'",
                  f"python -m search.predict har --model {folder} windows.npy --format json"]
    lines += ["```", "", "```python", "from search.export import load_model",
              f"model = load_model({shown!r})",
              "model.predict_proba(['Nakamura', 'Schmidt'])  # (N, C) probabilities" if task == "names" else
              "model.predict_proba(windows)  # windows: (N, 128, 9) raw signals -> (N, C) probabilities",
              "model.predict(...)  # class names, by the decision rule", "```", "", "## Input", ""]
    if task == "names":
        lines += [f"A surname as text. {pre['normalisation']}. Characters left that are not in the training "
                  f"alphabet (`{pre['alphabet']}`) go to the unknown-character slot, as in training; surnames are "
                  f"cut at {pre['seq_len']} characters (the longest training surname). Case matters: training "
                  "surnames are capitalised.", ""]
    else:
        lines += [f"Raw windows of {pre['steps']} steps (2.56 s at 50 Hz) x {len(pre['channels'])} channels in this "
                  f"order: {', '.join(pre['channels'])}, in UCI HAR units, standardised inside with the training "
                  "split's statistics:", "",
                  "| channel | mean | std |", "|---|---|---|"]
        lines += [f"| {c} | {m:.6g} | {s:.6g} |" for c, m, s in zip(pre["channels"], pre["mean"], pre["std"])]
        lines += ["", "Accepted files: a UCI-layout `Inertial Signals` folder (`<channel>_<split>.txt`, one window "
                  f"per row), a `.npy`/`.npz` array of shape (N, {pre['steps']}, {len(pre['channels'])}), or a CSV "
                  f"with {pre['csv_layout']}.", ""]
    lines += test_section(metrics, names)
    lines += ["## Meant for", "", MEANT_FOR[task][0], "", "## Not meant for", ""]
    lines += [f"- {item}" for item in MEANT_FOR[task][1]] + [""]
    data = card["data"]
    lines += ["## Training data", "", f"`{data.get('source', '?')}`: {data.get('split', '')}.", ""]
    counts = data.get("counts") or {}
    if counts:
        lines += ["| class | train | val | test |", "|---|---|---|---|"]
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
