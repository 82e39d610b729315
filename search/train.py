"""One training function for both tasks and every family: train K seeds, epoch by epoch.

Free of Optuna: the studies call `train_seeds` with an `on_epoch` callback that may stop it.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F

from data import Split, Task
from models import ModelSpec, create_model, module_param_count

IMBALANCE = ("none", "class_weights", "oversample")
SCHEDULES = ("constant", "cosine")
BUCKET = 32  # batches sorted by length together, so short surnames are not padded to the longest


@dataclass(frozen=True)
class TrainSpec:
    lr: float = 1e-3
    batch_size: int = 64
    epochs: int = 10
    clipnorm: float = 0.0  # 0: no clipping; else the max global L2 norm of the gradient
    imbalance: str = "none"
    weight_decay: float = 0.0
    schedule: str = "constant"

    def __post_init__(self):
        for name, minimum in (("batch_size", 1), ("epochs", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
        if not isinstance(self.lr, (int, float)) or not self.lr > 0:
            raise ValueError(f"lr must be a float > 0, got {self.lr!r}")
        for name in ("clipnorm", "weight_decay"):
            if not isinstance(getattr(self, name), (int, float)) or getattr(self, name) < 0:
                raise ValueError(f"{name} must be a float >= 0, got {getattr(self, name)!r}")
        if self.imbalance not in IMBALANCE:
            raise ValueError(f"imbalance must be one of {list(IMBALANCE)}, got {self.imbalance!r}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {list(SCHEDULES)}, got {self.schedule!r}")


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
    model: torch.nn.Module | None = field(default=None, repr=False, compare=False)  # with keep_models=True

    @property
    def final(self) -> dict[str, float]:
        return {key[4:]: values[-1] for key, values in self.history.items() if key.startswith("val_") and values}


def metrics(confusion: torch.Tensor) -> dict[str, float]:
    """accuracy, balanced accuracy (mean recall over classes present) and macro-F1 from a confusion matrix."""
    confusion = confusion.double()
    support, predicted, correct = confusion.sum(1), confusion.sum(0), confusion.diag()
    present = support > 0
    recall = correct / support.clamp(min=1)
    precision = correct / predicted.clamp(min=1)
    f1 = torch.where(precision + recall > 0, 2 * precision * recall / (precision + recall), torch.zeros_like(recall))
    return {
        "accuracy": (correct.sum() / confusion.sum().clamp(min=1)).item(),
        "balanced_accuracy": recall[present].mean().item(),
        "macro_f1": f1[present].mean().item(),
    }


def per_class(confusion: torch.Tensor) -> dict[str, list[float]]:
    confusion = confusion.double()
    recall = confusion.diag() / confusion.sum(1).clamp(min=1)
    precision = confusion.diag() / confusion.sum(0).clamp(min=1)
    f1 = torch.where(precision + recall > 0, 2 * precision * recall / (precision + recall), torch.zeros_like(recall))
    return {"recall": recall.tolist(), "precision": precision.tolist(), "f1": f1.tolist()}


def class_weights(split: Split, num_classes: int) -> torch.Tensor:
    """Inverse class frequency of the training split, normalised so a balanced set gets weight 1."""
    counts = torch.bincount(split.y, minlength=num_classes).float().clamp(min=1)
    return counts.sum() / (num_classes * counts)


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


def take(split: Split, index: torch.Tensor, device: torch.device):
    """A batch cut to its longest sequence."""
    lengths = split.lengths[index]
    width = int(lengths.max())
    return split.x[index, :width].to(device), split.y[index].to(device), lengths.to(device)


@torch.inference_mode()
def evaluate(model: torch.nn.Module, split: Split, num_classes: int, device: torch.device,
             batch_size: int = 1024) -> tuple[float, torch.Tensor]:
    """Mean cross-entropy and confusion matrix (rows: true class, columns: predicted)."""
    model.eval()
    confusion = torch.zeros(num_classes, num_classes, dtype=torch.long)
    total = 0.0
    order = torch.argsort(split.lengths, stable=True)
    for index in order.split(batch_size):
        x, y, lengths = take(split, index, device)
        logits = model(x, lengths)
        total += F.cross_entropy(logits, y, reduction="sum").item()
        confusion += torch.bincount(y.cpu() * num_classes + logits.argmax(1).cpu(),
                                    minlength=num_classes * num_classes).view(num_classes, num_classes)
    return total / max(len(split), 1), confusion


class SeedRun:
    """One independent model: its seed fixes initialisation, data order and dropout masks."""

    def __init__(self, spec: TrialSpec, task: Task, seed: int, device: torch.device):
        self.spec, self.task, self.seed, self.device = spec, task, seed, device
        torch.manual_seed(seed)
        self.model = create_model(spec, task.input_size, task.num_classes, task.seq_len).to(device)
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=spec.lr, weight_decay=spec.weight_decay)
        self.generator = torch.Generator().manual_seed(seed)
        self.weights = class_weights(task.train, task.num_classes).to(device) if spec.imbalance == "class_weights" else None
        self.epoch = 0
        self.result = SeedResult(seed)

    def learning_rate(self) -> float:
        if self.spec.schedule == "cosine":
            return self.spec.lr * 0.5 * (1 + math.cos(math.pi * self.epoch / self.spec.epochs))
        return self.spec.lr

    def train_epoch(self) -> None:
        started = time.perf_counter()
        spec, train = self.spec, self.task.train
        for group in self.optimizer.param_groups:
            group["lr"] = self.learning_rate()
        torch.manual_seed(self.seed * 100_003 + self.epoch)  # dropout masks independent of other seeds
        self.model.train()
        loss_sum, norms, count = 0.0, [], 0
        order = epoch_order(train, self.task.num_classes, spec.imbalance == "oversample", self.generator)
        for index in batches(order, train.lengths, spec.batch_size, self.generator):
            x, y, lengths = take(train, index, self.device)
            loss = F.cross_entropy(self.model(x, lengths), y, weight=self.weights)
            if not torch.isfinite(loss):
                self.result.status = f"diverged at epoch {self.epoch + 1}"
                break
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            # The pre-clipping norm is recorded either way; clipping rescales only when clipnorm > 0.
            norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), spec.clipnorm or math.inf)
            self.optimizer.step()
            loss_sum += loss.item() * len(y)
            count += len(y)
            norms.append(norm.item())
        history = self.result.history
        self.epoch += 1
        val_loss, confusion = evaluate(self.model, self.task.val, self.task.num_classes, self.device)
        record = {"train_loss": loss_sum / max(count, 1), "val_loss": val_loss,
                  "grad_norm": sum(norms) / max(len(norms), 1), "grad_norm_max": max(norms, default=0.0)}
        record |= {f"val_{name}": value for name, value in metrics(confusion).items()}
        if self.diverged or not math.isfinite(val_loss):
            record["train_loss"] = math.nan
            self.result.status = self.result.status if self.diverged else f"diverged at epoch {self.epoch}"
        for key, value in record.items():
            history.setdefault(key, []).append(value)
        history.setdefault("epoch_seconds", []).append(time.perf_counter() - started)
        self.result.confusion = confusion.tolist()
        self.result.seconds += time.perf_counter() - started

    @property
    def diverged(self) -> bool:
        return self.result.status.startswith("diverged")

    def test(self) -> dict:
        loss, confusion = evaluate(self.model, self.task.test, self.task.num_classes, self.device)
        return {"loss": loss, **metrics(confusion), **per_class(confusion), "confusion": confusion.tolist()}


def resolve_device(device: str = "auto") -> torch.device:
    if device not in ("auto", "cpu", "cuda"):
        raise ValueError(f"device must be auto, cpu or cuda, got {device!r}")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device cuda was asked for but torch.cuda.is_available() is False")
    return torch.device("cuda" if device == "auto" and torch.cuda.is_available() else device if device != "auto" else "cpu")


def train_seeds(spec: TrialSpec, task: Task, seeds: list[int], device: str | torch.device = "cpu",
                on_epoch: Callable[[int, list[SeedResult]], bool] | None = None,
                test: bool = False, stack: str = "auto", keep_models: bool = False) -> list[SeedResult]:
    """Train one model per seed in lockstep for spec.epochs epochs.

    After every epoch, on_epoch(epoch, results) may return True to stop all seeds (pruning).
    A non-finite loss stops the run; the results say "diverged at epoch N".
    With test=True (final evaluation only), each result gets its test-split metrics.
    With keep_models=True, each result keeps its trained model (result.model, in eval mode).
    stack: auto|on|off, whether the seeds train as one vmapped computation (search/stacked.py).
    """
    device = device if isinstance(device, torch.device) else resolve_device(device)
    from .stacked import train_stacked, use_stacked  # stacked.py builds on this module
    if use_stacked(spec, device, len(seeds), stack) and not keep_models:
        return train_stacked(spec, task, seeds, device, on_epoch, test)
    runs = [SeedRun(spec, task, seed, device) for seed in seeds]
    for epoch in range(1, spec.epochs + 1):
        for run in runs:
            run.train_epoch()
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
