"""Augmentation of training windows: a random shift, scaling and jitter of each sequence in a batch.

search/train.py applies it to the batches it trains on (TrialSpec.augment > 0), never to the
validation or test splits, which are predicted as they are. One strength s sets all three:
- shift: each sequence is rolled by a whole number of steps drawn from [-s * length, s * length],
  within its real steps (a window of periodic signals stays a plausible window);
- scaling: each channel of each sequence is multiplied by 1 + s * N(0, 1) (sensor gain);
- jitter: N(0, (s / 2)^2) noise is added to every real step (sensor noise; channels are standardised).
Padding stays zero. The random numbers come from torch's generator, which the training loop seeds.
Every function takes x (..., B, T, F) and lengths (..., B): leading dimensions (stacked seeds) are kept.
"""
from __future__ import annotations

import math

import torch


def check_strength(strength) -> None:
    if isinstance(strength, bool) or not isinstance(strength, (int, float)) or not 0 <= strength < math.inf:
        raise ValueError(f"augment must be a finite float >= 0, got {strength!r}")


def real_steps(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """(..., B, T) True on each sequence's real steps."""
    return torch.arange(x.shape[-2], device=x.device) < lengths[..., None]


def shift(x: torch.Tensor, lengths: torch.Tensor, strength: float) -> torch.Tensor:
    """Each sequence rolled by a random whole number of steps in [-strength * length, strength * length],
    within its real steps (the step rolled out at one end comes back at the other)."""
    real = lengths.clamp(min=1)[..., None]  # (..., B, 1)
    longest = torch.round(strength * real.float()).long()
    steps = (torch.rand(real.shape, device=x.device) * (2 * longest + 1)).long() - longest
    step = torch.arange(x.shape[-2], device=x.device)
    source = torch.where(real_steps(x, lengths), (step - steps) % real, step)  # padding keeps its own step
    return x.gather(-2, source[..., None].expand(x.shape))


def scale(x: torch.Tensor, strength: float) -> torch.Tensor:
    """Each channel of each sequence multiplied by 1 + strength * N(0, 1)."""
    return x * (1 + strength * torch.randn(*x.shape[:-2], 1, x.shape[-1], device=x.device))


def jitter(x: torch.Tensor, lengths: torch.Tensor, strength: float) -> torch.Tensor:
    """N(0, (strength / 2)^2) noise added to every real step; padding stays zero."""
    noise = strength / 2 * torch.randn(x.shape, device=x.device)
    return x + noise * real_steps(x, lengths)[..., None]


def augment(x: torch.Tensor, lengths: torch.Tensor, strength: float) -> torch.Tensor:
    """A new batch: x shifted, scaled and jittered with this strength; 0 returns x itself."""
    check_strength(strength)
    if strength == 0:
        return x
    return jitter(scale(shift(x, lengths, strength), strength), lengths, strength)
