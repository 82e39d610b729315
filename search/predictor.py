"""A loaded model: raw inputs (surnames, signal windows) in, ensemble probabilities and labels out, batch by batch."""
from __future__ import annotations

import numpy as np
import torch

from data import Task
from data.har import CHANNELS, STEPS
from data.names import encode, normalise
from .decision import decide
from .train import TrialSpec, log_prior

BATCH = 1024  # inputs per forward pass: thousands of inputs take seconds


class InputError(ValueError):
    """Input a model cannot take (empty surname, wrong window shape, NaN); `index` is the 0-based input."""

    def __init__(self, message: str, index: int | None = None):
        super().__init__(message)
        self.index = index


def prior_of(task: Task) -> dict:
    """The training class prior, as frequencies (for people) and as the float32 logs the decision rule uses."""
    logs = log_prior(task.train, task.num_classes)
    return {"prior": logs.double().exp().tolist(), "log_prior": logs.tolist()}


def preprocessing_of(task: Task) -> dict:
    """How raw inputs become the model's input, as model.json records it (and Predictor applies it)."""
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
    """A loaded model folder: raw inputs in (surnames or raw signal windows), probabilities and labels out.

    Inputs are encoded one batch at a time, so memory grows with the batch, not with the input."""

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

    def unknown_characters(self, surnames) -> dict[str, int]:
        """Characters (after normalisation) outside the training alphabet, with counts; they map to slot 0."""
        found: dict[str, int] = {}
        for name in surnames:
            for ch in normalise(name):
                if ch not in self.alphabet:
                    found[ch] = found.get(ch, 0) + 1
        return found

    def checked(self, inputs):
        """The inputs as a sequence the batches are cut from (normalised surnames, or windows); InputError if not."""
        if self.task == "names":
            if isinstance(inputs, str):
                raise InputError("surnames must be a list of strings, got one string")
            names = [normalise(name) for name in inputs]
            if not names:
                raise InputError("no surnames given")
            for i, name in enumerate(names):
                if not name:
                    raise InputError(f"surname {i + 1} is empty", i)
            return names
        return check_shape(inputs)

    def encode(self, batch, first: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """Model input (x, lengths) of one batch of checked inputs, exactly as the training data was prepared
        (first: the batch's 0-based place in the whole input, for messages)."""
        if self.task == "names":
            longest = max(map(len, batch))  # the models see each batch cut to its longest input anyway
            return encode(batch, self.alphabet, min(longest, self.preprocessing["seq_len"]))
        windows = check_windows(batch, first)
        x = torch.from_numpy((windows - self.mean) / self.std).float()  # the same float32 arithmetic as load_har
        return x, torch.full((len(x),), STEPS, dtype=torch.long)

    def batch_proba(self, batch, adjust: bool = False, first: int = 0) -> torch.Tensor:
        """(B, C) float32 probabilities of one batch of checked inputs (adjust: by the decision rule)."""
        proba = ensemble_proba(self.models, *self.encode(batch, first), len(batch))
        if adjust and self.tau:
            proba = (log_proba(proba) - self.tau * self.log_prior).softmax(1)
        return proba

    def predict_proba(self, inputs, adjust: bool = False, batch_size: int = BATCH) -> np.ndarray:
        """(N, C) ensemble-averaged softmax probabilities.

        adjust=True: softmax(log p - tau * log prior), the probabilities the decision rule ranks
        (the same as p when tau = 0); their argmax is `predict`'s label.
        """
        inputs = self.checked(inputs)
        return torch.cat([self.batch_proba(inputs[start:start + batch_size], adjust, start)
                          for start in range(0, len(inputs), batch_size)]).double().numpy()

    def predict(self, inputs, batch_size: int = BATCH) -> list[str]:
        """Class names by the decision rule argmax(log p - tau * log prior)."""
        proba = torch.from_numpy(self.predict_proba(inputs, batch_size=batch_size)).float()
        return [self.class_names[i] for i in decide(log_proba(proba), self.log_prior, self.tau)]


def check_layout(shape: tuple, dtype: np.dtype) -> None:
    """Refuse, before any value is read, an array that is not (N >= 1, 128, 9) real numbers."""
    if len(shape) != 3 or tuple(shape[1:]) != (STEPS, len(CHANNELS)) or shape[0] == 0:
        raise InputError(f"windows must have shape (N, {STEPS}, {len(CHANNELS)}) with N >= 1 "
                         f"(steps x channels {','.join(CHANNELS)}), got {tuple(shape)}")
    if not np.issubdtype(dtype, np.number) or np.issubdtype(dtype, np.complexfloating):
        raise InputError(f"windows must hold real numbers, got dtype {dtype}")


def check_shape(windows) -> np.ndarray:
    """Raw HAR windows as an array of shape (N, 128, 9) of real numbers (not yet read when memory-mapped)."""
    windows = windows if isinstance(windows, np.ndarray) else np.asarray(windows)
    check_layout(windows.shape, windows.dtype)
    return windows


def check_windows(windows, first: int = 0) -> np.ndarray:
    """Raw HAR windows as float32 (N, 128, 9); the wrong shape or a non-finite value is an InputError naming the
    window (first: the 0-based number of windows[0] in the whole input)."""
    windows = check_shape(windows).astype(np.float32, copy=False)
    bad = ~np.isfinite(windows)
    if bad.any():
        window, step, channel = np.argwhere(bad)[0]
        raise InputError(f"window {first + window + 1}, channel {CHANNELS[channel]}, step {step + 1}: "
                         f"{windows[window, step, channel]} is not a finite number", int(first + window))
    return windows
