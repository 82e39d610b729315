"""Recurrent experiments of the review: gradient clipping against sequence length, and long-term memory.

Both use one synthetic many-to-one task, "remember the first symbol": step 0 holds one of K symbols
(one-hot), every later step holds Gaussian noise on a separate channel, and the label is the first
symbol. Only the first step matters, so the task measures how far back a model can carry information.
The models are the project's own (`models.create_model`); everything here returns plain data.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from models import ModelSpec, create_model

SYMBOLS = 4  # classes; chance accuracy 1 / SYMBOLS
WIDTH = 32  # hidden units of every recurrent model here
TEST_SIZE = 512


def first_symbol_batch(batch: int, length: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """x (batch, length, SYMBOLS + 1), y (batch,): the label is the symbol at step 0, the rest is noise."""
    y = torch.randint(0, SYMBOLS, (batch,), generator=generator)
    x = torch.zeros(batch, length, SYMBOLS + 1)
    x[:, 0, :SYMBOLS] = F.one_hot(y, SYMBOLS).float()
    x[:, 1:, SYMBOLS] = torch.randn(batch, length - 1, generator=generator)
    return x, y


def build(family: str, length: int, seed: int, recurrent_scale: float = 1.0, chrono: bool = False) -> torch.nn.Module:
    """The project's one-layer classifier; recurrent_scale multiplies the hidden-to-hidden weights.

    chrono=True sets the LSTM's forget-gate biases to log(U(1, length - 1)) and its input-gate biases to
    their negatives (Tallec & Ollivier 2018, "chrono initialisation"): at initialisation the cells then
    keep their content for about `length` steps instead of halving it every step (PyTorch's biases are ~0).
    """
    torch.manual_seed(seed)
    model = create_model(ModelSpec(family=family, layers=1, width=WIDTH), SYMBOLS + 1, SYMBOLS, length)
    with torch.no_grad():
        model.rnn.weight_hh_l0.mul_(recurrent_scale)
        if chrono:
            h = WIDTH  # PyTorch's LSTM gate order: input, forget, cell, output
            forget = torch.log(torch.empty(h).uniform_(1, max(length - 1, 2)))
            model.rnn.bias_ih_l0[h:2 * h] = forget
            model.rnn.bias_ih_l0[:h] = -forget
            model.rnn.bias_hh_l0[:2 * h] = 0.0
    return model


def spectral_radius(model: torch.nn.Module) -> float:
    """Largest |eigenvalue| of the (candidate-)state recurrence: W_hh for Elman, the cell block of an LSTM."""
    w = model.rnn.weight_hh_l0
    if w.shape[0] == 4 * WIDTH:
        w = w[2 * WIDTH:3 * WIDTH]
    return float(torch.linalg.eigvals(w.detach()).abs().max())


def grad_norm(model: torch.nn.Module) -> float:
    """Global L2 norm of the parameter gradient (what clip_grad_norm_ compares with its limit)."""
    return math.sqrt(sum(float((p.grad.double() ** 2).sum()) for p in model.parameters() if p.grad is not None))


def param_norm(model: torch.nn.Module) -> float:
    return math.sqrt(sum(float((p.detach().double() ** 2).sum()) for p in model.parameters()))


def init_gradient(family: str, length: int, seed: int, scale: float, batch: int) -> float:
    """Gradient norm of the cross-entropy on one batch at initialisation."""
    model = build(family, length, seed, scale)
    x, y = first_symbol_batch(batch, length, torch.Generator().manual_seed(seed))
    F.cross_entropy(model(x, torch.full((batch,), length)), y).backward()
    return grad_norm(model)


def clipped_training(family: str, length: int, seed: int, clipnorm: float, steps: int, lr: float,
                     batch: int, scale: float) -> dict:
    """SGD with momentum on fresh batches; records the gradient norm before clipping at every step.

    Diverged: a non-finite loss or gradient, or the parameters' norm above 10x its initial value.
    """
    model = build(family, length, seed, scale)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    generator = torch.Generator().manual_seed(1000 + seed)
    lengths = torch.full((batch,), length)
    start_norm = param_norm(model)
    norms, losses, diverged_at = [], [], None
    for step in range(steps):
        x, y = first_symbol_batch(batch, length, generator)
        loss = F.cross_entropy(model(x, lengths), y)
        optimizer.zero_grad()
        loss.backward()
        norms.append(grad_norm(model))
        losses.append(loss.item())
        if not (math.isfinite(losses[-1]) and math.isfinite(norms[-1])) or param_norm(model) > 10 * start_norm:
            diverged_at = step
            break
        if clipnorm:
            torch.nn.utils.clip_grad_norm_(model.parameters(), clipnorm)
        optimizer.step()
    return {"grad_norms": norms, "losses": losses, "diverged_at": diverged_at}


def clipping_experiment(lengths: list[int], train_lengths: list[int], seeds: list[int], scales: list[float],
                        train_scale: float, steps: int, lr: float, batch: int, clipnorm: float) -> dict:
    """Gradient norm at initialisation against length and recurrent scale; then training with and without clipping."""
    families = ["rnn", "lstm"]
    init = {family: {str(scale): {str(t): [init_gradient(family, t, seed, scale, batch) for seed in seeds]
                                  for t in lengths} for scale in scales} for family in families}
    radius = {family: {str(scale): spectral_radius(build(family, 10, 0, scale)) for scale in scales}
              for family in families}
    runs = {family: {str(clip): {str(t): [clipped_training(family, t, seed, clip, steps, lr, batch, train_scale)
                                          for seed in seeds] for t in train_lengths}
                     for clip in (0.0, clipnorm)} for family in families}
    return {"lengths": lengths, "train_lengths": train_lengths, "seeds": seeds, "scales": scales,
            "train_scale": train_scale, "steps": steps, "lr": lr, "batch": batch, "clipnorm": clipnorm,
            "init": init, "radius": radius, "runs": runs}


MEMORY_MODELS = {  # label -> (family, chrono initialisation)
    "Elman RNN": ("rnn", False),
    "GRU": ("gru", False),
    "LSTM": ("lstm", False),
    "LSTM, chrono init": ("lstm", True),
}


def first_step_gradient(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Mean over examples of |dLoss/dx_0|: how much of the error signal reaches the first time step."""
    x = x.clone().requires_grad_(True)
    F.cross_entropy(model(x, torch.full((len(x),), x.shape[1])), y, reduction="sum").backward()
    return float(x.grad[:, 0].norm(dim=1).mean())


def memory_run(family: str, chrono: bool, length: int, seed: int, steps: int, lr: float, batch: int,
               clipnorm: float) -> dict:
    """Adam on fresh batches; test accuracy on a fixed set, and the first-step gradient before and after."""
    model = build(family, length, seed, chrono=chrono)
    test_x, test_y = first_symbol_batch(TEST_SIZE, length, torch.Generator().manual_seed(10_000 + length))
    probe_x, probe_y = test_x[:64], test_y[:64]
    grad_before = first_step_gradient(model, probe_x, probe_y)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(1000 + seed)
    lengths = torch.full((batch,), length)
    for _ in range(steps):
        x, y = first_symbol_batch(batch, length, generator)
        loss = F.cross_entropy(model(x, lengths), y)
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), clipnorm)
        optimizer.step()
    model.zero_grad()
    grad_after = first_step_gradient(model, probe_x, probe_y)
    with torch.no_grad():
        accuracy = float((model(test_x, torch.full((TEST_SIZE,), length)).argmax(1) == test_y).float().mean())
    return {"accuracy": accuracy, "grad_first_init": grad_before, "grad_first_trained": grad_after}


def memory_experiment(lengths: list[int], seeds: list[int], steps: int, lr: float, batch: int,
                      clipnorm: float) -> dict:
    """Accuracy against length for every model of MEMORY_MODELS, over seeds."""
    results = {label: {str(t): [memory_run(family, chrono, t, seed, steps, lr, batch, clipnorm) for seed in seeds]
                       for t in lengths} for label, (family, chrono) in MEMORY_MODELS.items()}
    return {"lengths": lengths, "seeds": seeds, "steps": steps, "lr": lr, "batch": batch, "clipnorm": clipnorm,
            "symbols": SYMBOLS, "width": WIDTH, "test_size": TEST_SIZE, "results": results}
