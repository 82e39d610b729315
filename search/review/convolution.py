"""Convolutions over time for the review: a causal Conv1d forecaster, and Conv1d against Conv2d.

The forecaster predicts x[t + horizon] from x[..t] at every step t (many-to-many, aligned). Causality
comes from padding on the left only: a layer with kernel k and dilation d pads (k - 1) * d zeros
before the series, so output t reads inputs t - (k - 1) * d .. t and never t + 1.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class CausalConvForecaster(nn.Module):
    """Stacked dilated Conv1d layers (dilations 1, 2, 4, ...) and a 1x1 output layer.

    causal=False pads both sides ("same" padding) instead: the same weights, but output t then reads
    up to (k - 1) * d // 2 future samples per layer. It exists to show the leak, never to forecast.
    """

    def __init__(self, layers: int, channels: int = 16, kernel_size: int = 3, causal: bool = True):
        super().__init__()
        for name, value in (("layers", layers), ("channels", channels), ("kernel_size", kernel_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")
        self.kernel_size, self.causal = kernel_size, causal
        self.dilations = [2 ** i for i in range(layers)]
        sizes = [1] + [channels] * layers
        self.convs = nn.ModuleList(nn.Conv1d(a, b, kernel_size, dilation=d)
                                   for a, b, d in zip(sizes, sizes[1:], self.dilations))
        self.out = nn.Conv1d(channels, 1, 1)

    @property
    def receptive_field(self) -> int:
        """Input samples that one output depends on: 1 + sum over layers of (k - 1) * dilation."""
        return 1 + sum((self.kernel_size - 1) * d for d in self.dilations)

    def forward(self, series: torch.Tensor) -> torch.Tensor:
        """series (batch, time) -> forecasts (batch, time); forecast t is for series[t + horizon]."""
        h = series.unsqueeze(1)
        for conv, d in zip(self.convs, self.dilations):
            pad = (self.kernel_size - 1) * d
            h = torch.relu(conv(F.pad(h, (pad, 0) if self.causal else (pad // 2, pad - pad // 2))))
        return self.out(h).squeeze(1)


def future_influence(model: nn.Module, length: int, cut: int, seed: int = 0) -> float:
    """Largest change of outputs 0..cut when every sample after `cut` is replaced: 0 for a causal model."""
    generator = torch.Generator().manual_seed(seed)
    series = torch.randn(2, length, generator=generator)
    changed = series.clone()
    changed[:, cut + 1:] = torch.randn(2, length - cut - 1, generator=generator) * 10
    with torch.no_grad():
        return float((model(series)[:, :cut + 1] - model(changed)[:, :cut + 1]).abs().max())


NOISE_STD = 0.2


def synthetic_series(length: int, seed: int = 0) -> torch.Tensor:
    """Two sines (periods 24 and 7 steps) and Gaussian noise (std NOISE_STD): a daily-and-weekly-like signal."""
    generator = torch.Generator().manual_seed(seed)
    t = torch.arange(length, dtype=torch.float32)
    signal = torch.sin(2 * math.pi * t / 24) + 0.5 * torch.sin(2 * math.pi * t / 7 + 1.0)
    return signal + NOISE_STD * torch.randn(length, generator=generator)


def targets(series: torch.Tensor, horizon: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs and targets aligned so that output t is compared with series[t + horizon]."""
    return series[..., :-horizon], series[..., horizon:]


def train_forecaster(model: nn.Module, train: torch.Tensor, horizon: int, steps: int, seed: int,
                     window: int = 128, batch: int = 32, lr: float = 3e-3) -> None:
    """Adam on random windows of the training part; the loss skips the first receptive-field outputs,
    which see zero padding instead of history."""
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    warm = min(model.receptive_field - 1, window // 2)
    for _ in range(steps):
        starts = torch.randint(0, len(train) - window - horizon, (batch,), generator=generator)
        chunk = torch.stack([train[s:s + window + horizon] for s in starts.tolist()])
        x, y = targets(chunk, horizon)
        loss = F.mse_loss(model(x)[:, warm:], y[:, warm:])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


HISTORY = 256  # samples before a forecast origin given to the model online: more than any receptive field here


def forecast_errors(model: nn.Module, series: torch.Tensor, test_start: int, horizon: int) -> dict:
    """Test MSE over every forecast origin t of the test part, two ways: the outputs of one pass over the
    whole series ("offline", where a model that leaks sees the future), and outputs computed from the
    HISTORY samples up to t only, as a real forecast made at t is."""
    x, _ = targets(series, horizon)
    points = torch.arange(test_start, len(x))
    truth = series[points + horizon]
    with torch.no_grad():
        offline = model(x.unsqueeze(0))[0, points]
        online = model(torch.stack([series[t + 1 - HISTORY:t + 1] for t in points.tolist()]))[:, -1]
    return {"offline_mse": F.mse_loss(offline, truth).item(), "online_mse": F.mse_loss(online, truth).item()}


def forecasting_experiment(layer_counts: list[int], seeds: list[int], steps: int, horizon: int,
                           length: int = 3000, kernel_size: int = 3) -> dict:
    """Causal forecasters of growing receptive field, one same-padded (leaking) model, and naive baselines.

    The series is split in time: the first 70 % trains, the last 30 % tests; no window crosses the cut
    during training, and test outputs read history only (causal padding).
    """
    series = synthetic_series(length)
    test_start = int(0.7 * length)
    train = series[:test_start]
    mean, std = train.mean(), train.std()
    series = (series - mean) / std  # training statistics only
    train = series[:test_start]
    points = torch.arange(test_start, length - horizon)  # the origins forecast_errors uses
    truth = series[points + horizon]
    baselines = {"last value": F.mse_loss(series[points], truth).item(),
                 "zero (the mean)": float((truth ** 2).mean()),
                 "noise floor (the noise's variance)": float((NOISE_STD / std) ** 2)}
    causal, leaking = [], []
    for layers in layer_counts:
        rows = []
        for seed in seeds:
            torch.manual_seed(seed)
            model = CausalConvForecaster(layers, kernel_size=kernel_size)
            train_forecaster(model, train, horizon, steps, seed)
            rows.append(forecast_errors(model, series, test_start, horizon)
                        | {"future_influence": future_influence(model, 200, 100)})
        causal.append({"layers": layers, "receptive_field": model.receptive_field, "seeds": rows})
    for seed in seeds:
        torch.manual_seed(seed)
        leak = CausalConvForecaster(max(layer_counts), kernel_size=kernel_size, causal=False)
        train_forecaster(leak, train, horizon, steps, seed)
        leaking.append(forecast_errors(leak, series, test_start, horizon)
                       | {"future_influence": future_influence(leak, 200, 100)})
    # One seed's forecast on the start of the test part, for the figure.
    torch.manual_seed(seeds[0])
    best = min(causal, key=lambda r: sum(s["online_mse"] for s in r["seeds"]))
    model = CausalConvForecaster(best["layers"], kernel_size=kernel_size)
    train_forecaster(model, train, horizon, steps, seeds[0])
    x, _ = targets(series, horizon)
    with torch.no_grad():
        forecast = model(x.unsqueeze(0))[0, test_start:test_start + 120]
    return {"length": length, "test_start": test_start, "horizon": horizon, "kernel_size": kernel_size,
            "steps": steps, "seeds": seeds, "baselines": baselines, "causal": causal,
            "leaking": {"layers": max(layer_counts), "receptive_field": leak.receptive_field,
                        "future_samples": sum((kernel_size - 1) * d - (kernel_size - 1) * d // 2
                                              for d in leak.dilations), "seeds": leaking},
            "example": {"layers": best["layers"], "receptive_field": best["receptive_field"],
                        "start": test_start + horizon,
                        "truth": series[test_start + horizon:test_start + horizon + 120].tolist(),
                        "forecast": forecast.tolist()}}


def conv_equivalence(batch: int = 4, features: int = 9, time: int = 128, out_channels: int = 16,
                     kernel_size: int = 5, seed: int = 0) -> dict:
    """Conv1d(kernel w) against Conv2d(kernel (w, 1)) with copied weights, on one random (batch, time, features) input.

    Conv1d reads (batch, channels = features, time). Conv2d reads (batch, channels, height, width):
    the same tensor with a width-1 axis appended, (batch, features, time, 1), and kernel (w, 1) gives
    the same numbers. Laying the series out as an image instead, (batch, 1, time, features), kernel
    (w, 1) slides along time within each feature separately, with one shared filter: it is a different
    model; kernel (w, features) on that layout is again the Conv1d.
    """
    torch.manual_seed(seed)
    x = torch.randn(batch, time, features)
    conv1d = nn.Conv1d(features, out_channels, kernel_size)
    conv2d = nn.Conv2d(features, out_channels, (kernel_size, 1))
    image = nn.Conv2d(1, out_channels, (kernel_size, features))
    per_feature = nn.Conv2d(1, out_channels, (kernel_size, 1))
    with torch.no_grad():
        conv2d.weight.copy_(conv1d.weight.unsqueeze(-1))  # (out, in, w) -> (out, in, w, 1)
        conv2d.bias.copy_(conv1d.bias)
        image.weight.copy_(conv1d.weight.transpose(1, 2).unsqueeze(1))  # (out, in, w) -> (out, 1, w, in)
        image.bias.copy_(conv1d.bias)
        y1 = conv1d(x.transpose(1, 2))  # (batch, out, time - w + 1)
        y2 = conv2d(x.transpose(1, 2).unsqueeze(-1)).squeeze(-1)
        y3 = image(x.unsqueeze(1)).squeeze(-1)
        y4 = per_feature(x.unsqueeze(1))
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    return {"batch": batch, "features": features, "time": time, "out_channels": out_channels,
            "kernel_size": kernel_size,
            "conv1d": {"input": [batch, features, time], "output": list(y1.shape), "params": count(conv1d)},
            "conv2d_w1": {"input": [batch, features, time, 1], "output": list(y2.shape) + [1],
                          "params": count(conv2d), "max_abs_diff": float((y1 - y2).abs().max())},
            "conv2d_image": {"input": [batch, 1, time, features], "output": list(y3.shape) + [1],
                             "params": count(image), "max_abs_diff": float((y1 - y3).abs().max())},
            "conv2d_per_feature": {"input": [batch, 1, time, features], "output": list(y4.shape),
                                   "params": count(per_feature)}}
