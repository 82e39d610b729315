"""One training function for both tasks and every family: train K seeds, epoch by epoch.

Free of Optuna: the studies call `train_seeds` with an `on_epoch` callback that may stop it.
The data stays on the training device for the whole call, and nothing inside an epoch waits for
the device: losses and gradient norms accumulate there and are read once, at the epoch's end,
where divergence and pruning are decided.

Seeds train one model each (`SeedRun`), or, on CUDA by default, together as one computation
(`StackedRun`: torch.func.vmap over the seed dimension). Either way a seed's result is the same:
its own initialisation, data order, AdamW state, gradient clipping and batch-norm statistics
(tests/test_train.py compares the two to 1e-5). Models with a recurrent layer never stack.
"""
from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.utils.class_weight import compute_class_weight
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from data import Split, Task
from models import ModelSpec, create_model, module_param_count

from .augment import augment, check_strength

IMBALANCE = ("none", "class_weights", "oversample", "logit_adjust")
DECISIONS = ("argmax", "logit_adjust")
SCHEDULES = ("constant", "cosine")
# acc_bal_hmean: harmonic mean of accuracy and balanced accuracy, high only when both are (names default:
# maximising balanced accuracy alone chose models that gave up 20 points of accuracy for 1 of balance).
METRICS = ("accuracy", "balanced_accuracy", "macro_f1", "acc_bal_hmean")
STACK_MODES = ("auto", "on", "off")  # train_seeds(stack=...): auto stacks a trial's seeds on CUDA only
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
    augment: float = 0.0  # training batches only: random shift, scaling and jitter of this strength (search/augment.py)

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
        check_strength(self.augment)


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
    # With keep_models=True: the trained model (in eval mode); from a search.pool worker, its CPU state dict.
    model: torch.nn.Module | dict | None = field(default=None, repr=False, compare=False)

    @property
    def diverged(self) -> bool:
        return self.status.startswith("diverged")

    @property
    def final(self) -> dict[str, float]:
        return {key[4:]: values[-1] for key, values in self.history.items() if key.startswith("val_") and values}


def scores(y_true, y_pred, num_classes: int) -> dict:
    """accuracy, balanced accuracy, macro-F1 (over the classes present in y_true), the harmonic mean of
    accuracy and balanced accuracy, and the confusion matrix.

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
    accuracy = float(correct.sum() / max(len(y_true), 1))
    balanced = float(recall[present].mean()) if present.any() else math.nan
    return {
        "accuracy": accuracy,
        "balanced_accuracy": balanced,
        "macro_f1": float(f1[present].mean()) if present.any() else math.nan,
        "acc_bal_hmean": 2 * accuracy * balanced / (accuracy + balanced) if accuracy + balanced > 0 else 0.0,
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
            x = augment(x, lengths, spec.augment)
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
        self.end_epoch(train_loss, grad_norm, grad_norm_max, predict(self.model, self.data["val"]))
        self.result.history.setdefault("epoch_seconds", []).append(time.perf_counter() - started)
        self.result.seconds += time.perf_counter() - started

    def end_epoch(self, train_loss: float, grad_norm: float, grad_norm_max: float, logits: torch.Tensor) -> None:
        """Record an epoch trained (self.epoch already counts it): validation metrics from its logits, divergence."""
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
        self.result.confusion = found["confusion"]
        self.result.logits["val"] = logits

    @property
    def results(self) -> list[SeedResult]:
        return [self.result]

    def finish(self, test: bool, keep_models: bool) -> None:
        """After the last epoch: the final status, test metrics if asked (never for a diverged seed), the model."""
        if self.result.status == "running":
            self.result.status = "finished"
        if test and not self.result.diverged:
            self.result.test = self.test()
        if keep_models:
            self.result.model = self.model.eval()

    def test(self) -> dict:
        logits = predict(self.model, self.data["test"])
        self.result.logits["test"] = logits
        found = scores(self.task.test.y.numpy(), logits.argmax(1).numpy(), self.task.num_classes)
        return {"loss": F.cross_entropy(logits, self.task.test.y).item(), **found, **per_class(found["confusion"])}


def can_stack(model: nn.Module) -> bool:
    """Whether copies of this model can train as one vmapped computation: not with a recurrent layer
    (vmap has no rule for the cuDNN/aten rnn, lstm and gru ops, and their forward packs by length)."""
    return not any(isinstance(module, nn.RNNBase) for module in model.modules())


def counts_padding(model: nn.Module) -> bool:
    """Whether a batch's width (its longest sequence) changes the model's training step: batch norm's
    statistics count the zeroed padding steps. Every other layer masks padding (or pads to seq_len)."""
    return any(isinstance(module, nn.modules.batchnorm._BatchNorm) for module in model.modules())


class StackedRun:
    """K seeds of one spec trained as one computation: their parameters, buffers (batch-norm running
    statistics) and AdamW state live in (K, ...) tensors, and each step is one vmapped forward and backward.

    Each seed stays the model SeedRun trains alone (tests/test_train.py, to 1e-5):
    - initialisation and data order: each seed's SeedRun is built as usual (torch.manual_seed(seed), its own
      generator through epoch_order and batches), then the models are stacked;
    - a step's batches are gathered as (K, B, T, F), cut to the longest sequence among them (models mask the
      padding). Seeds whose batches differ in size (the epoch's one short batch lands at a different step for
      each seed) or, with batch norm, in width (its statistics count the padded steps) are vmapped in groups;
    - each seed's loss is its own batch's mean; the backward of their sum gives each seed its own gradient
      (a NaN in one seed's slice stays there), clipped by its own global norm (clip_grad_norm_'s formula);
    - AdamW over the stacked tensors is elementwise (weight decay too): one AdamW per seed;
    - batch norm updates each seed's running statistics in place, in its slice of the stacked buffers
      (torch.func supports in-place updates of batched buffers; 2.13 checked in tests);
    - dropout: vmap(randomness="different") draws every seed its own masks, but not the masks SeedRun draws
      from torch.manual_seed(seed * 100_003 + epoch): with dropout > 0 a stacked seed differs from the seed
      trained alone only by its masks (same distribution);
    - epoch_seconds of each seed is the stack's epoch time divided by K, so the seeds' times add up.
    """

    def __init__(self, spec: TrialSpec, task: Task, seeds: list[int], device: torch.device,
                 data: dict[str, DeviceSplit]):
        self.spec, self.task, self.device, self.data = spec, task, device, data
        self.runs = [SeedRun(spec, task, seed, device, data) for seed in seeds]  # init, generators, results
        self.params, self.buffers = stack_module_state([run.model for run in self.runs])
        self.base = copy.deepcopy(self.runs[0].model).to("meta")  # the structure; tensors come from the stack
        self.optimizer = torch.optim.AdamW(self.params.values(), lr=spec.lr, weight_decay=spec.weight_decay)
        self.by_width = counts_padding(self.base)
        self.weights, self.shift = self.runs[0].weights, self.runs[0].shift
        self.losses = vmap(self._loss, randomness="different")
        self.logits = vmap(self._logits, in_dims=(0, 0, None, None))

    @property
    def results(self) -> list[SeedResult]:
        return [run.result for run in self.runs]

    def _logits(self, params, buffers, x, lengths):
        return functional_call(self.base, (params, buffers), (x, lengths))

    def _loss(self, params, buffers, x, y, lengths):
        """One seed's loss on its batch, exactly as SeedRun computes it."""
        logits = self._logits(params, buffers, x, lengths)
        return F.cross_entropy(logits if self.shift is None else logits + self.shift, y, weight=self.weights)

    def groups(self, indices: list[torch.Tensor]) -> list[list[int]]:
        """Seeds whose batches stack: the same size, and with batch norm the same width."""
        found: dict[tuple[int, int], list[int]] = {}
        for k, index in enumerate(indices):
            width = int(self.data["train"].cpu_lengths[index].max()) if self.by_width else 0
            found.setdefault((len(index), width), []).append(k)
        return list(found.values())

    def step(self, seats: list[int], indices: list[torch.Tensor]) -> torch.Tensor:
        """Forward and backward of these seeds' batches (gradients accumulate into their slices); their losses."""
        x, y, lengths = self.data["train"].take(torch.stack([indices[k] for k in seats]))  # (k, B, ...)
        x = augment(x, lengths, self.spec.augment)  # outside vmap: its draws differ from the seeds' alone
        if len(seats) == len(indices):
            losses = self.losses(self.params, self.buffers, x, y, lengths)
        else:  # a subset: its slices, and its updated running statistics written back
            rows = torch.tensor(seats, device=self.device)
            buffers = {name: tensor[rows] for name, tensor in self.buffers.items()}
            losses = self.losses({name: p[rows] for name, p in self.params.items()}, buffers, x, y, lengths)
            with torch.no_grad():
                for name, tensor in buffers.items():
                    self.buffers[name][rows] = tensor
        losses.sum().backward()  # seed k's loss depends on seed k's slices only
        return losses.detach()

    def train_epoch(self, should_stop: Callable[[], bool]) -> None:
        started = time.perf_counter()
        spec, task, runs = self.spec, self.task, self.runs
        for group in self.optimizer.param_groups:
            group["lr"] = runs[0].learning_rate()  # every seed is at the same epoch
        torch.manual_seed(runs[0].seed * 100_003 + runs[0].epoch)  # the stack's dropout masks (see above)
        self.base.train()
        parameters = list(self.params.values())
        loss_sum = torch.zeros(len(runs), device=self.device)
        norms = []
        oversample = spec.imbalance == "oversample"
        streams = [batches(epoch_order(task.train, task.num_classes, oversample, run.generator),
                           self.data["train"].cpu_lengths, spec.batch_size, run.generator) for run in runs]
        for indices in zip(*streams):  # every seed has as many batches (same split, same batch size)
            if should_stop():
                raise KeyboardInterrupt
            self.optimizer.zero_grad(set_to_none=True)
            for seats in self.groups(indices):
                losses = self.step(seats, indices) * len(indices[seats[0]])  # a group's batches have one size
                if len(seats) == len(runs):
                    loss_sum += losses
                else:
                    loss_sum[seats] += losses
            grads = [p.grad for p in parameters if p.grad is not None]
            # Each seed's global L2 norm over its own slices, before clipping, as SeedRun records it.
            norm = torch.linalg.vector_norm(
                torch.stack([torch.linalg.vector_norm(g.flatten(1), dim=1) for g in grads]), dim=0)
            if spec.clipnorm > 0:
                coef = (spec.clipnorm / (norm + 1e-6)).clamp(max=1.0)  # clip_grads_with_norm_'s formula
                for g in grads:
                    g.mul_(coef.view(-1, *[1] * (g.dim() - 1)))
            self.optimizer.step()
            norms.append(norm)
        norms = torch.stack(norms) if norms else torch.zeros(1, len(runs), device=self.device)
        rows = torch.stack([loss_sum / max(len(task.train), 1), norms.mean(0), norms.amax(0)]).tolist()  # one read
        logits = self.predict(self.data["val"])
        seconds = (time.perf_counter() - started) / len(runs)
        for k, run in enumerate(runs):
            run.epoch += 1
            run.end_epoch(rows[0][k], rows[1][k], rows[2][k], logits[k])
            run.result.history.setdefault("epoch_seconds", []).append(seconds)
            run.result.seconds += seconds

    @torch.inference_mode()
    def predict(self, split: DeviceSplit, batch_size: int = 1024) -> torch.Tensor:
        """Every seed's logits (K, N, C) on the CPU, in the split's order (as predict() for one model)."""
        self.base.eval()
        order = torch.argsort(split.cpu_lengths, stable=True)
        parts = []
        for index in order.split(batch_size):
            x, _, lengths = split.take(index)
            parts.append(self.logits(self.params, self.buffers, x, lengths))
        logits = torch.cat(parts, 1)
        return logits[:, torch.argsort(order.to(logits.device))].float().cpu()

    def finish(self, test: bool, keep_models: bool) -> None:
        """Copy each seed's slices back into its own model, then finish it as a SeedRun."""
        with torch.no_grad():
            for k, run in enumerate(self.runs):
                for name, tensor in [*run.model.named_parameters(), *run.model.named_buffers()]:
                    tensor.copy_((self.params if name in self.params else self.buffers)[name][k])
        for run in self.runs:
            run.finish(test, keep_models)


def resolve_device(device: str = "auto") -> torch.device:
    if device not in ("auto", "cpu", "cuda"):
        raise ValueError(f"device must be auto, cpu or cuda, got {device!r}")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda was asked for but no CUDA device is available (torch.cuda.is_available() is False)")
    return torch.device("cuda" if device == "auto" and torch.cuda.is_available() else device if device != "auto" else "cpu")


def stacks(spec: TrialSpec, task: Task, seeds: int, device: str | torch.device, stack: str = "auto") -> bool:
    """Whether train_seeds trains these seeds as one StackedRun.

    off: never. on: whenever there are 2+ seeds and the model can stack (tests, benchmarks). auto (the
    default): the same, on CUDA only; on CPU the per-seed loop stays (stacking gained there only for the
    smallest models, bench/README.md).
    """
    if stack not in STACK_MODES:
        raise ValueError(f"stack must be one of {list(STACK_MODES)}, got {stack!r}")
    device = device if isinstance(device, torch.device) else resolve_device(device)
    if stack == "off" or seeds < 2 or (stack == "auto" and device.type != "cuda"):
        return False
    with torch.device("meta"):  # the modules only, no weights
        return can_stack(create_model(spec, task.input_size, task.num_classes, task.seq_len))


def train_seeds(spec: TrialSpec, task: Task, seeds: list[int], device: str | torch.device = "cpu",
                on_epoch: Callable[[int, list[SeedResult]], bool] | None = None,
                test: bool = False, keep_models: bool = False,
                should_stop: Callable[[], bool] = lambda: False, stack: str = "auto") -> list[SeedResult]:
    """Train one model per seed in lockstep for spec.epochs epochs.

    After every epoch, on_epoch(epoch, results) may return True to stop all seeds (pruning).
    A non-finite loss stops the run at the end of its epoch; the results say "diverged at epoch N".
    With test=True (final evaluation only), each result gets its test-split metrics and logits.
    With keep_models=True, each result keeps its trained model (result.model, in eval mode).
    should_stop() is asked between batches; True raises KeyboardInterrupt (Ctrl-C, SIGTERM).
    stack: whether the seeds train as one computation (see `stacks`); each seed's result is the same.
    """
    device = device if isinstance(device, torch.device) else resolve_device(device)
    splits = ("train", "val", "test") if test else ("train", "val")
    data = {name: DeviceSplit(getattr(task, name), device) for name in splits}  # one copy per call
    if stacks(spec, task, len(seeds), device, stack):
        runs = [StackedRun(spec, task, seeds, device, data)]
    else:
        runs = [SeedRun(spec, task, seed, device, data) for seed in seeds]
    results = [result for run in runs for result in run.results]
    for epoch in range(1, spec.epochs + 1):
        for run in runs:
            run.train_epoch(should_stop)
        if any(result.diverged for result in results):
            break
        if on_epoch is not None and on_epoch(epoch, results):
            for result in results:
                result.status = f"stopped at epoch {epoch}"
            break
    for run in runs:
        run.finish(test, keep_models)
    return results


def parameter_count(spec: ModelSpec, task: Task) -> int:
    return module_param_count(create_model(spec, task.input_size, task.num_classes, task.seq_len))
