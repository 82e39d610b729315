"""Seed stacking: K seed models of one spec trained as one computation (torch.func.vmap).

Each seed stays the model that `SeedRun` trains alone:
- initialisation: every seed is built by SeedRun (torch.manual_seed(seed), create_model), then stacked;
- data order: its own torch.Generator(seed) through the same epoch_order/batches; the one short batch
  of an epoch lands at a different step for each seed, so smaller batches are padded with masked rows,
  and a step's batches are cut to the longest sequence among all seeds (the stackable families give
  each sequence the same logits whatever the padding);
- gradient clipping: its own global L2 norm over its own slices, clip_grad_norm_'s formula
  (coef = clipnorm / (norm + 1e-6), at most 1); the pre-clipping norm goes into its history;
- optimiser: AdamW over the stacked tensors is elementwise (weight decay too), so it is one AdamW per seed;
- dropout: each seed's masks come from its own generator, seeded as SeedRun seeds the global one each
  epoch and drawn in the order and shapes its forward draws them (dropout_shapes), so on CPU they are
  the very masks of the seed trained alone. (On CUDA the sequential path uses the fused CUDA dropout
  kernel and generator: there a stacked seed's masks differ from those, same distribution.)
- learning-rate schedule, divergence, history keys, confusion, status and test metrics: as train_seeds.
So a stacked seed agrees with the seed trained alone to float rounding (tests/test_stacked.py).

Recurrent families are never stacked: vmap has no batching rule for aten::rnn_tanh, aten::gru or
aten::lstm (and their forward branches on the lengths). Nor are models with batch norm: its running
statistics are updated in place, which vmap cannot batch. epoch_seconds of a stacked seed is the
stack's epoch time divided by K, so the seeds' times still add up to the wall time.
"""
from __future__ import annotations

import copy
import math
import time
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from data import Split, Task
from .train import SeedResult, SeedRun, TrialSpec, batches, epoch_order, metrics

STACKABLE = ("dense", "linear", "conv1d")
STACK_MODES = ("auto", "on", "off")
# On CPU a stack gains where per-op overhead dominates: bench/throughput.py section 2 (K=3, 1 thread,
# HAR and names) measured 1.09-1.25x for dense up to width 64 and conv1d at width 16, 1.05-1.64x for
# linear, and 0.85-1.11x for dense 256 and 0.89-1.00x for conv1d 64-256.
CPU_STACK_MAX_WIDTH = {"dense": 64, "conv1d": 16, "linear": math.inf}  # linear has no width


def use_stacked(spec: TrialSpec, device: str | torch.device, seeds: int, stack: str = "auto") -> bool:
    """Whether train_seeds should train these seeds as one stack.

    off: never. on: whenever the family can be stacked and there are 2+ seeds. auto: on a GPU for any
    stackable family; on CPU up to the widths where bench/throughput.py measured a gain.
    """
    if stack not in STACK_MODES:
        raise ValueError(f"stack must be one of {list(STACK_MODES)}, got {stack!r}")
    # Batch norm updates its running statistics in place, which vmap cannot batch.
    if stack == "off" or seeds < 2 or spec.family not in STACKABLE or spec.norm:
        return False
    if stack == "on" or torch.device(device).type == "cuda":
        return True
    return spec.width <= CPU_STACK_MAX_WIDTH[spec.family]


def dropout_shapes(spec: TrialSpec, rows: int, steps: int) -> list[tuple[int, ...]]:
    """The shapes of the model's dropout calls, in forward order, for a batch of rows x steps."""
    if spec.family == "dense":
        return [(rows, spec.width)] * spec.layers
    if spec.family == "conv1d":
        shapes = []
        for _ in range(spec.layers):
            shapes.append((rows, spec.width, steps))
            if spec.pool > 1 and steps > 1:
                steps = math.ceil(steps / spec.pool)
        return shapes
    return []  # linear has no dropout


class GivenDropout(nn.Module):
    """Dropout that multiplies by the next mask on a shared tape: the stack lays each seed's own draws there."""

    def __init__(self, tape: list):
        super().__init__()
        self.tape = tape  # scaled masks in call order, for this forward

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return x
        if not self.tape:
            raise RuntimeError("the model calls dropout more often than dropout_shapes says")
        return x * self.tape.pop(0)


class StackedRun:
    """K SeedRuns whose parameters live in stacked (K, ...) tensors and train in one vmapped step."""

    def __init__(self, spec: TrialSpec, task: Task, seeds: list[int], device: torch.device):
        if spec.family not in STACKABLE:
            raise ValueError(f"family must be one of {list(STACKABLE)} to be stacked, got {spec.family!r}")
        self.spec, self.task, self.device = spec, task, device
        self.runs = [SeedRun(spec, task, seed, device) for seed in seeds]  # initialisation and generators
        self.params, self.buffers = stack_module_state([run.model for run in self.runs])
        self.base = copy.deepcopy(self.runs[0].model)  # the structure; weights come from the stack
        self.tape: list[torch.Tensor] = []
        if spec.dropout > 0:  # nn.Dropout(0) draws nothing: it stays
            for name in [name for name, m in self.base.named_modules() if isinstance(m, nn.Dropout)]:
                parent, _, child = name.rpartition(".")
                setattr(self.base.get_submodule(parent), child, GivenDropout(self.tape))
        self.base.to("meta")
        self.dropout_generators: list[torch.Generator] = []
        self.optimizer = torch.optim.AdamW(self.params.values(), lr=spec.lr, weight_decay=spec.weight_decay)
        self.weights = self.runs[0].weights
        self.losses = vmap(self._loss, randomness="error")  # every random draw happens outside, per seed
        self.logits = vmap(self._logits, in_dims=(0, 0, None, None))

    def _logits(self, params, buffers, x, lengths):
        return functional_call(self.base, (params, buffers), (x, lengths))

    def _loss(self, params, buffers, masks, x, y, lengths, mask):
        """This seed's mean cross-entropy over its real rows, as F.cross_entropy(weight=...) means it."""
        self.tape[:] = masks
        logits = self._logits(params, buffers, x, lengths)
        if self.tape:
            raise RuntimeError("the model calls dropout less often than dropout_shapes says")
        per_row = F.cross_entropy(logits, y, weight=self.weights, reduction="none")
        row_weight = mask if self.weights is None else mask * self.weights[y]
        return (per_row * mask).sum() / row_weight.sum()

    def _batch(self, split: Split, indices: list[torch.Tensor]):
        """The seeds' batches as (K, B, T, F): short ones padded with their own first row, masked out."""
        size = max(len(index) for index in indices)
        rows = torch.stack([torch.cat([index, index[:1].expand(size - len(index))]) for index in indices])
        mask = torch.stack([torch.arange(size) < len(index) for index in indices]).float()
        lengths = split.lengths[rows]
        width = int(lengths.max())
        return (split.x[rows, :width].to(self.device), split.y[rows].to(self.device),
                lengths.to(self.device), mask.to(self.device))

    def _dropout_masks(self, split: Split, indices: list[torch.Tensor], steps: int) -> list[torch.Tensor]:
        """Each seed's masks for this step, drawn as its forward alone would draw them, zero-padded to the stack."""
        if self.spec.dropout == 0:
            return []
        keep = 1 - self.spec.dropout
        padded = dropout_shapes(self.spec, max(len(index) for index in indices), steps)
        masks = [torch.zeros(len(indices), *shape) for shape in padded]
        for k, (index, generator) in enumerate(zip(indices, self.dropout_generators)):
            own = dropout_shapes(self.spec, len(index), int(split.lengths[index].max()))
            for mask, shape in zip(masks, own):
                draw = torch.empty(shape).bernoulli_(keep, generator=generator).div_(keep)  # as F.dropout on CPU
                mask[k][tuple(slice(0, n) for n in shape)] = draw
        return [mask.to(self.device) for mask in masks]

    def train_epoch(self) -> None:
        started = time.perf_counter()
        runs, spec, train = self.runs, self.spec, self.task.train
        for group in self.optimizer.param_groups:
            group["lr"] = runs[0].learning_rate()  # every seed is at the same epoch
        # SeedRun seeds the global generator with this at each epoch; its dropout draws come from it.
        self.dropout_generators = [torch.Generator().manual_seed(run.seed * 100_003 + run.epoch) for run in runs]
        self.base.train()
        oversample = spec.imbalance == "oversample"
        streams = [batches(epoch_order(train, self.task.num_classes, oversample, run.generator),
                           train.lengths, spec.batch_size, run.generator) for run in runs]
        alive = list(range(len(runs)))
        frozen: dict[int, dict[str, torch.Tensor]] = {}  # a diverged seed's weights when it stopped
        loss_sums, counts, norms = [0.0] * len(runs), [0] * len(runs), [[] for _ in runs]
        for indices in zip(*streams):
            x, y, lengths, mask = self._batch(train, indices)
            masks = self._dropout_masks(train, indices, x.shape[2])  # x: (K, B, T, F)
            losses = self.losses(self.params, self.buffers, masks, x, y, lengths, mask)
            values = losses.tolist()
            for k in list(alive):
                if not math.isfinite(values[k]):  # this seed stops here, as SeedRun does; the others go on
                    runs[k].result.status = f"diverged at epoch {runs[k].epoch + 1}"
                    frozen[k] = {name: p[k].detach().clone() for name, p in self.params.items()}
                    alive.remove(k)
            if not alive:
                break
            self.optimizer.zero_grad(set_to_none=True)
            losses[alive].sum().backward()  # seed k's gradient comes from seed k's loss only
            grads = [p.grad for p in self.params.values() if p.grad is not None]
            seed_norms = torch.stack([g.flatten(1).norm(dim=1) for g in grads]).norm(dim=0)
            if spec.clipnorm > 0:
                coef = (spec.clipnorm / (seed_norms + 1e-6)).clamp(max=1.0)
                for g in grads:
                    g.mul_(coef.view(-1, *[1] * (g.dim() - 1)))
            self.optimizer.step()
            seed_norms = seed_norms.tolist()
            for k in alive:
                loss_sums[k] += values[k] * len(indices[k])
                counts[k] += len(indices[k])
                norms[k].append(seed_norms[k])
        with torch.no_grad():
            for k, weights in frozen.items():
                for name, p in self.params.items():
                    p[k].copy_(weights[name])
        val_losses, confusions = self.evaluate(self.task.val)
        seconds = (time.perf_counter() - started) / len(runs)
        for k, run in enumerate(runs):
            run.epoch += 1
            record = {"train_loss": loss_sums[k] / max(counts[k], 1), "val_loss": val_losses[k],
                      "grad_norm": sum(norms[k]) / max(len(norms[k]), 1), "grad_norm_max": max(norms[k], default=0.0)}
            record |= {f"val_{name}": value for name, value in metrics(confusions[k]).items()}
            if run.diverged or not math.isfinite(val_losses[k]):
                record["train_loss"] = math.nan
                run.result.status = run.result.status if run.diverged else f"diverged at epoch {run.epoch}"
            for key, value in record.items():
                run.result.history.setdefault(key, []).append(value)
            run.result.history.setdefault("epoch_seconds", []).append(seconds)
            run.result.confusion = confusions[k].tolist()
            run.result.seconds += seconds

    @torch.inference_mode()
    def evaluate(self, split: Split, batch_size: int = 1024) -> tuple[list[float], torch.Tensor]:
        """Every seed's mean cross-entropy and confusion matrix on one split, as train.evaluate computes them."""
        self.base.eval()
        seeds, classes = len(self.runs), self.task.num_classes
        confusion = torch.zeros(seeds * classes * classes, dtype=torch.long)
        totals = [0.0] * seeds
        offsets = torch.arange(seeds)[:, None] * classes * classes
        for index in torch.argsort(split.lengths, stable=True).split(batch_size):
            lengths = split.lengths[index]
            x, y = split.x[index, :int(lengths.max())].to(self.device), split.y[index].to(self.device)
            logits = self.logits(self.params, self.buffers, x, lengths.to(self.device))  # (K, B, C)
            sums = F.cross_entropy(logits.transpose(1, 2), y.expand(seeds, -1), reduction="none").sum(1)
            totals = [total + value for total, value in zip(totals, sums.tolist())]
            cells = offsets + y.cpu() * classes + logits.argmax(2).cpu()
            confusion += torch.bincount(cells.flatten(), minlength=seeds * classes * classes)
        return [total / max(len(split), 1) for total in totals], confusion.view(seeds, classes, classes)

    def unstack(self) -> None:
        """Copy each seed's slice back into its own model (for SeedRun.test and for inspection)."""
        with torch.no_grad():
            for k, run in enumerate(self.runs):
                for name, tensor in list(run.model.named_parameters()) + list(run.model.named_buffers()):
                    tensor.copy_((self.params if name in self.params else self.buffers)[name][k])


def train_stacked(spec: TrialSpec, task: Task, seeds: list[int], device: torch.device,
                  on_epoch: Callable[[int, list[SeedResult]], bool] | None = None,
                  test: bool = False) -> list[SeedResult]:
    """train_seeds for a stack: same loop, same stopping rules, same results."""
    stack = StackedRun(spec, task, seeds, device)
    runs = stack.runs
    for epoch in range(1, spec.epochs + 1):
        stack.train_epoch()
        if any(run.diverged for run in runs):
            break
        if on_epoch is not None and on_epoch(epoch, [run.result for run in runs]):
            for run in runs:
                run.result.status = f"stopped at epoch {epoch}"
            break
    stack.unstack()
    for run in runs:
        if run.result.status == "running":
            run.result.status = "finished"
        if test and not run.diverged:
            run.result.test = run.test()
    return [run.result for run in runs]
