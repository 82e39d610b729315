"""Model folders on disk: write one atomically, refuse to overwrite anything else, load and check one.

A model folder (format 2; format 1 folders without an n-gram part are read too):
    model.json          format, task, class names, spec, seeds, decision rule and training prior,
                        preprocessing (its kind, series or text, decides how inputs are read), what an
                        input and a class are called, test metrics, data description, intended use,
                        where it came from, and the sha256 of every weight file
    model.md            the model card (search/card.py)
    weights/seed-N.pt   one `torch.save`d state_dict per seed (kept apart: large weights stay out of git)

A folder is untrusted input: model.json is validated (search/modelschema.py), weight paths are checked
to lie inside the folder before they are opened, each file's size and sha256 before it is unpickled
(weights_only), and its tensors' shapes against the spec before they are loaded.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from dataclasses import asdict
from pathlib import Path

import optuna
import torch

from data import Task
from models import create_model, module_param_count
from .card import model_card
from .modelschema import FORMAT, ModelError, validate_card
from .predictor import Predictor, nouns_of, preprocessing_of, prior_of
from .tasks import TEXT, entry_of, is_file_task
from .train import TrialSpec
from .util import json_safe

WEIGHTS = "weights"
CARD = "model.json"
MAX_CARD_BYTES = 16 * 2**20  # a card with a confusion matrix is tens of KB; more is not one this project wrote
UNCOMMITTED = 2 * 2**20  # weight files over 2 MiB are left out of git (.gitignore)
OWN_FILES = {CARD, "model.md", WEIGHTS}
WEIGHT_FILE = re.compile(r"seed-\d+\.pt")


# ---------------------------------------------------------------------------------------------
# Where a folder may be written


def check_out(folder, label: str = "--out") -> Path:
    """Fail unless folder can be written: absent (its nearest existing parent writable) or a model folder this
    project wrote (which it would replace). Call it before any long work; save_model calls it again."""
    folder = Path(folder)
    if folder.is_symlink() or (folder.exists() and not folder.is_dir()):
        raise ModelError(f"{label} {folder}: exists and is not a folder; choose another path")
    if folder.exists():
        stray = foreign_entries(folder)
        if stray:
            raise ModelError(f"{label} {folder}: exists and is not a model folder written by search.export "
                             f"(it holds {', '.join(stray[:3])}{', ...' if len(stray) > 3 else ''}); "
                             "choose another folder, or empty it yourself")
    parent = folder.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    try:  # a real write: as root, permission bits say yes to everything, a read-only mount does not
        Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".probe", dir=parent)).rmdir()
    except OSError as exc:
        raise ModelError(f"{label} {folder}: cannot write in {parent} ({exc.strerror or exc})") from None
    return folder


def foreign_entries(folder: Path) -> list[str]:
    """What in an existing folder says it is not a model folder this project wrote (nothing: it is one)."""
    names = sorted(p.name for p in folder.iterdir())
    if not names:
        return []  # an empty folder: nothing to lose
    stray = [n for n in names if n not in OWN_FILES]
    weights = folder / WEIGHTS
    if weights.is_dir() and not weights.is_symlink():
        stray += [f"{WEIGHTS}/{p.name}" for p in sorted(weights.iterdir()) if not WEIGHT_FILE.fullmatch(p.name)]
    elif weights.exists() or weights.is_symlink():
        stray.append(WEIGHTS)
    card = folder / CARD
    try:
        if card.is_symlink() or card.stat().st_size > MAX_CARD_BYTES:
            raise ValueError
        version = json.loads(card.read_text(encoding="utf-8")).get("format")
        if type(version) is not int:  # noqa: E721
            raise ValueError
    except (OSError, ValueError, AttributeError, RecursionError):
        stray.append(f"{CARD} not written by search.export" if card.exists() else f"no {CARD}")
    return stray


# ---------------------------------------------------------------------------------------------
# Saving


def data_description(task: Task) -> dict:
    info = {k: v for k, v in task.info.items() if k not in ("standardisation", "cache", "load_seconds",
                                                             "first_load_seconds", "alphabet")}
    for key in ("source", "test_source"):  # the file or folder name only: no machine path in a committed folder
        if info.get(key):
            info[key] = Path(str(info[key])).name
    if isinstance(info.get("file"), dict):  # a user's file: the options it was read with, paths as names
        info["file"] = {k: Path(v).name if k in ("path", "test") else v for k, v in info["file"].items()}
    return {"task": task.name, **info, "counts": task.counts()}


def intended_use(task: Task) -> dict:
    """The card's "Meant for", "Not meant for" and example input, from the task's entry; for a user's file,
    its entry's generic text and an example naming the file."""
    entry = entry_of(task)
    example, meant_for = entry.example, entry.meant_for
    if is_file_task(task):
        source = str(task.info["source"])
        meant_for = meant_for.replace(source, Path(source).name)  # no machine path in a committed folder
        if entry.kind == TEXT:
            example = f"--text-column {task.info['columns']['text']} {Path(task.info['source']).name}"
        else:
            example = Path(str(task.info.get("test_source") or task.info["source"])).name
    return {"meant_for": meant_for, "not_meant_for": list(entry.not_meant_for), "example": example}


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def save_model(folder, spec: TrialSpec, task: Task, models: list[torch.nn.Module], seeds: list[int],
               decision: dict, metrics: dict, source: dict) -> Path:
    """Write a model folder beside its place and rename it there; an old model folder is replaced only once
    the new one is complete, and anything else at that path is refused (ModelError). Returns its path.

    decision: {"tau": float}; the training prior is added here. metrics: the test metrics to record
    (see `final_metrics`); a "confusion" matrix in it (rows: true class, summed over seeds) gives the
    card's known confusions. source: where the model came from (study, trial, data); a "command"
    in it is how to produce the folder again, quoted when the weights are missing.
    """
    folder = Path(folder)
    if not models or len(models) != len(seeds) or len(set(seeds)) != len(seeds):
        raise ValueError(f"models and seeds must be equally long, non-empty and seeds distinct, "
                         f"got {len(models)} models and seeds {list(seeds)}")
    tau = decision.get("tau", 0.0)
    if isinstance(tau, bool) or not isinstance(tau, (int, float)) or not abs(tau) <= 10:
        raise ValueError(f"decision['tau'] must be a finite float from -10 to 10, got {tau!r}")
    fresh = create_model(spec, task.input_size, task.num_classes, task.seq_len)
    states = []
    for model in models:
        state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        fresh.load_state_dict(state)  # refuses a model that does not fit the spec, before anything is written
        states.append(state)
    card = {
        "format": FORMAT,
        "task": task.name,
        "class_names": list(task.class_names),
        "spec": asdict(spec),
        "params": module_param_count(fresh),
        "seeds": [int(s) for s in seeds],
        "decision": {**decision, "tau": float(tau), **prior_of(task),
                     "formula": "argmax(log p - tau * log prior); p = mean of the seeds' softmax probabilities"},
        "preprocessing": preprocessing_of(task),
        "nouns": nouns_of(entry_of(task).kind, entry_of(task).notes),
        "intended_use": intended_use(task),
        "metrics": json_safe(metrics),
        "data": data_description(task),
        "source": json_safe(source),
        "versions": {"torch": torch.__version__.split("+")[0], "optuna": optuna.__version__},
        "weights": [],
    }
    check_out(folder, "model folder")
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".tmp", dir=folder.parent))
    old = tmp.with_suffix(".old")
    try:
        (tmp / WEIGHTS).mkdir()
        for seed, state in zip(card["seeds"], states):
            path = tmp / WEIGHTS / f"seed-{seed}.pt"
            torch.save(state, path)
            card["weights"].append({"seed": seed, "file": f"{WEIGHTS}/{path.name}", "bytes": path.stat().st_size,
                                    "sha256": sha256(path)})
        (tmp / CARD).write_text(json.dumps(card, indent=1, allow_nan=False) + "\n", encoding="utf-8")
        (tmp / "model.md").write_text(model_card(card, folder), encoding="utf-8")
        tmp.chmod(0o755)  # mkdtemp's 0700 would hide a committed folder from other users
        if folder.exists():
            check_out(folder, "model folder")  # still ours: training may have run for minutes
            os.replace(folder, old)
        os.replace(tmp, folder)
    finally:
        if old.exists() and not folder.exists():  # the second rename failed: put the old folder back
            os.replace(old, folder)
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)
    return folder


# ---------------------------------------------------------------------------------------------
# Loading


def load_model(folder, device: str | torch.device = "cpu") -> Predictor:
    """The Predictor of a model folder; a missing, corrupt, other-format or inconsistent folder raises ModelError
    (one line naming the file and the field)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ModelError(f"{folder}: no model folder there (make one with: python -m search.export STUDY --trial N)")
    path = folder / CARD
    if not path.is_file():
        raise ModelError(f"{path}: missing (not a model folder written by search.export)")
    if path.stat().st_size > MAX_CARD_BYTES:
        raise ModelError(f"{path}: {path.stat().st_size:,} bytes, over the {MAX_CARD_BYTES // 2**20} MiB a model card "
                         "may hold")
    try:
        raw = json.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ModelError(f"{path}: corrupt (not UTF-8 text: byte {exc.object[exc.start]:#04x} at offset "
                         f"{exc.start})") from None
    except json.JSONDecodeError as exc:
        raise ModelError(f"{path}: corrupt ({exc})") from None
    except RecursionError:
        raise ModelError(f"{path}: corrupt (nested deeper than a JSON reader allows)") from None
    card, pre = validate_card(raw, path, how_to_produce(raw))
    spec = TrialSpec(**card.spec)
    classes = len(card.class_names)
    models = []
    for entry in card.weights:
        state = read_weights(folder, entry, raw, spec, pre.input_size, classes, pre.seq_len)
        model = create_model(spec, pre.input_size, classes, pre.seq_len)
        model.load_state_dict(state)
        models.append(model.to(device).eval())
    return Predictor(card.task, list(card.class_names), spec, card.decision.model_dump(), pre.model_dump(), models,
                     raw, card.nouns.model_dump() if card.nouns else None)


def read_weights(folder: Path, entry, raw: dict, spec: TrialSpec, input_size: int, classes: int,
                 seq_len: int) -> dict:
    """One seed's state dict, checked in order of cost: the path, the size, the sha256, then the tensors' shapes."""
    file = folder / entry.file
    if not file.resolve().is_relative_to(folder.resolve()):  # a link inside the folder that leads out of it
        raise ModelError(f"{folder / CARD}: field weights: {entry.file} leads outside the model folder")
    if not file.is_file():
        why = " (weights over 2 MiB are not committed)" if entry.bytes > UNCOMMITTED else ""
        raise ModelError(f"{file}: missing{why}; produce them{how_to_produce(raw)}")
    size = file.stat().st_size
    if size != entry.bytes:
        raise ModelError(f"{file}: corrupt ({size:,} bytes, model.json says {entry.bytes:,})")
    if sha256(file) != entry.sha256:
        raise ModelError(f"{file}: corrupt (its sha256 differs from the one in model.json)")
    with torch.device("meta"):  # shapes without memory: a spec far larger than the file is refused before it is built
        expected = {k: (tuple(v.shape), v.dtype) for k, v in
                    create_model(spec, input_size, classes, seq_len).state_dict().items()}
    needed = sum(torch.Size(shape).numel() * dtype.itemsize for shape, dtype in expected.values())
    if needed > size:
        raise ModelError(f"{file}: does not fit the model.json spec ({spec.family}, width {spec.width}, "
                         f"{spec.layers} layer(s)): the spec's tensors need {needed:,} bytes, the file holds {size:,}")
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as exc:  # unpickling errors differ by cause; all mean the same here
        detail = " ".join(str(exc).split())[:200] or "no detail"
        raise ModelError(f"{file}: not a weights file of this project ({type(exc).__name__}: {detail})") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelError(f"{file}: not a state_dict (a mapping of names to tensors)")
    found = {k: (tuple(v.shape), v.dtype) for k, v in state.items()}
    differences = [f"{k} missing" for k in expected if k not in found]
    differences += [f"{k} not in the spec" for k in found if k not in expected]
    differences += [f"{k} is {found[k][0]} in the file, {expected[k][0]} in the spec" for k in expected
                    if k in found and found[k][0] != expected[k][0]]
    if differences:
        more = f" (and {len(differences) - 1} more difference(s))" if len(differences) > 1 else ""
        raise ModelError(f"{file}: does not fit the model.json spec ({spec.family}, width {spec.width}, "
                         f"{spec.layers} layer(s)): {differences[0]}{more}")
    return state


def how_to_produce(card) -> str:
    source = card.get("source") if isinstance(card, dict) else None
    command = source.get("command") if isinstance(source, dict) else None
    if isinstance(command, str) and command.startswith("python -m search.") and "\n" not in command:
        return f" with: {command[:300]}"
    return " with: python -m search.export STUDY --trial N"
