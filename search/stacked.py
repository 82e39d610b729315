"""Seeds of one spec trained as one computation (`StackedRun`: torch.func.vmap over the seed dimension)."""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from data import Task

from .augment import augment
from .batching import DeviceSplit, predict_with
from .runs import Run, SeedRun
from .trialspec import TrialSpec


def can_stack(model: nn.Module) -> bool:
    """Whether copies of this model can train as one vmapped computation: not with a recurrent layer
    (vmap has no rule for the cuDNN/aten rnn, lstm and gru ops, and their forward packs by length)."""
    return not any(isinstance(module, nn.RNNBase) for module in model.modules())


def counts_padding(model: nn.Module) -> bool:
    """Whether a batch's width (its longest sequence) changes the model's training step: batch norm's
    statistics count the zeroed padding steps. Every other layer masks padding (or pads to seq_len)."""
    return any(isinstance(module, nn.modules.batchnorm._BatchNorm) for module in model.modules())


class StackedRun(Run):
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
        self.optimizer = torch.optim.AdamW(self.params.values(), lr=spec.lr, weight_decay=spec.weight_decay,
                                           fused=True)  # as SeedRun's
        self.by_width = counts_padding(self.base)
        self.weights, self.shift = self.runs[0].weights, self.runs[0].shift
        self.losses = vmap(self._loss, randomness="different")

    def _logits(self, params, buffers, x, lengths, *extra):
        return functional_call(self.base, (params, buffers), (x, lengths, *extra))

    def logits(self, params, buffers, x, lengths, *extra):
        """Every seed's logits on one batch that all seeds share (x, lengths and extra not stacked)."""
        return vmap(self._logits, in_dims=(0, 0, *[None] * (2 + len(extra))))(params, buffers, x, lengths, *extra)

    def _loss(self, params, buffers, x, y, lengths, *extra):
        """One seed's loss on its batch, exactly as SeedRun computes it."""
        logits = self._logits(params, buffers, x, lengths, *extra)
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
        x, y, lengths, extra = self.data["train"].take(torch.stack([indices[k] for k in seats]))  # (k, B, ...)
        x = augment(x, lengths, self.spec.augment)  # outside vmap: its draws differ from the seeds' alone
        if len(seats) == len(indices):
            losses = self.losses(self.params, self.buffers, x, y, lengths, *extra)
        else:  # a subset: its slices, and its updated running statistics written back
            rows = torch.tensor(seats, device=self.device)
            buffers = {name: tensor[rows] for name, tensor in self.buffers.items()}
            losses = self.losses({name: p[rows] for name, p in self.params.items()}, buffers, x, y, lengths, *extra)
            with torch.no_grad():
                for name, tensor in buffers.items():
                    self.buffers[name][rows] = tensor
        losses.sum().backward()  # seed k's loss depends on seed k's slices only
        return losses.detach()

    def train_mode(self) -> None:
        self.base.train()

    def backward(self, indices: list[torch.Tensor]) -> torch.Tensor:
        """Each seed's batch loss times its batch size, the seeds vmapped in groups that stack."""
        losses = torch.zeros(len(indices), device=self.device)
        for seats in self.groups(indices):
            found = self.step(seats, indices) * len(indices[seats[0]])  # a group's batches have one size
            if len(seats) == len(indices):
                losses += found
            else:
                losses[seats] += found
        return losses

    def clip(self) -> torch.Tensor:
        grads = [p.grad for p in self.params.values() if p.grad is not None]
        # Each seed's global L2 norm over its own slices, before clipping, as SeedRun records it.
        norm = torch.linalg.vector_norm(
            torch.stack([torch.linalg.vector_norm(g.flatten(1), dim=1) for g in grads]), dim=0)
        if self.spec.clipnorm > 0:
            coef = (self.spec.clipnorm / (norm + 1e-6)).clamp(max=1.0)  # clip_grads_with_norm_'s formula
            for g in grads:
                g.mul_(coef.view(-1, *[1] * (g.dim() - 1)))
        return norm

    def predict_all(self, split: DeviceSplit, batch_size: int = 1024) -> torch.Tensor:
        """Every seed's logits (K, N, C) on the CPU, in the split's order (as predict() for one model)."""
        self.base.eval()
        return predict_with(lambda *inputs: self.logits(self.params, self.buffers, *inputs), split,
                            batch_size, dim=1)

    def finish(self, test: bool, keep_models: bool) -> None:
        """Copy each seed's slices back into its own model, then finish it as a SeedRun."""
        with torch.no_grad():
            for k, run in enumerate(self.runs):
                for name, tensor in [*run.model.named_parameters(), *run.model.named_buffers()]:
                    tensor.copy_((self.params if name in self.params else self.buffers)[name][k])
        for run in self.runs:
            run.finish(test, keep_models)
