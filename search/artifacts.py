"""What optuna-dashboard shows beside the numbers: per-trial figures, per-trial notes and a study note.

Every finished trial (complete, pruned or diverged) gets two PNGs in an Optuna artifact store, its
learning curves and its validation confusion matrix, and a markdown note (spec, mean ± std over
seeds, per-seed values, why it ended, parameter count, seconds). The study gets a note with the
task, the data, the search space and the commands that ran it. A figure that cannot be written
(disk full, folder removed) does not fail the trial: its note says which artifact is missing.
"""
from __future__ import annotations

import math
import os
import shutil
import sys
import tempfile
import warnings
from dataclasses import fields
from pathlib import Path
from typing import BinaryIO, Callable

import numpy as np
import optuna
from matplotlib.figure import Figure  # no pyplot: no global state, renders with Agg
from optuna.artifacts import FileSystemArtifactStore, upload_artifact
from optuna_dashboard import save_note

from data import atomic_path
from . import figures
from .storage import hide_password

MISSING = "Artifact missing"  # starts the line of a trial's note that names a figure not saved, and why


def check_dir(folder: str | None, create: bool, option: str = "--artifacts", writable: bool = True) -> None:
    """Fail early, naming the option, on a path that cannot be (or become) a writable folder.

    create=False checks without creating anything: an existing folder must be writable, a missing
    one must have a writable parent folder, so it can be created when the first figure is written.
    None (no folder: an in-memory study keeps no figures) passes.
    """
    if folder is None:
        return
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise ValueError(f"{option} {folder!r} must be a folder, but it is a file")
    if os.path.isdir(folder) or not writable:
        if writable and not os.access(folder, os.W_OK | os.X_OK):
            raise ValueError(f"{option} {folder!r}: the folder is read-only")
        return
    parent = os.path.dirname(os.path.abspath(folder))
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent) or not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(f"{option} {folder!r}: cannot create the folder ({parent} is not a writable folder)")
    if create:
        try:
            os.makedirs(folder, exist_ok=True)
        except OSError as exc:
            raise ValueError(f"{option} {folder!r}: cannot create the folder ({exc.strerror})") from None


class AtomicFileStore(FileSystemArtifactStore):
    """Optuna's file-system store, but a write goes to a temporary file that is then renamed,
    so the dashboard never serves half an image."""

    def write(self, artifact_id: str, content_body: BinaryIO) -> None:
        target = self._get_filepath(artifact_id)  # Optuna's check: no absolute or ../ ids
        with atomic_path(target) as partial, open(partial, "wb") as f:
            shutil.copyfileobj(content_body, f)


# ---- figures ---------------------------------------------------------------------------------

def _padded(curves: list[dict], key: str) -> np.ndarray:
    """(seeds, epochs) array of one history key; seeds that trained fewer epochs are NaN-padded."""
    rows = [[math.nan if v is None else v for v in c.get(key, [])] for c in curves]
    width = max((len(r) for r in rows), default=0)
    return np.array([r + [math.nan] * (width - len(r)) for r in rows], dtype=float).reshape(len(rows), width)


def _nanmean(values: np.ndarray) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an epoch where every seed is NaN (diverged) stays NaN
        return np.nanmean(values, axis=0)


def curves_figure(number: int, summary: dict) -> Figure:
    """Validation metric per epoch (each seed, and their mean: what lockstep reports to the pruner) and losses."""
    metric, seeds, curves = summary["metric"], summary["seeds"], summary["curves"]
    fig = Figure(figsize=(10, 4), layout="constrained")
    left, right = fig.subplots(1, 2)
    values = _padded(curves, f"val_{metric}")
    epochs = np.arange(1, values.shape[1] + 1)
    for seed, row in zip(seeds, values):
        left.plot(epochs, row, marker=".", lw=1, alpha=0.6, label=f"seed {seed}")
    left.plot(epochs, _nanmean(values), color="black", lw=2.5, label="mean over seeds")
    left.set(title=f"validation {metric}", xlabel="epoch", ylabel=metric)
    left.legend(fontsize="small")
    for key, color in (("train_loss", "C0"), ("val_loss", "C3")):
        losses = _padded(curves, key)
        for row in losses:
            right.plot(epochs[:len(row)], row, color=color, lw=1, alpha=0.35)
        right.plot(epochs[:losses.shape[1]], _nanmean(losses), color=color, lw=2.5, label=f"{key} (mean)")
    right.set(title="cross-entropy loss (thin: one seed)", xlabel="epoch", ylabel="loss")
    right.legend(fontsize="small")
    for ax in (left, right):
        ax.grid(alpha=0.3)
        ax.xaxis.get_major_locator().set_params(integer=True)
    fig.suptitle(f"trial {number}: {summary['spec']['family']}, {summary['ended']}")
    return fig


def confusion_figure(number: int, summary: dict, class_names: list[str]) -> Figure:
    """Counts summed over seeds; the colour is the row share (recall), so rare classes stay visible."""
    counts = np.array(summary["confusion"], dtype=float)
    names = class_names if len(class_names) == len(counts) else [str(i) for i in range(len(counts))]
    share = counts / np.maximum(counts.sum(1, keepdims=True), 1)
    return figures.confusion_figure(share, names, f"trial {number}: validation confusion matrix, "
                                    f"{len(summary['seeds'])} seed(s) summed", counts=counts)


# ---- notes -----------------------------------------------------------------------------------

def _score(value) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.4f}"


def trial_note(number: int, summary: dict, saved: list[str], missing: list[str]) -> str:
    metric, seeds = summary["metric"], summary["seeds"]
    per_seed = ", ".join(f"seed {s}: {_score(v)}" for s, v in zip(seeds, summary["seed_metrics"][metric]))
    spec = "\n".join(f"| {k} | {v:.4g} |" if isinstance(v, float) else f"| {k} | {v} |"
                     for k, v in summary["spec"].items())
    lines = [
        f"### Trial {number}: {summary['ended']}",
        f"validation {metric}: **{_score(summary['metric_mean'])} ± {_score(summary['metric_std'])}** "
        f"(mean ± population std over {len(seeds)} seed(s), each seed's value after its last epoch)",
        "",
        f"per seed: {per_seed}",
        "",
        f"ended: {summary['ended']} · {summary['params']:,} trainable parameters · "
        f"{summary['train_seconds']:.1f} s wall clock for all seeds ({summary['seed_epochs']} seed-epochs, "
        f"strategy {summary['strategy']})",
        "",
        "| spec | value |", "|---|---|", spec,
        "",
    ]
    if saved:
        lines.append("figures (Artifacts below): " + ", ".join(f"`{name}`" for name in saved))
    lines += [f"**{MISSING}**: {text}" for text in missing]
    return "\n".join(lines)


def space_source(space: Callable) -> str:
    """The space as declared (search/tasks.py), one field a line."""
    return "Space(\n" + "".join(f"    {f.name}={getattr(space, f.name)!r},\n" for f in fields(space)) + ")"


def study_note(study: optuna.Study, space: Callable, grid: dict) -> str:
    a = study.user_attrs
    names, counts, data = a.get("class_names", []), a.get("counts", {}), a.get("data", {})
    lines = [
        f"## {study.study_name}: task {a.get('task')}, maximise validation {a.get('metric')}",
        f"{a.get('seeds')} seed(s) per trial, strategy {a.get('strategy')}, pruner {a.get('pruner')}, "
        f"sampler seed {a.get('sampler_seed')}",
        "",
        "### Data",
        f"source: `{os.path.basename(str(data.get('source', '?')).rstrip('/'))}`",
        "",
        f"split: {data.get('split', '?')}",
        "",
        "| split | examples | " + " | ".join(names) + " |",
        "|---|---:|" + "---:|" * len(names),
    ]
    lines += [f"| {split} | {sum(c):,} | " + " | ".join(f"{v:,}" for v in c) + " |" for split, c in counts.items()]
    lines += ["", "### Search space"]
    if a.get("fixed"):
        lines.append("fixed on the command line: " + ", ".join(f"{k}={v}" for k, v in a["fixed"].items()))
    if grid:
        lines.append("a plain grid: " + ", ".join(f"{k} in {v}" for k, v in grid.items())
                     + "; every other parameter fixed or TrialSpec's default")
    else:
        lines += ["```python", space_source(space), "```"]
    lines += ["", "### Commands that ran this study"] + [f"- `{hide_password(c)}`" for c in a.get("commands", [])]
    return "\n".join(lines)


# ---- the hook ----------------------------------------------------------------------------------

class TrialArtifacts:
    """Objective.on_trial_end hook: figures to the artifact store and notes, for every finished trial.

    A figure that cannot be written leaves no artifact entry (the dashboard would show a broken
    image): its note says why, and stderr says so once per run. folder None: notes only, no figures.
    """

    def __init__(self, folder: str | None, space: Callable, grid: dict | None = None):
        check_dir(folder, create=True)
        self.folder, self.space, self.grid = folder, space, grid or {}
        self.store = AtomicFileStore(folder) if folder is not None else None
        self.study_noted = False
        self.warned = False

    def __call__(self, trial: optuna.Trial, summary: dict) -> None:
        if not self.study_noted:  # once per run: the study's attrs (data, commands) are set by then
            save_note(trial.study, study_note(trial.study, self.space, self.grid))
            self.study_noted = True
        class_names = trial.study.user_attrs.get("class_names") or []
        figures = {} if self.folder is None else {
            f"trial-{trial.number}-curves.png": lambda: curves_figure(trial.number, summary),
            f"trial-{trial.number}-confusion.png": lambda: confusion_figure(trial.number, summary, class_names),
        }
        saved, missing = [], []
        with tempfile.TemporaryDirectory() as tmp:
            for filename, draw in figures.items():
                try:
                    self.upload(draw, Path(tmp) / filename, trial)
                    saved.append(filename)
                except OSError as exc:
                    reason = f"{type(exc).__name__}: {exc.strerror or exc}"
                    missing.append(f"`{filename}` was not saved to {self.folder} ({reason})")
                    if not self.warned:
                        print(f"warning: figures cannot be written to {self.folder} ({reason}); trials go on "
                              "without them, and their notes say so", file=sys.stderr, flush=True)
                        self.warned = True
        save_note(trial, trial_note(trial.number, summary, saved, missing))

    def upload(self, draw: Callable[[], Figure], path: Path, trial: optuna.Trial) -> None:
        # upload_artifact records the artifact in the trial before it writes the file. So the file is
        # first written once beside its final place (a removed folder is re-created): a folder that
        # cannot take it fails here, before any entry exists.
        if os.path.exists(self.folder) and not os.path.isdir(self.folder):
            raise NotADirectoryError(f"{self.folder} was replaced by a file")
        os.makedirs(self.folder, exist_ok=True)
        draw().savefig(path, dpi=90)
        with tempfile.NamedTemporaryFile(dir=self.folder, prefix=".probe-") as probe, open(path, "rb") as png:
            shutil.copyfileobj(png, probe)
            probe.flush()
            os.fsync(probe.fileno())
        upload_artifact(artifact_store=self.store, file_path=str(path), study_or_trial=trial)
