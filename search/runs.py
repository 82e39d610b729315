"""The one batch loop of an epoch (`Run`), and one seed's model trained alone (`SeedRun`)."""
from __future__ import annotations

import math
import time
from typing import Callable

import torch
import torch.nn.functional as F

from data import Task
from models import create_model

from .augment import augment
from .batching import DeviceSplit, batches, epoch_order, predict
from .metrics import METRICS, class_weights, log_prior, per_class, scores
from .trialspec import SeedResult, TrialSpec

TRAIN_TAU = 1.0  # imbalance=logit_adjust trains on logits + tau * log(prior) (Menon et al. 2021)


class Run:
    """K seeds of one spec trained epoch by epoch: the batch loop, written once for a seed alone (K = 1,
    SeedRun) and for seeds stacked into one computation (search/stacked.py).

    A subclass has `runs` (each seed's SeedRun: its generator, epoch and result), one `optimizer` over
    the K seeds' parameters, and says how a step's K batches are trained (`backward`: each seed's loss
    times its batch size), how the gradients are clipped (`clip`: each seed's norm before clipping) and how
    the K models predict a split (`predict_all`: (K, N, C) logits)."""

    spec: TrialSpec
    task: Task
    device: torch.device
    data: dict[str, DeviceSplit]
    optimizer: torch.optim.Optimizer
    runs: list[SeedRun]

    def train_mode(self) -> None:
        raise NotImplementedError

    def backward(self, indices: list[torch.Tensor]) -> torch.Tensor:
        raise NotImplementedError

    def clip(self) -> torch.Tensor:
        raise NotImplementedError

    def predict_all(self, split: DeviceSplit) -> torch.Tensor:
        raise NotImplementedError

    @property
    def results(self) -> list[SeedResult]:
        return [run.result for run in self.runs]

    def train_epoch(self, should_stop: Callable[[], bool]) -> None:
        started = time.perf_counter()
        spec, task, runs = self.spec, self.task, self.runs
        for group in self.optimizer.param_groups:
            group["lr"] = runs[0].learning_rate()  # every seed is at the same epoch
        torch.manual_seed(runs[0].seed * 100_003 + runs[0].epoch)  # dropout masks independent of other seeds
        self.train_mode()
        loss_sum = torch.zeros(len(runs), device=self.device)
        norms = []
        oversample = spec.imbalance == "oversample"
        streams = [batches(epoch_order(task.train, task.num_classes, oversample, run.generator),
                           self.data["train"].cpu_lengths, spec.batch_size, run.generator) for run in runs]
        for indices in zip(*streams):  # every seed has as many batches (same split, same batch size)
            if should_stop():
                raise KeyboardInterrupt  # Optuna marks the trial FAIL and keeps the finished ones
            self.optimizer.zero_grad(set_to_none=True)
            loss_sum += self.backward(indices)
            norms.append(self.clip())
            self.optimizer.step()
        norms = torch.stack(norms) if norms else torch.zeros(1, len(runs), device=self.device)
        rows = torch.stack([loss_sum / max(len(task.train), 1), norms.mean(0), norms.amax(0)]).tolist()  # one read
        logits = self.predict_all(self.data["val"])
        for k, run in enumerate(runs):
            run.epoch += 1
            run.end_epoch(rows[0][k], rows[1][k], rows[2][k], logits[k])
        seconds = (time.perf_counter() - started) / len(runs)  # the seeds' times add up to the epoch's
        for run in runs:
            run.result.history.setdefault("epoch_seconds", []).append(seconds)
            run.result.seconds += seconds


class SeedRun(Run):
    """One independent model: its seed fixes initialisation, data order and dropout masks."""

    def __init__(self, spec: TrialSpec, task: Task, seed: int, device: torch.device,
                 data: dict[str, DeviceSplit]):
        self.spec, self.task, self.seed, self.device, self.data = spec, task, seed, device, data
        torch.manual_seed(seed)
        self.model = create_model(spec, task.input_size, task.num_classes, task.seq_len).to(device)
        if hasattr(self.model, "fit_features"):  # fitted to the whole training split first (MiniRocket's)
            self.model.fit_features(data["train"].x, data["train"].lengths, data["train"].y)
        # fused: one kernel over all tensors, several times faster than the default on CPU (bench/README.md)
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=spec.lr, weight_decay=spec.weight_decay,
                                           fused=True)
        self.trainable = [p for p in self.model.parameters() if p.requires_grad]
        self.generator = torch.Generator().manual_seed(seed)
        self.weights = class_weights(task.train, task.num_classes).to(device) if spec.imbalance == "class_weights" else None
        # logit_adjust: the loss sees logits + tau * log(prior), so the logits themselves learn a balanced rule.
        self.shift = (TRAIN_TAU * log_prior(task.train, task.num_classes)).to(device) \
            if spec.imbalance == "logit_adjust" else None
        self.epoch = 0
        self.result = SeedResult(seed)

    @property
    def runs(self) -> list[SeedRun]:
        return [self]

    def learning_rate(self) -> float:
        if self.spec.schedule == "cosine":
            return self.spec.lr * 0.5 * (1 + math.cos(math.pi * self.epoch / self.spec.epochs))
        return self.spec.lr

    def train_mode(self) -> None:
        self.model.train()

    def backward(self, indices: list[torch.Tensor]) -> torch.Tensor:
        (index,) = indices
        x, y, lengths, extra = self.data["train"].take(index)
        x = augment(x, lengths, self.spec.augment)
        logits = self.model(x, lengths, *extra)
        loss = F.cross_entropy(logits if self.shift is None else logits + self.shift, y, weight=self.weights)
        loss.backward()
        return (loss.detach() * len(index)).reshape(1)

    def clip(self) -> torch.Tensor:
        # The pre-clipping norm is recorded either way; clipping rescales only when clipnorm > 0.
        norm = torch.nn.utils.get_total_norm([p.grad for p in self.trainable if p.grad is not None])
        if self.spec.clipnorm > 0:
            torch.nn.utils.clip_grads_with_norm_(self.trainable, self.spec.clipnorm, norm)
        return norm.reshape(1)

    def predict_all(self, split: DeviceSplit) -> torch.Tensor:
        return predict(self.model, split).unsqueeze(0)

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
