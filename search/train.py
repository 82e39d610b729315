"""One training function for both tasks and every family: train K seeds, epoch by epoch.

Free of Optuna: the studies call `train_seeds` with an `on_epoch` callback that may stop it.
The data stays on the training device for the whole call, and nothing inside an epoch waits for
the device: losses and gradient norms accumulate there and are read once, at the epoch's end,
where divergence and pruning are decided.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.utils.class_weight import compute_class_weight

from data import Split, Task
from models import ModelSpec, create_model, module_param_count

IMBALANCE = ("none", "class_weights", "oversample", "logit_adjust")
DECISIONS = ("argmax", "logit_adjust")
SCHEDULES = ("constant", "cosine")
METRICS = ("accuracy", "balanced_accuracy", "macro_f1")
BUCKET = 32  # batches sorted by length together, so short surnames are not padded to the longest
TRAIN_TAU = 1.0  # imbalance=logit_adjust trains on logits + tau * log(prior) (Menon et al. 2021)


@dataclass(frozen=True)
class TrainSpec:
    lr: float = 1e-3
    batch_size: int = 64
    epochs: int = 10
    clipnorm: float = 0.0  # 0: no clipping; else the max global L2 norm of the gradient
    imbalance: str = "none"
    weight_decay: float = 0.0
    schedule: str = "constant"
    decision: str = "argmax"  # logit_adjust: argmax of logits - tau * log(prior), tau chosen on validation

    def __post_init__(self):
        for name, minimum in (("batch_size", 1), ("epochs", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
        if not isinstance(self.lr, (int, float)) or not 0 < self.lr < math.inf:
            raise ValueError(f"lr must be a finite float > 0, got {self.lr!r}")
        for name in ("clipnorm", "weight_decay"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not 0 <= value < math.inf:
                raise ValueError(f"{name} must be a finite float >= 0, got {value!r}")
        for name, choices in (("imbalance", IMBALANCE), ("schedule", SCHEDULES), ("decision", DECISIONS)):
            if getattr(self, name) not in choices:
                raise ValueError(f"{name} must be one of {list(choices)}, got {getattr(self, name)!r}")


@dataclass(frozen=True)
class TrialSpec(TrainSpec, ModelSpec):
    """Everything one trial needs; the search spaces' parameter names are these fields."""

    def __post_init__(self):
        ModelSpec.__post_init__(self)
        TrainSpec.__post_init__(self)


@dataclass
class SeedResult:
    seed: int
    history: dict[str, list[float]] = field(default_factory=dict)
    confusion: list[list[int]] = field(default_factory=list)  # validation, after the last epoch trained
    status: str = "running"  # finished | stopped at epoch N | diverged at epoch N
    seconds: float = 0.0
    test: dict | None = None  # metrics and confusion on the test split, only when asked for
    # Validation logits after the last epoch (and test logits with test=True): decisions and ensembles.
    logits: dict[str, torch.Tensor] = field(default_factory=dict, repr=False, compare=False)
    model: torch.nn.Module | None = field(default=None, repr=False, compare=False)  # with keep_models=True

    @property
    def final(self) -> dict[str, float]:
        return {key[4:]: values[-1] for key, values in self.history.items() if key.startswith("val_") and values}


def scores(y_true, y_pred, num_classes: int) -> dict:
    """accuracy, balanced accuracy and macro-F1 (over the classes present in y_true), and the confusion matrix.

    The same numbers as scikit-learn's accuracy_score, balanced_accuracy_score and f1_score(average="macro",
    labels=present) (tests/test_train.py checks it), computed from one bincount: scikit-learn's three
    calls took 46 ms here, a third of a small model's whole epoch, and this runs after every epoch.
    """
    y_true, y_pred = np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)
    confusion = np.bincount(y_true * num_classes + y_pred, minlength=num_classes * num_classes)
    confusion = confusion.reshape(num_classes, num_classes)
    support, predicted, correct = confusion.sum(1), confusion.sum(0), np.diag(confusion)
    present = support > 0
    recall = correct / np.maximum(support, 1)
    f1 = 2 * correct / np.maximum(support + predicted, 1)  # 2PR/(P+R) = 2TP/(support + predicted)
    return {
        "accuracy": float(correct.sum() / max(len(y_true), 1)),
        "balanced_accuracy": float(recall[present].mean()) if present.any() else math.nan,
        "macro_f1": float(f1[present].mean()) if present.any() else math.nan,
        "confusion": confusion.tolist(),
    }


def per_class(confusion) -> dict[str, list[float]]:
    """Recall, precision and F1 of each class from a confusion matrix (rows: true class)."""
    confusion = np.asarray(confusion, dtype=float)
    correct = np.diag(confusion)
    recall = correct / np.maximum(confusion.sum(1), 1)
    precision = correct / np.maximum(confusion.sum(0), 1)
    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros_like(recall),
                   where=precision + recall > 0)
    return {"recall": recall.tolist(), "precision": precision.tolist(), "f1": f1.tolist()}


def log_prior(split: Split, num_classes: int) -> torch.Tensor:
    """log of the class frequencies of a (training) split; a class with no example gets log(1/N)."""
    counts = torch.bincount(split.y, minlength=num_classes).double().clamp(min=1)
    return (counts / counts.sum()).log().float()


def class_weights(split: Split, num_classes: int) -> torch.Tensor:
    """Inverse class frequency of the training split ("balanced": a balanced set gets weight 1)."""
    y = split.y.numpy()
    return torch.tensor(compute_class_weight("balanced", classes=np.arange(num_classes), y=y), dtype=torch.float32)


def epoch_order(split: Split, num_classes: int, oversample: bool, generator: torch.Generator) -> torch.Tensor:
    """This epoch's example order; with oversample, examples drawn so that every class is equally likely."""
    if oversample:
        weights = (1.0 / torch.bincount(split.y, minlength=num_classes).float())[split.y]
        return torch.multinomial(weights, len(split), replacement=True, generator=generator)
    return torch.randperm(len(split), generator=generator)


def batches(order: torch.Tensor, lengths: torch.Tensor, batch_size: int, generator: torch.Generator):
    """Cut the order into batches; within each run of BUCKET batches, examples are sorted by length."""
    chunks = []
    for start in range(0, len(order), batch_size * BUCKET):
        chunk = order[start:start + batch_size * BUCKET]
        chunk = chunk[torch.argsort(lengths[chunk], stable=True)]
        chunks += list(chunk.split(batch_size))
    for i in torch.randperm(len(chunks), generator=generator).tolist():
        yield chunks[i]


class DeviceSplit:
    """A split copied to the device once; lengths stay on the CPU too, so cutting a batch never waits."""

    def __init__(self, split: Split, device: torch.device):
        self.cpu_lengths = split.lengths
        self.x, self.y, self.lengths = (t.to(device) for t in (split.x, split.y, split.lengths))

    def take(self, index: torch.Tensor):
        """A batch (index: CPU tensor) cut to its longest sequence."""
        width = int(self.cpu_lengths[index].max())
        index = index.to(self.x.device, non_blocking=True)
        return self.x[index, :width], self.y[index], self.lengths[index]


@torch.inference_mode()
def predict(model: torch.nn.Module, split: DeviceSplit, batch_size: int = 1024) -> torch.Tensor:
    """Logits (N, C) on the CPU, in the split's order."""
    model.eval()
    order = torch.argsort(split.cpu_lengths, stable=True)  # similar lengths together: less padding
    parts = []
    for index in order.split(batch_size):
        x, _, lengths = split.take(index)
        parts.append(model(x, lengths))
    logits = torch.cat(parts)
    return logits[torch.argsort(order.to(logits.device))].float().cpu()


class SeedRun:
    """One independent model: its seed fixes initialisation, data order and dropout masks."""

    def __init__(self, spec: TrialSpec, task: Task, seed: int, device: torch.device,
                 data: dict[str, DeviceSplit]):
        self.spec, self.task, self.seed, self.device, self.data = spec, task, seed, device, data
        torch.manual_seed(seed)
        self.model = create_model(spec, task.input_size, task.num_classes, task.seq_len).to(device)
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=spec.lr, weight_decay=spec.weight_decay)
        self.generator = torch.Generator().manual_seed(seed)
        self.weights = class_weights(task.train, task.num_classes).to(device) if spec.imbalance == "class_weights" else None
        # logit_adjust: the loss sees logits + tau * log(prior), so the logits themselves learn a balanced rule.
        self.shift = (TRAIN_TAU * log_prior(task.train, task.num_classes)).to(device) \
            if spec.imbalance == "logit_adjust" else None
        self.epoch = 0
        self.result = SeedResult(seed)

    def learning_rate(self) -> float:
        if self.spec.schedule == "cosine":
            return self.spec.lr * 0.5 * (1 + math.cos(math.pi * self.epoch / self.spec.epochs))
        return self.spec.lr

    def train_epoch(self, should_stop: Callable[[], bool]) -> None:
        started = time.perf_counter()
        spec, train = self.spec, self.data["train"]
        for group in self.optimizer.param_groups:
            group["lr"] = self.learning_rate()
        torch.manual_seed(self.seed * 100_003 + self.epoch)  # dropout masks independent of other seeds
        self.model.train()
        parameters = [p for p in self.model.parameters() if p.requires_grad]
        loss_sum = torch.zeros((), device=self.device)
        norms = []
        order = epoch_order(self.task.train, self.task.num_classes, spec.imbalance == "oversample", self.generator)
        for index in batches(order, train.cpu_lengths, spec.batch_size, self.generator):
            if should_stop():
                raise KeyboardInterrupt  # Optuna marks the trial FAIL and keeps the finished ones
            x, y, lengths = train.take(index)
            logits = self.model(x, lengths)
            loss = F.cross_entropy(logits if self.shift is None else logits + self.shift, y, weight=self.weights)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            # The pre-clipping norm is recorded either way; clipping rescales only when clipnorm > 0.
            norm = torch.nn.utils.get_total_norm([p.grad for p in parameters if p.grad is not None])
            if spec.clipnorm > 0:
                torch.nn.utils.clip_grads_with_norm_(parameters, spec.clipnorm, norm)
            self.optimizer.step()
            loss_sum += loss.detach() * len(index)
            norms.append(norm)
        self.epoch += 1
        norms = torch.stack(norms) if norms else torch.zeros(1, device=self.device)
        train_loss, grad_norm, grad_norm_max = torch.stack(
            [loss_sum / max(len(order), 1), norms.mean(), norms.max()]).tolist()  # the epoch's one read
        logits = predict(self.model, self.data["val"])
        val = self.task.val
        val_loss = F.cross_entropy(logits, val.y).item() if len(val) else math.nan
        found = scores(val.y.numpy(), logits.argmax(1).numpy(), self.task.num_classes)
        record = {"train_loss": train_loss, "val_loss": val_loss, "grad_norm": grad_norm,
                  "grad_norm_max": grad_norm_max}
        record |= {f"val_{name}": found[name] for name in METRICS}
        if not (math.isfinite(train_loss) and math.isfinite(val_loss)):
            record["train_loss"] = math.nan
            self.result.status = f"diverged at epoch {self.epoch}"
        for key, value in record.items():
            self.result.history.setdefault(key, []).append(value)
        self.result.history.setdefault("epoch_seconds", []).append(time.perf_counter() - started)
        self.result.confusion = found["confusion"]
        self.result.logits["val"] = logits
        self.result.seconds += time.perf_counter() - started

    @property
    def diverged(self) -> bool:
        return self.result.status.startswith("diverged")

    def test(self) -> dict:
        logits = predict(self.model, self.data["test"])
        self.result.logits["test"] = logits
        found = scores(self.task.test.y.numpy(), logits.argmax(1).numpy(), self.task.num_classes)
        return {"loss": F.cross_entropy(logits, self.task.test.y).item(), **found, **per_class(found["confusion"])}


def resolve_device(device: str = "auto") -> torch.device:
    if device not in ("auto", "cpu", "cuda"):
        raise ValueError(f"device must be auto, cpu or cuda, got {device!r}")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda was asked for but no CUDA device is available (torch.cuda.is_available() is False)")
    return torch.device("cuda" if device == "auto" and torch.cuda.is_available() else device if device != "auto" else "cpu")


def train_seeds(spec: TrialSpec, task: Task, seeds: list[int], device: str | torch.device = "cpu",
                on_epoch: Callable[[int, list[SeedResult]], bool] | None = None,
                test: bool = False, keep_models: bool = False,
                should_stop: Callable[[], bool] = lambda: False) -> list[SeedResult]:
    """Train one model per seed in lockstep for spec.epochs epochs.

    After every epoch, on_epoch(epoch, results) may return True to stop all seeds (pruning).
    A non-finite loss stops the run at the end of its epoch; the results say "diverged at epoch N".
    With test=True (final evaluation only), each result gets its test-split metrics and logits.
    With keep_models=True, each result keeps its trained model (result.model, in eval mode).
    should_stop() is asked between batches; True raises KeyboardInterrupt (Ctrl-C, SIGTERM).
    """
    device = device if isinstance(device, torch.device) else resolve_device(device)
    splits = ("train", "val", "test") if test else ("train", "val")
    data = {name: DeviceSplit(getattr(task, name), device) for name in splits}  # one copy per call
    runs = [SeedRun(spec, task, seed, device, data) for seed in seeds]
    for epoch in range(1, spec.epochs + 1):
        for run in runs:
            run.train_epoch(should_stop)
        if any(run.diverged for run in runs):
            break
        if on_epoch is not None and on_epoch(epoch, [run.result for run in runs]):
            for run in runs:
                run.result.status = f"stopped at epoch {epoch}"
            break
    for run in runs:
        if run.result.status == "running":
            run.result.status = "finished"
        if test and not run.diverged:
            run.result.test = run.test()
        if keep_models:
            run.result.model = run.model.eval()
    return [run.result for run in runs]


def parameter_count(spec: ModelSpec, task: Task) -> int:
    return module_param_count(create_model(spec, task.input_size, task.num_classes, task.seq_len))
