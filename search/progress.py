"""Progress lines of a running study: the running trial's epochs, then one line per finished trial."""
from __future__ import annotations

import math
import shutil
import sys
from typing import Callable, TextIO

import optuna

from .space import spec_fields


def describe_trial(trial: optuna.trial.FrozenTrial) -> str:
    p, a = spec_fields(trial.params), trial.user_attrs
    keys = ["layers", "width", "bidirectional", "kernel_size", "ngrams", "lr", "batch_size", "clipnorm", "imbalance"]
    shown = " ".join(f"{k}={p[k]:.1e}" if k == "lr" else f"{k}={p[k]}" for k in keys if k in p)
    mean, std = a.get("metric_mean"), a.get("metric_std")
    score = f"{mean:.4f}±{std:.4f}" if mean is not None else "n/a"
    return f"{p.get('family', '?'):<7} {shown} | {score} | {a.get('ended', trial.state.name.lower())}"


class Progress:
    """Per-epoch progress of the running trial, then one line per finished trial.

    On a terminal the epoch line is rewritten in place; through a pipe (or with `write`) every
    update is a line of its own, flushed at once, so nothing is lost. `prefix` names the worker.
    """

    def __init__(self, write: Callable[[str], None] | None = None, stream: TextIO | None = None, prefix: str = ""):
        self.stream = stream or sys.stdout
        self.write = write
        self.tty = write is None and self.stream.isatty()
        self.prefix = prefix
        self.best = "no complete trial yet"
        self.partial = False  # an in-place line is on the terminal

    def _emit(self, line: str, final: bool) -> None:
        line = self.prefix + line
        if self.write is not None:
            self.write(line)
            return
        if self.tty:
            width = shutil.get_terminal_size().columns - 1  # a wrapped line could not be rewritten in place
            self.stream.write("\r" + (line if final else line[:width]) + "\x1b[K" + ("\n" if final else ""))
            self.partial = not final
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def update_best(self, study: optuna.Study) -> None:
        try:
            best = study.best_trial
            self.best = f"best {best.value:.4f} (#{best.number})"
        except ValueError:
            self.best = "no complete trial yet"

    def epoch(self, event: dict) -> None:
        """Objective's on_progress: after every seed-epoch."""
        value = event["value"]
        shown = f"{value:.4f}" if isinstance(value, (int, float)) and math.isfinite(value) else "n/a"
        self._emit(f"trial {event['trial']:>4} seed {event['seed']} epoch {event['epoch']}/{event['epochs']} "
                   f"val {event['metric']} {shown} | {self.best}", final=False)

    def trial(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        """Optuna callback: one line per finished trial."""
        self.update_best(study)
        seconds = trial.user_attrs.get("train_seconds", 0)
        self._emit(f"trial {trial.number:>4} {describe_trial(trial)} | {self.best} | {seconds:.0f}s", final=True)
