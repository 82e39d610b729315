"""A loaded model: raw inputs (texts or numeric series, by the folder's kind) in, ensemble probabilities and labels out."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from data import Task
from data.text import encode, normalise
from .decision import decide
from .tasks import REGISTRY, SERIES, TEXT, entry_of
from .train import TrialSpec, log_prior

BATCH = 1024  # inputs per forward pass: thousands of inputs take seconds
NOUNS = {TEXT: {"input": "text", "label": "label"}, SERIES: {"input": "series", "label": "class"}}


class InputError(ValueError):
    """Input a model cannot take (empty text, wrong series shape, NaN); `index` is the 0-based input."""

    def __init__(self, message: str, index: int | None = None):
        super().__init__(message)
        self.index = index


def plural(noun: str) -> str:
    if noun.endswith("series"):
        return noun
    return noun + ("es" if noun.endswith(("s", "x", "ch", "sh")) else "s")


def nouns_of(kind: str, notes: dict | None = None) -> dict:
    """What an input and a class are called: as a task entry's notes say, else as its kind's inputs are."""
    return {**NOUNS[kind], **{k: v for k, v in (notes or {}).items() if k in NOUNS[kind]}}


def prior_of(task: Task) -> dict:
    """The training class prior, as frequencies (for people) and as the float32 logs the decision rule uses."""
    logs = log_prior(task.train, task.num_classes)
    return {"prior": logs.double().exp().tolist(), "log_prior": logs.tolist()}


def csv_layout(channels: list[str], steps: int | None, seq_len: int) -> str:
    values = f"{steps * len(channels)}" if steps else f"{len(channels)} x T (T from 1 to {seq_len})"
    return (f"one series per row, {values} comma-separated numbers, no header, channel-major: the row's first T "
            f"values are {channels[0]} at steps 1 to T" + (f", the next T {channels[1]}, and so on in the order "
                                                          f"{', '.join(channels)}" if len(channels) > 1 else ""))


def preprocessing_of(task: Task) -> dict:
    """How raw inputs become the model's input, by the task's kind, as model.json records it (Predictor applies it)."""
    if entry_of(task).kind == TEXT:
        return {"kind": TEXT, "alphabet": task.info["alphabet"], "unknown_index": 0, "seq_len": task.seq_len,
                "input_size": task.input_size,
                "normalisation": "NFKD, combining accents dropped, surrounding spaces stripped (data.text.normalise)",
                "encoding": "one-hot: index 0 = character not in the alphabet, index i = alphabet[i - 1]; "
                            "zero vectors after the last character; cut at seq_len (data.text.encode)"}
    stats = task.info["standardisation"]
    channels = list(task.info.get("channels") or [f"dim_{c}" for c in range(task.input_size)])
    lengths = torch.cat([task.train.lengths, task.val.lengths, task.test.lengths])
    steps = task.seq_len if bool((lengths == task.seq_len).all()) else None  # equal lengths: only that length
    return {"kind": SERIES, "channels": channels, "steps": steps, "seq_len": task.seq_len,
            "input_size": task.input_size, "mean": stats["mean"], "std": stats["std"],
            "standardisation": "(x - mean) / std per channel, mean/std of the training split's real steps",
            "padding": "each series exactly steps long" if steps else
                       f"zeros after each series' last step (masked), up to the longest in a batch; series longer "
                       f"than {task.seq_len} steps are cut there, as in training",
            "csv_layout": csv_layout(channels, steps, task.seq_len)}


@dataclass
class Series:
    """Raw numeric inputs: values (N, T, C) (an array, maybe memory-mapped, or a list of (T_i, C) arrays);
    lengths (N,) or None: then each series ends before its trailing all-NaN steps (NaN padding)."""

    values: np.ndarray | list
    lengths: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.values)

    def __getitem__(self, part: slice) -> "Series":
        return Series(self.values[part], None if self.lengths is None else self.lengths[part])


@dataclass(frozen=True)
class Layout:
    """The series a model takes: its channels in order, a fixed number of steps (or None) and seq_len."""

    channels: tuple[str, ...]
    steps: int | None
    seq_len: int
    noun: str

    def shape(self) -> str:
        steps = self.steps or "T"
        return (f"{plural(self.noun)} must have shape (N, {steps}, {len(self.channels)}) with N >= 1"
                + ("" if self.steps else " and T >= 1") + f" (steps x channels {','.join(self.channels)})")

    def check(self, shape: tuple, dtype: np.dtype) -> None:
        """Refuse, before any value is read, an array that is not N series of this layout, of real numbers
        ((N, T) is one channel when the model has one)."""
        shape = tuple(shape) + ((1,) if len(shape) == 2 and len(self.channels) == 1 else ())
        if len(shape) != 3 or shape[2] != len(self.channels) or shape[0] == 0 or shape[1] == 0 \
                or (self.steps and shape[1] != self.steps):
            raise InputError(f"{self.shape()}, got {tuple(shape)}")
        if not np.issubdtype(dtype, np.number) or np.issubdtype(dtype, np.complexfloating):
            raise InputError(f"{plural(self.noun)} must hold real numbers, got dtype {dtype}")


@torch.inference_mode()
def ensemble_proba(models: list[torch.nn.Module], x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """The seeds' mean softmax probabilities (B, C) float32 of one batch, cut to its longest input."""
    device = next(models[0].parameters()).device
    x, lengths = x[:, :int(lengths.max())].to(device), lengths.to(device)
    return torch.stack([model(x, lengths).float().softmax(1) for model in models]).mean(0).cpu()


def log_proba(proba: torch.Tensor) -> torch.Tensor:
    """log p as search.decision.ensemble_log_probs takes it (clamped, so a zero probability stays finite)."""
    return proba.clamp(min=1e-12).log()


class Predictor:
    """A loaded model folder: raw inputs in (texts, or numeric series as Series or arrays), probabilities and
    labels out. Inputs are encoded one batch at a time, so memory grows with the batch, not with the input."""

    def __init__(self, task: str, class_names: list[str], spec: TrialSpec, decision: dict, preprocessing: dict,
                 models: list[torch.nn.Module], info: dict | None = None, nouns: dict | None = None):
        self.task, self.class_names, self.spec, self.decision = task, class_names, spec, decision
        self.preprocessing, self.models, self.info = preprocessing, models, info or {}
        self.kind = preprocessing["kind"]
        # A format-1 folder recorded no nouns: its registered task's, if it is one of that kind.
        legacy = REGISTRY[task].notes if task in REGISTRY and REGISTRY[task].kind == self.kind else None
        self.nouns = nouns or nouns_of(self.kind, legacy)
        self.log_prior = torch.tensor(decision["log_prior"], dtype=torch.float32)
        self.cut = 0  # series cut at seq_len so far (texts: counted by the caller)
        if self.kind == TEXT:
            self.alphabet = {ch: i + 1 for i, ch in enumerate(preprocessing["alphabet"])}
        else:
            self.layout = Layout(tuple(preprocessing["channels"]), preprocessing["steps"], preprocessing["seq_len"],
                                 self.nouns["input"])
            self.mean = np.asarray(preprocessing["mean"], dtype=np.float32)
            self.std = np.asarray(preprocessing["std"], dtype=np.float32)

    @property
    def tau(self) -> float:
        return float(self.decision.get("tau", 0.0))

    def unknown_characters(self, texts) -> dict[str, int]:
        """Characters (after normalisation) outside the training alphabet, with counts; they map to slot 0."""
        found: dict[str, int] = {}
        for text in texts:
            for ch in normalise(text):
                if ch not in self.alphabet:
                    found[ch] = found.get(ch, 0) + 1
        return found

    def checked(self, inputs, lengths=None):
        """The inputs as a sequence the batches are cut from (normalised texts, or Series); InputError if not."""
        noun = self.nouns["input"]
        if self.kind == TEXT:
            if isinstance(inputs, str):
                raise InputError(f"{plural(noun)} must be a list of strings, got one string")
            texts = [normalise(text) for text in inputs]
            if not texts:
                raise InputError(f"no {plural(noun)} given")
            for i, text in enumerate(texts):
                if not text:
                    raise InputError(f"{noun} {i + 1} is empty", i)
            return texts
        if isinstance(inputs, Series):
            return inputs
        if isinstance(inputs, (list, tuple)) and inputs and isinstance(inputs[0], np.ndarray) \
                and len({len(s) for s in inputs}) > 1:
            return Series(list(inputs), lengths)  # unequal lengths: each series checked as its batch is encoded
        values = inputs if isinstance(inputs, np.ndarray) else np.asarray(inputs)
        self.layout.check(values.shape, values.dtype)
        return Series(values, None if lengths is None else np.asarray(lengths))

    def encode(self, batch, first: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """Model input (x, lengths) of one batch of checked inputs, exactly as the training data was prepared
        (first: the batch's 0-based place in the whole input, for messages)."""
        if self.kind == TEXT:
            longest = max(map(len, batch))  # the models see each batch cut to its longest input anyway
            return encode(batch, self.alphabet, min(longest, self.preprocessing["seq_len"]))
        values, lengths = self.series_values(batch, first)
        seq_len = self.layout.seq_len
        self.cut += int((lengths > seq_len).sum())
        lengths = np.minimum(lengths, seq_len)
        values = values[:, :min(values.shape[1], seq_len)]
        # The arithmetic of training: float32 for float32 recordings (load_har), float64 for the rest (data.series).
        x = (values - self.mean) / self.std
        x[np.arange(x.shape[1])[None, :] >= lengths[:, None]] = 0  # padding is zeros, as in training
        return torch.from_numpy(x.astype(np.float32, copy=False)), torch.from_numpy(lengths.astype(np.int64))

    def series_values(self, batch: Series, first: int) -> tuple[np.ndarray, np.ndarray]:
        """A batch's values (B, T, C) (float32 or float64, NaN-padded) and lengths, checked: the layout, the
        lengths, every real step finite; an InputError names the series, channel and step."""
        noun, layout = self.nouns["input"], self.layout
        if isinstance(batch.values, list):
            items = [np.asarray(s) for s in batch.values]
            items = [s[:, None] if s.ndim == 1 and len(layout.channels) == 1 else s for s in items]
            for i, s in enumerate(items):
                try:
                    layout.check((1, *s.shape), s.dtype)
                except InputError as exc:
                    raise InputError(f"{noun} {first + i + 1}: {exc}", first + i) from None
            dtype = np.float64 if any(s.dtype == np.float64 for s in items) else np.float32
            values = np.full((len(items), max(map(len, items)), len(layout.channels)), np.nan, dtype=dtype)
            for i, s in enumerate(items):
                values[i, :len(s)] = s
            given = np.array([len(s) for s in items]) if batch.lengths is None else batch.lengths
        else:
            values = np.asarray(batch.values)
            values = values[:, :, None] if values.ndim == 2 else values
            values = values.astype(np.float64 if values.dtype == np.float64 else np.float32, copy=False)
            given = batch.lengths
        if given is None:  # NaN padding: a series ends before its trailing all-NaN steps
            real = ~np.isnan(values).all(axis=2)
            lengths = np.where(real.any(1), values.shape[1] - np.argmax(real[:, ::-1], axis=1), 0)
        else:
            lengths = np.asarray(given)
            if lengths.dtype.kind not in "iu" or lengths.shape != (len(values),):
                raise InputError(f"lengths must be {len(values)} integers, got {lengths.dtype} of shape {lengths.shape}")
        for i, n in enumerate(lengths.tolist()):
            if not 1 <= n <= values.shape[1] or (layout.steps and n != layout.steps):
                rule = f"exactly {layout.steps}" if layout.steps else f"from 1 to {values.shape[1]}"
                why = " (all NaN)" if n == 0 and given is None else " (the steps before NaN padding)" \
                    if given is None else ""
                raise InputError(f"{noun} {first + i + 1}: {n} steps{why}; this model takes {rule}", first + i)
        bad = ~np.isfinite(values) & (np.arange(values.shape[1])[None, :, None] < lengths[:, None, None])
        if bad.any():
            i, step, channel = np.argwhere(bad)[0]
            raise InputError(f"{noun} {first + i + 1}, channel {layout.channels[channel]}, step {step + 1}: "
                             f"{values[i, step, channel]} is not a finite number", int(first + i))
        return values, lengths.astype(np.int64)

    def batch_proba(self, batch, adjust: bool = False, first: int = 0) -> torch.Tensor:
        """(B, C) float32 probabilities of one batch of checked inputs (adjust: by the decision rule)."""
        proba = ensemble_proba(self.models, *self.encode(batch, first))
        if adjust and self.tau:
            proba = (log_proba(proba) - self.tau * self.log_prior).softmax(1)
        return proba

    def predict_proba(self, inputs, adjust: bool = False, batch_size: int = BATCH, lengths=None) -> np.ndarray:
        """(N, C) ensemble-averaged softmax probabilities. inputs: texts, or series ((N, T, C) array, a list of
        (T_i, C) arrays, or a Series); lengths: the series' lengths (default: NaN padding, else T).

        adjust=True: softmax(log p - tau * log prior), the probabilities the decision rule ranks
        (the same as p when tau = 0); their argmax is `predict`'s label.
        """
        inputs = self.checked(inputs, lengths)
        return torch.cat([self.batch_proba(inputs[start:start + batch_size], adjust, start)
                          for start in range(0, len(inputs), batch_size)]).double().numpy()

    def predict(self, inputs, batch_size: int = BATCH, lengths=None) -> list[str]:
        """Class names by the decision rule argmax(log p - tau * log prior)."""
        proba = torch.from_numpy(self.predict_proba(inputs, batch_size=batch_size, lengths=lengths)).float()
        return [self.class_names[i] for i in decide(log_proba(proba), self.log_prior, self.tau)]
