"""Training data on the device: each epoch's example order, its length-bucketed batches, batched prediction."""
from __future__ import annotations

from typing import Callable

import torch

from data import Split
from models.ngrams import cut, ngram_ids

BUCKET = 32  # batches sorted by length together, so short surnames are not padded to the longest


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
    """A split copied to the device once; lengths stay on the CPU too, so cutting a batch never waits.

    ngrams > 0 (a model with an n-gram part of that order): the split's n-gram ids are computed here, once,
    and each batch carries its rows as extra model inputs, so the model does not rehash every batch."""

    def __init__(self, split: Split, device: torch.device, ngrams: int = 0):
        self.cpu_lengths = split.lengths
        self.x, self.y, self.lengths = (t.to(device) for t in (split.x, split.y, split.lengths))
        self.grams = ngram_ids(self.x, self.lengths, ngrams) if ngrams and len(split) else None

    def take(self, index: torch.Tensor):
        """A batch (index: CPU tensor) cut to its longest sequence: x, y, lengths and the model's extra inputs
        (a tuple: the batch's n-gram ids and mask, or nothing). The model takes model(x, lengths, *extra)."""
        width = int(self.cpu_lengths[index].max())
        index = index.to(self.x.device, non_blocking=True)
        extra = cut(tuple(t[index] for t in self.grams), width) if self.grams is not None else ()
        return self.x[index, :width], self.y[index], self.lengths[index], extra


@torch.inference_mode()
def predict(model: torch.nn.Module, split: DeviceSplit, batch_size: int = 1024) -> torch.Tensor:
    """Logits (N, C) on the CPU, in the split's order."""
    model.eval()
    return predict_with(model, split, batch_size)


@torch.inference_mode()
def predict_with(forward: Callable[..., torch.Tensor], split: DeviceSplit,
                 batch_size: int = 1024, dim: int = 0) -> torch.Tensor:
    """forward(x, lengths, *extra) over the split in batches of similar lengths (less padding), its outputs put back
    in the split's order along `dim` (the examples' dimension), on the CPU as float32."""
    order = torch.argsort(split.cpu_lengths, stable=True)
    parts = []
    for index in order.split(batch_size):
        x, _, lengths, extra = split.take(index)
        parts.append(forward(x, lengths, *extra))
    logits = torch.cat(parts, dim)
    return logits.index_select(dim, torch.argsort(order.to(logits.device))).float().cpu()
