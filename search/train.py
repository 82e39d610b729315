"""One training function for both tasks and every family: train K seeds, epoch by epoch.

Free of Optuna: the studies call `train_seeds` with an `on_epoch` callback that may stop it.
The data stays on the training device for the whole call, and nothing inside an epoch waits for
the device: losses and gradient norms accumulate there and are read once, at the epoch's end,
where divergence and pruning are decided.

Seeds train one model each (`SeedRun`, search/runs.py), or, on CUDA by default, together as one computation
(`StackedRun`, search/stacked.py: torch.func.vmap over the seed dimension); both run the one batch loop
of search/runs.py (`Run.train_epoch`). Either way a seed's result is the same:
its own initialisation, data order, AdamW state, gradient clipping and batch-norm statistics
(tests/test_train.py compares the two to 1e-5). Models with a recurrent layer never stack.
"""
from __future__ import annotations

from typing import Callable

import torch

from data import Task
from models import ModelSpec, create_model, module_param_count

from . import defaults
# F401: re-exported, since the studies, the report, the tests and bench/ import the training names from here.
from .batching import DeviceSplit, batches, epoch_order, predict  # noqa: F401
from .metrics import METRICS, log_prior, per_class, scores  # noqa: F401
from .runs import SeedRun
from .stacked import StackedRun, can_stack
from .trialspec import SeedResult, TrialSpec

STACK_MODES = ("auto", "on", "off")  # train_seeds(stack=...): auto stacks a trial's seeds on CUDA only


def resolve_device(device: str = defaults.DEVICE) -> torch.device:
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


def train_seeds(spec: TrialSpec, task: Task, seeds: list[int], device: str | torch.device = defaults.DEVICE,
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
    data = {name: DeviceSplit(getattr(task, name), device, spec.ngrams) for name in splits}  # one copy per call
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
