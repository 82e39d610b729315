"""The exercise set's review questions, answered by small experiments (`python -m search.review`).

It writes reports/review/report.md with its figures and the plain data behind them (results.json)."""
from __future__ import annotations

import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from .convolution import conv_equivalence, forecasting_experiment
from .params import TASK_KINDS, parameter_counts
from .recurrent import clipping_experiment, memory_experiment


@dataclass(frozen=True)
class Budget:
    """How much each experiment trains. FULL is the committed report's; QUICK is for tests."""
    clip_lengths: list[int] = field(default_factory=lambda: [10, 25, 50, 100, 200, 500])  # gradient at init
    clip_train_lengths: list[int] = field(default_factory=lambda: [10, 50, 100, 200, 500])
    clip_scales: list[float] = field(default_factory=lambda: [1.0, 2.0, 2.5, 3.0])  # multiplies W_hh
    clip_train_scale: float = 2.5  # Elman spectral radius ~1.3: no-clip divergence grows with length
    clip_steps: int = 80
    clip_lr: float = 0.05
    clip_batch: int = 32
    clipnorm: float = 1.0
    memory_lengths: list[int] = field(default_factory=lambda: [5, 10, 20, 50, 100, 200])
    memory_steps: int = 400
    memory_lr: float = 0.01
    memory_batch: int = 64
    forecast_layers: list[int] = field(default_factory=lambda: [1, 2, 3, 4, 5])
    forecast_steps: int = 300
    forecast_horizon: int = 6


FULL = Budget()
QUICK = Budget(clip_lengths=[10, 50], clip_train_lengths=[10, 50], clip_scales=[1.0, 2.5], clip_steps=5,
               memory_lengths=[5, 20], memory_steps=10, forecast_layers=[1, 3], forecast_steps=10)


def compute(budget: Budget, seeds: list[int]) -> dict:
    """Every experiment, as plain data (numbers, lists, dicts): what render() and results.json use."""
    started = time.perf_counter()
    b = budget
    data = {
        "task_kinds": TASK_KINDS,
        "params": parameter_counts(),
        "clipping": clipping_experiment(b.clip_lengths, b.clip_train_lengths, seeds, b.clip_scales,
                                        b.clip_train_scale, b.clip_steps, b.clip_lr, b.clip_batch, b.clipnorm),
        "memory": memory_experiment(b.memory_lengths, seeds, b.memory_steps, b.memory_lr, b.memory_batch,
                                    b.clipnorm),
        "forecast": forecasting_experiment(b.forecast_layers, seeds, b.forecast_steps, b.forecast_horizon),
        "conv": conv_equivalence(),
    }
    data["run"] = {"budget": asdict(budget), "seeds": seeds, "compute_seconds": time.perf_counter() - started,
                   "torch": torch.__version__, "python": platform.python_version(),
                   "threads": torch.get_num_threads()}
    return data


def run_review(out: Path, seeds: int, quick: bool, command: str, started: float | None = None) -> Path:
    """Compute, then write <out>/review/report.md, its figures and results.json. Returns the report's path.

    started: the time.perf_counter() at which the command began (the report's wall time counts from it).
    """
    from .render import write_report  # matplotlib only when writing

    started = time.perf_counter() if started is None else started
    data = compute(QUICK if quick else FULL, list(range(seeds)))
    data["run"] |= {"command": command, "quick": quick, "started": started}
    return write_report(data, Path(out) / "review")
