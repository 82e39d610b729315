"""Model folders: save a trained seed ensemble with everything prediction needs, load it, predict.

`python -m search.export TASK --trial N` retrains one trial's configuration of a study on the final
seeds (never the search seeds) and writes a model folder; `search/predict.py` applies it.

A model folder (format 1):
    model.json          format, task, class names, spec, seeds, decision rule and training prior,
                        preprocessing, test metrics, data description, where it came from, and the
                        sha256 of every weight file
    model.md            the model card: what it is, test metrics, known confusions, intended use
    weights/seed-N.pt   one `torch.save`d state_dict per seed (kept apart: large weights stay out of git)

Prediction: every seed's softmax probabilities are averaged (the ensemble); the label is
argmax(log p - tau * log prior), with tau from `decision` and prior the training class frequencies
(tau = 0: the most probable class).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import re
import shlex
import shutil
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np
import optuna
import torch

from data import LOADERS, DataError, Task
from data.har import CHANNELS, STEPS
from data.names import encode, normalise
from models import create_model, module_param_count
from . import defaults
from .decision import decide
from .evaluate import EvaluationError, evaluate_spec, final_metrics, load_checked, open_study, spec_of
from .storage import hide_password
from .train import METRICS, TrialSpec, log_prior
from .util import json_safe, shown_path

FORMAT = 1
WEIGHTS = "weights"
BATCH = 1024  # inputs per forward pass: thousands of inputs take seconds
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


class ModelError(ValueError):
    """A missing, corrupt or incompatible model folder: one line naming the folder or file."""


class InputError(ValueError):
    """Input a model cannot take (empty surname, wrong window shape, NaN); `index` is the 0-based input."""

    def __init__(self, message: str, index: int | None = None):
        super().__init__(message)
        self.index = index


# ---------------------------------------------------------------------------------------------
# Prediction


def prior_of(task: Task) -> dict:
    """The training class prior, as frequencies (for people) and as the float32 logs the decision rule uses."""
    logs = log_prior(task.train, task.num_classes)
    return {"prior": logs.double().exp().tolist(), "log_prior": logs.tolist()}


@torch.inference_mode()
def ensemble_proba(models: list[torch.nn.Module], x: torch.Tensor, lengths: torch.Tensor,
                   batch_size: int = BATCH) -> torch.Tensor:
    """The seeds' mean softmax probabilities (N, C) float32, batch by batch, each batch cut to its longest input."""
    device = next(models[0].parameters()).device
    parts = []
    for start in range(0, len(x), batch_size):
        batch_lengths = lengths[start:start + batch_size]
        batch = x[start:start + batch_size, :int(batch_lengths.max())]
        batch, batch_lengths = batch.to(device), batch_lengths.to(device)
        parts.append(torch.stack([model(batch, batch_lengths).float().softmax(1) for model in models]).mean(0).cpu())
    return torch.cat(parts)


def log_proba(proba: torch.Tensor) -> torch.Tensor:
    """log p as search.decision.ensemble_log_probs takes it (clamped, so a zero probability stays finite)."""
    return proba.clamp(min=1e-12).log()


class Predictor:
    """A loaded model folder: raw inputs in (surnames or raw signal windows), probabilities and labels out."""

    def __init__(self, task: str, class_names: list[str], spec: TrialSpec, decision: dict, preprocessing: dict,
                 models: list[torch.nn.Module], info: dict | None = None):
        self.task, self.class_names, self.spec, self.decision = task, class_names, spec, decision
        self.preprocessing, self.models, self.info = preprocessing, models, info or {}
        self.log_prior = torch.tensor(decision["log_prior"], dtype=torch.float32)
        if task == "names":
            self.alphabet = {ch: i + 1 for i, ch in enumerate(preprocessing["alphabet"])}
        else:
            self.mean = np.asarray(preprocessing["mean"], dtype=np.float32)
            self.std = np.asarray(preprocessing["std"], dtype=np.float32)

    @property
    def tau(self) -> float:
        return float(self.decision.get("tau", 0.0))

    def unknown_characters(self, surnames: list[str]) -> dict[str, int]:
        """Characters (after normalisation) outside the training alphabet, with counts; they map to slot 0."""
        found: dict[str, int] = {}
        for name in surnames:
            for ch in normalise(name):
                if ch not in self.alphabet:
                    found[ch] = found.get(ch, 0) + 1
        return found

    def encode(self, inputs) -> tuple[torch.Tensor, torch.Tensor]:
        """Model input (x, lengths) from raw inputs, exactly as the training data was prepared."""
        if self.task == "names":
            if isinstance(inputs, str):
                raise InputError("surnames must be a list of strings, got one string")
            names = [normalise(name) for name in inputs]
            if not names:
                raise InputError("no surnames given")
            for i, name in enumerate(names):
                if not name:
                    raise InputError(f"surname {i + 1} is empty", i)
            return encode(names, self.alphabet, self.preprocessing["seq_len"])
        windows = check_windows(inputs)
        x = torch.from_numpy((windows - self.mean) / self.std).float()  # the same float32 arithmetic as load_har
        return x, torch.full((len(x),), STEPS, dtype=torch.long)

    def predict_proba(self, inputs, adjust: bool = False, batch_size: int = BATCH) -> np.ndarray:
        """(N, C) ensemble-averaged softmax probabilities.

        adjust=True: softmax(log p - tau * log prior), the probabilities the decision rule ranks
        (the same as p when tau = 0); their argmax is `predict`'s label.
        """
        proba = ensemble_proba(self.models, *self.encode(inputs), batch_size)
        if adjust and self.tau:
            proba = (log_proba(proba) - self.tau * self.log_prior).softmax(1)
        return proba.double().numpy()

    def predict(self, inputs, batch_size: int = BATCH) -> list[str]:
        """Class names by the decision rule argmax(log p - tau * log prior)."""
        proba = ensemble_proba(self.models, *self.encode(inputs), batch_size)
        return [self.class_names[i] for i in decide(log_proba(proba), self.log_prior, self.tau)]


def check_windows(windows) -> np.ndarray:
    """Raw HAR windows as float32 (N, 128, 9); the wrong shape or a non-finite value is an InputError."""
    windows = np.asarray(windows)
    if windows.ndim != 3 or windows.shape[1:] != (STEPS, len(CHANNELS)) or len(windows) == 0:
        raise InputError(f"windows must have shape (N, {STEPS}, {len(CHANNELS)}) with N >= 1 "
                         f"(steps x channels {','.join(CHANNELS)}), got {tuple(windows.shape)}")
    if not np.issubdtype(windows.dtype, np.number) or np.issubdtype(windows.dtype, np.complexfloating):
        raise InputError(f"windows must hold real numbers, got dtype {windows.dtype}")
    windows = windows.astype(np.float32, copy=False)
    bad = ~np.isfinite(windows)
    if bad.any():
        window, step, channel = np.argwhere(bad)[0]
        raise InputError(f"window {window + 1}, channel {CHANNELS[channel]}, step {step + 1}: "
                         f"{windows[window, step, channel]} is not a finite number", int(window))
    return windows


# ---------------------------------------------------------------------------------------------
# Saving


def preprocessing_of(task: Task) -> dict:
    if task.name == "names":
        return {"input": "surname (text)", "alphabet": task.info["alphabet"], "unknown_index": 0,
                "seq_len": task.seq_len, "input_size": task.input_size,
                "normalisation": "NFKD, combining accents dropped, surrounding spaces stripped (data.names.normalise)",
                "encoding": "one-hot: index 0 = character not in the alphabet, index i = alphabet[i - 1]; "
                            "zero vectors after the last character; cut at seq_len (data.names.encode)"}
    stats = task.info["standardisation"]
    return {"input": f"window of {STEPS} steps x {len(CHANNELS)} channels (raw UCI HAR units)",
            "channels": list(task.info.get("channels", CHANNELS)), "steps": STEPS, "seq_len": task.seq_len,
            "input_size": task.input_size, "mean": stats["mean"], "std": stats["std"],
            "standardisation": "(x - mean) / std per channel, float32, mean/std of the training split",
            "csv_layout": f"one window per row, {STEPS * len(CHANNELS)} comma-separated values, channel-major: "
                          f"values 1-{STEPS} are {CHANNELS[0]} steps 1-{STEPS}, then {CHANNELS[1]}, ... (no header)"}


def data_description(task: Task) -> dict:
    info = {k: v for k, v in task.info.items() if k not in ("standardisation", "cache", "load_seconds",
                                                             "first_load_seconds", "alphabet")}
    if "source" in info:  # the file or folder name only: no machine path in a committed model folder
        info["source"] = Path(str(info["source"])).name
    return {"task": task.name, **info, "counts": task.counts()}


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def save_model(folder, spec: TrialSpec, task: Task, models: list[torch.nn.Module], seeds: list[int],
               decision: dict, metrics: dict, source: dict) -> Path:
    """Write a model folder (replacing an old one only once the new one is complete); return its path.

    decision: {"tau": float}; the training prior is added here. metrics: the test metrics to record
    (see `final_metrics`); a "confusion" matrix in it (rows: true class, summed over seeds) gives the
    card's known confusions. source: where the model came from (study, trial, data); a "command"
    in it is how to produce the folder again, quoted when the weights are missing.
    """
    folder = Path(folder)
    if not models or len(models) != len(seeds) or len(set(seeds)) != len(seeds):
        raise ValueError(f"models and seeds must be equally long, non-empty and seeds distinct, "
                         f"got {len(models)} models and seeds {list(seeds)}")
    tau = decision.get("tau", 0.0)
    if isinstance(tau, bool) or not isinstance(tau, (int, float)) or not math.isfinite(tau):
        raise ValueError(f"decision['tau'] must be a finite float, got {tau!r}")
    preprocessing = preprocessing_of(task)
    fresh = create_model(spec, task.input_size, task.num_classes, task.seq_len)
    states = []
    for seed, model in zip(seeds, models):
        state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        fresh.load_state_dict(state)  # refuses a model that does not fit the spec, before anything is written
        states.append(state)
    card = {
        "format": FORMAT,
        "task": task.name,
        "class_names": list(task.class_names),
        "spec": asdict(spec),
        "params": module_param_count(fresh),
        "seeds": [int(s) for s in seeds],
        "decision": {**decision, "tau": float(tau), **prior_of(task),
                     "formula": "argmax(log p - tau * log prior); p = mean of the seeds' softmax probabilities"},
        "preprocessing": preprocessing,
        "metrics": json_safe(metrics),
        "data": data_description(task),
        "source": json_safe(source),
        "versions": {"torch": torch.__version__.split("+")[0], "optuna": optuna.__version__},
        "weights": [],
    }
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.with_name(f".{folder.name}.{os.getpid()}.tmp")
    old = folder.with_name(f".{folder.name}.{os.getpid()}.old")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        (tmp / WEIGHTS).mkdir(parents=True)
        for seed, state in zip(card["seeds"], states):
            path = tmp / WEIGHTS / f"seed-{seed}.pt"
            torch.save(state, path)
            card["weights"].append({"seed": seed, "file": f"{WEIGHTS}/{path.name}", "bytes": path.stat().st_size,
                                    "sha256": sha256(path)})
        (tmp / "model.json").write_text(json.dumps(card, indent=1, allow_nan=False) + "\n")
        (tmp / "model.md").write_text(model_card(card, folder))
        if folder.exists():
            os.replace(folder, old)
        os.replace(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)
    return folder


# ---------------------------------------------------------------------------------------------
# Loading


def load_model(folder, device: str | torch.device = "cpu") -> Predictor:
    """The Predictor of a model folder; a missing, corrupt or other-format folder raises ModelError (one line)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ModelError(f"{folder}: no model folder there (make one with: python -m search.export TASK --trial N)")
    path = folder / "model.json"
    if not path.is_file():
        raise ModelError(f"{path}: missing (not a model folder written by search.export)")
    try:
        card = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"{path}: corrupt ({exc})") from None
    if not isinstance(card, dict) or "format" not in card:
        raise ModelError(f"{path}: corrupt (no 'format' field)")
    if card["format"] != FORMAT:
        raise ModelError(f"{path}: model format {card['format']!r}, but this version reads format {FORMAT}; "
                         f"export the model again{how_to_produce(card)}")
    missing = [k for k in ("task", "class_names", "spec", "seeds", "decision", "preprocessing", "weights")
               if k not in card]
    if missing:
        raise ModelError(f"{path}: corrupt (missing {', '.join(missing)})")
    if card["task"] not in LOADERS:
        raise ModelError(f"{path}: corrupt (task must be one of {sorted(LOADERS)}, got {card['task']!r})")
    try:
        spec = TrialSpec(**card["spec"])
        pre = card["preprocessing"]
        classes = card["class_names"]
        if len(card["decision"]["log_prior"]) != len(classes) or not card["weights"]:
            raise ValueError("prior and class names differ in length, or no weight file is listed")
        if card["task"] == "har" and pre["channels"] != CHANNELS:
            raise ValueError(f"channels {pre['channels']} differ from the order this version reads, {CHANNELS}")
    except (TypeError, ValueError, KeyError) as exc:
        raise ModelError(f"{path}: corrupt ({type(exc).__name__}: {exc})") from None
    models = []
    for entry in card["weights"]:
        file = folder / entry["file"]
        if not file.is_file():
            raise ModelError(f"{file}: missing (weights over 2 MiB are not committed); produce them{how_to_produce(card)}")
        if sha256(file) != entry.get("sha256"):
            raise ModelError(f"{file}: corrupt (its sha256 differs from the one in model.json)")
        try:
            model = create_model(spec, pre["input_size"], len(classes), pre["seq_len"])
            model.load_state_dict(torch.load(file, map_location="cpu", weights_only=True))
        except Exception as exc:  # unpickling and shape errors differ by cause; all mean the same here
            raise ModelError(f"{file}: does not load into the model.json spec ({type(exc).__name__}: "
                             f"{str(exc).strip().splitlines()[0] if str(exc).strip() else 'no detail'})") from None
        models.append(model.to(device).eval())
    return Predictor(card["task"], classes, spec, card["decision"], pre, models, card)


def how_to_produce(card: dict) -> str:
    command = (card.get("source") or {}).get("command")
    return f" with: {command}" if command else " with: python -m search.export TASK --trial N"


# ---------------------------------------------------------------------------------------------
# Test metrics and the card


def model_card(card: dict, folder: Path) -> str:
    """model.md: what the model is, how to use it, test metrics, known confusions, what it is (not) for."""
    task, spec, names, pre = card["task"], card["spec"], card["class_names"], card["preprocessing"]
    seeds, metrics, source, decision = card["seeds"], card["metrics"] or {}, card["source"] or {}, card["decision"]
    setting = " ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in spec.items() if k != "family")
    where = f"trial #{source['trial']} of study {source.get('study')!r}" if "trial" in source else "a study"
    refit = " on the training and validation rows together (refit)" if source.get("trained_on") == "train+validation" else ""
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
              f"model = load_model({str(folder)!r})",
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


# ---------------------------------------------------------------------------------------------
# python -m search.export


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m search.export",
                                description="Retrain one trial's configuration on the final seeds and write a model "
                                            "folder (model.json, model.md, weights/) for search.predict.")
    p.add_argument("task", choices=sorted(LOADERS))
    p.add_argument("--trial", type=int, required=True, help="the trial number in the study")
    p.add_argument("--storage", default=defaults.STORAGE, help="the study's SQLAlchemy URL (default %(default)s)")
    p.add_argument("--study-name", default=None, help="default: the task name")
    p.add_argument("--data", default=None, help="data folder or archive (default: the source the study recorded)")
    p.add_argument("--seeds", type=int, default=defaults.FINAL_SEEDS,
                   help=f"final seeds {defaults.FINAL_SEED_BASE}, {defaults.FINAL_SEED_BASE + 1}, ... (default %(default)s)")
    p.add_argument("--tau", type=float, default=None,
                   help="logit adjustment of the decision rule: argmax(log p - tau * log prior) (default: chosen "
                        "on the validation split for a trial with decision=logit_adjust, else 0)")
    p.add_argument("--refit", action="store_true",
                   help="train on the training and validation rows together, as a report's recommendation is (tau: "
                        "--tau, else chosen on validation by a first run on the training split)")
    p.add_argument("--out", default=None, help="the model folder to write (default reports/<study>/model-trial-N)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default=defaults.DEVICE)
    p.add_argument("--threads", type=int, default=defaults.THREADS, help="torch threads (default %(default)s)")
    return p


def evaluate_refit(spec: TrialSpec, task: Task, seeds: list[int], metric: str, device: str = "cpu",
                   tau: float | None = None, on_epoch=None, keep_models: bool = False,
                   write=lambda line: None) -> tuple[dict, list]:
    """evaluate_spec of spec refitted on train + validation, as the report deploys it, decided with tau, or
    (None) with the tau its training-split seeds choose on validation first (argmax: 0, nothing to choose)."""
    if tau is None:
        tau = 0.0
        if spec.decision == "logit_adjust":
            write("choosing tau on validation: the training split first")
            tau = evaluate_spec(spec, task, seeds, metric, device, on_epoch=on_epoch)[0]["decision"]["tau"]
    return evaluate_spec(spec, task.refit(), seeds, metric, device, keep_models=keep_models, on_epoch=on_epoch,
                         tau=tau)


def export(args: argparse.Namespace, write=lambda line: print(line, file=sys.stderr, flush=True)) -> Path:
    """Retrain trial args.trial of the study on the final seeds and write its model folder."""
    for name, minimum in (("seeds", 1), ("trial", 0), ("threads", 1)):
        if getattr(args, name) < minimum:
            raise EvaluationError(f"--{name} must be an int >= {minimum}, got {getattr(args, name)}")
    if args.tau is not None and not math.isfinite(args.tau):
        raise EvaluationError(f"--tau must be a finite number, got {args.tau}")
    if args.data is not None and not Path(args.data).exists():
        raise EvaluationError(f"--data {args.data!r}: no such file or folder")
    study_name = args.study_name or args.task
    study = open_study(args.storage, study_name)
    attrs = study.user_attrs
    if attrs.get("task", args.task) != args.task:
        raise EvaluationError(f"study {study_name!r} is a {attrs['task']} study, not {args.task}")
    trials = {t.number: t for t in study.get_trials(deepcopy=False)}
    if args.trial not in trials:
        span = f"0-{max(trials)}" if trials else "none"
        raise EvaluationError(f"--trial {args.trial}: no such trial in study {study_name!r} (trials: {span})")
    trial = trials[args.trial]
    State = optuna.trial.TrialState
    if trial.state not in (State.COMPLETE, State.PRUNED):
        raise EvaluationError(f"--trial {args.trial} is {trial.state.name} (only COMPLETE or PRUNED trials have a "
                          "configuration that trained)")
    spec = spec_of(trial)
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", study.study_name).strip("._") or "study"
    out = Path(args.out) if args.out else Path("reports") / safe / f"model-trial-{trial.number}"
    task, _ = load_checked(args.task, args.data, attrs)
    seeds = defaults.final_seeds(args.seeds)
    torch.set_num_threads(args.threads)
    write(f"training trial #{trial.number} ({spec.family}) on seeds {seeds[0]}-{seeds[-1]}, {spec.epochs} epochs")

    def on_epoch(epoch: int, results) -> bool:
        write(f"  epoch {epoch}/{spec.epochs}")
        return False  # never stop early

    metric = attrs.get("metric") or defaults.METRIC[args.task]
    if args.refit:
        entry, states = evaluate_refit(spec, task, seeds, metric, args.device, tau=args.tau, on_epoch=on_epoch,
                                       keep_models=True, write=write)
        task = task.refit()
    else:
        entry, states = evaluate_spec(spec, task, seeds, metric, args.device, keep_models=True, on_epoch=on_epoch)
    failed = [f"seed {r['seed']} {r['status']}" for r in entry["runs"] if r["status"] != "finished"]
    if failed:
        raise RuntimeError(f"trial #{trial.number} did not train: {'; '.join(failed)}; nothing written")
    tau = args.tau if args.tau is not None else entry["decision"]["tau"]
    models = []
    for state in states:
        models.append(create_model(spec, task.input_size, task.num_classes, task.seq_len))
        models[-1].load_state_dict(state)
        models[-1].eval()
    command = ["python -m search.export", args.task, "--trial", str(trial.number), "--storage", hide_password(args.storage),
               "--study-name", study_name, "--seeds", str(args.seeds), "--out", shown_path(str(out))] \
        + (["--data", shown_path(args.data)] if args.data else []) + (["--tau", f"{args.tau:g}"] if args.tau is not None else []) \
        + (["--refit"] if args.refit else [])
    source = {"study": study.study_name, "storage": hide_password(args.storage), "trial": trial.number,
              "state": trial.state.name, "search_metric": metric,
              "search_value": trial.value if trial.state == State.COMPLETE else None,
              "search_seeds": trial.user_attrs.get("seeds"),
              "tau_from": "--tau" if args.tau is not None else
              "validation split" if spec.decision == "logit_adjust" else "argmax rule",
              "trained_on": "train+validation" if args.refit else "train",
              "study_commands": [hide_password(c) for c in attrs.get("commands", [])],
              "command": " ".join(command[:1] + [shlex.quote(a) for a in command[1:]])}
    return save_model(out, spec, task, models, seeds, {"tau": tau}, final_metrics(models, task, tau), source)


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        folder = export(args)
    except (EvaluationError, DataError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
    card = json.loads((folder / "model.json").read_text())
    mean, ensemble = card["metrics"]["mean"], card["metrics"]["ensemble"]
    print(f"{folder}: {card['spec']['family']} ensemble of {len(card['seeds'])} seeds; test accuracy "
          f"{mean['accuracy']:.3f} (ensemble {ensemble['accuracy']:.3f}), balanced accuracy "
          f"{mean['balanced_accuracy']:.3f} (ensemble {ensemble['balanced_accuracy']:.3f})")
    example = "Nakamura \"O'Neill\" Schmidt" if args.task == "names" else "'UCI HAR Dataset/test/Inertial Signals'"
    print(f"predict: python -m search.predict {args.task} --model {folder} {example}")


if __name__ == "__main__":
    main()
