"""The training loop as it was before the device-resident rewrite: a host read after every batch.

Kept as the yardstick that tests/test_train.py compares the current loop with (same results to 1e-5)
and that bench/throughput.py times it against (the current loop must not be slower).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from data import Task
from models import create_model
from search.train import TrialSpec, batches, epoch_order


def reference_history(spec: TrialSpec, task: Task, seed: int, device: str = "cpu") -> dict[str, list[float]]:
    """Train one seed as the old loop did: batches indexed on the CPU and copied, .item() after every step."""
    torch.manual_seed(seed)
    model = create_model(spec, task.input_size, task.num_classes, task.seq_len).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=spec.lr, weight_decay=spec.weight_decay)
    generator = torch.Generator().manual_seed(seed)
    history = {"train_loss": [], "grad_norm": [], "val_accuracy": []}
    for epoch in range(spec.epochs):
        torch.manual_seed(seed * 100_003 + epoch)
        model.train()
        losses, norms, count = 0.0, [], 0
        for index in batches(epoch_order(task.train, task.num_classes, False, generator), task.train.lengths,
                             spec.batch_size, generator):
            width = int(task.train.lengths[index].max())
            x, y = task.train.x[index, :width].to(device), task.train.y[index].to(device)
            loss = F.cross_entropy(model(x, task.train.lengths[index].to(device)), y)
            if not torch.isfinite(loss):
                break
            optimizer.zero_grad()
            loss.backward()
            norms.append(torch.nn.utils.clip_grad_norm_(model.parameters(), spec.clipnorm or math.inf).item())
            optimizer.step()
            losses += loss.item() * len(y)
            count += len(y)
        model.eval()
        with torch.no_grad():
            predicted = model(task.val.x.to(device), task.val.lengths.to(device)).argmax(1).cpu()
        history["train_loss"].append(losses / max(count, 1))
        history["grad_norm"].append(sum(norms) / max(len(norms), 1))
        history["val_accuracy"].append((predicted == task.val.y).float().mean().item())
    return history
