"""python -m search.export: retrain one trial of a study on the final seeds and write its model folder.

The trial's configuration is retrained on the final seeds (never the search seeds), its test metrics
measured once, and the ensemble written as a model folder (search/modelfolder.py) with its card
(search/card.py); `python -m search.predict` applies it (search/predictor.py).

Prediction: every seed's softmax probabilities are averaged (the ensemble); the label is
argmax(log p - tau * log prior), with tau from `decision` and prior the training class frequencies
(tau = 0: the most probable class).
"""
from __future__ import annotations

import argparse
import json
import math
import re
import shlex
import sys
from pathlib import Path

import optuna
import torch

from data import DataError, Task
from models import create_model
from . import defaults, signals
from .card import model_card, test_section  # noqa: F401  (re-exported)
from .evaluate import EvaluationError, evaluate_spec, final_metrics, load_checked, open_study, spec_of  # noqa: F401
from .modelfolder import WEIGHTS, check_out, load_model, save_model, sha256  # noqa: F401  (re-exported)
from .modelschema import FORMAT, TAU_LIMIT, ModelError  # noqa: F401  (re-exported)
from .predictor import (BATCH, InputError, Predictor, Series, ensemble_proba,  # noqa: F401
                        log_proba, preprocessing_of, prior_of)
from .options import common
from .storage import hide_password
from .tasks import entry_of
from .train import TrialSpec
from .util import shown_path, shown_paths


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m search.export",
                                parents=[common("storage", "study_name", "study_data", "device", "threads")],
                                description="Retrain one trial's configuration on the final seeds and write a model "
                                            "folder (model.json, model.md, weights/) for search.predict.")
    p.add_argument("study", metavar="STUDY",
                   help="the study: a registered task's (har, names) or a user's file's (search.fit names it after the "
                        "file, e.g. GunPoint); with --study-name, the task of that study")
    p.add_argument("--trial", type=int, required=True, help="the trial number in the study")
    p.add_argument("--seeds", type=int, default=defaults.FINAL_SEEDS,
                   help=f"final seeds {defaults.FINAL_SEED_BASE}, {defaults.FINAL_SEED_BASE + 1}, ... (default %(default)s)")
    p.add_argument("--tau", type=float, default=None,
                   help="logit adjustment of the decision rule: argmax(log p - tau * log prior) (default: chosen "
                        "on the validation split for a trial with decision=logit_adjust, else 0)")
    p.add_argument("--refit", action="store_true",
                   help="train on the training and validation rows together, as a report's recommendation is (tau: "
                        "--tau, else chosen on validation by a first run on the training split)")
    p.add_argument("--out", default=None, help="the model folder to write (default reports/<study>/model-trial-N)")
    return p


def evaluate_refit(spec: TrialSpec, task: Task, seeds: list[int], metric: str, device: str = defaults.DEVICE,
                   tau: float | None = None, on_epoch=None, keep_models: bool = False,
                   write=lambda line: None) -> tuple[dict, list]:
    """evaluate_spec of spec refitted on train + validation, as the report deploys it, decided with tau, or
    (None) with the tau its training-split seeds choose on validation first (argmax: 0, nothing to choose)."""
    if tau is None:
        tau = 0.0
        if spec.decision == "logit_adjust":
            write("choosing tau on validation: the training split first")
            tau = evaluate_spec(spec, task, seeds, metric, device, on_epoch=on_epoch)[0]["decision"]["tau"]
    return evaluate_spec(spec, task.refit(), seeds, metric, device, keep_models=keep_models, on_epoch=on_epoch,
                         tau=tau)


def export(args: argparse.Namespace, write=lambda line: print(line, file=sys.stderr, flush=True)) -> Path:
    """Retrain trial args.trial of the study on the final seeds and write its model folder; every argument and
    the output folder are checked before the study is opened or anything trains."""
    bounds = (("seeds", 1, defaults.MAX_FINAL_SEEDS), ("trial", 0, None), ("threads", 1, None))
    for name, low, high in bounds:
        value = getattr(args, name)
        if value < low or (high is not None and value > high):
            rule = f"from {low} to {high}" if high is not None else f">= {low}"
            raise EvaluationError(f"--{name} must be an int {rule}, got {value}")
    if args.tau is not None and not (math.isfinite(args.tau) and abs(args.tau) <= TAU_LIMIT):
        raise EvaluationError(f"--tau must be a finite number from -{TAU_LIMIT:g} to {TAU_LIMIT:g}, got {args.tau}")
    if args.data is not None and not Path(args.data).exists():
        raise EvaluationError(f"--data {args.data!r}: no such file or folder")
    study_name = args.study_name or args.study
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", study_name).strip("._") or "study"
    out = check_out(Path(args.out) if args.out else Path("reports") / safe / f"model-trial-{args.trial}")
    study = open_study(args.storage, study_name)
    attrs = study.user_attrs
    task_name = attrs.get("task", args.study)  # a study records its task; an older one is named after it
    if args.study_name and task_name != args.study:
        raise EvaluationError(f"study {study_name!r} is a {task_name} study, not {args.study}")
    trials = {t.number: t for t in study.get_trials(deepcopy=False)}
    if args.trial not in trials:
        span = f"0-{max(trials)}" if trials else "none"
        raise EvaluationError(f"--trial {args.trial}: no such trial in study {study_name!r} (trials: {span})")
    trial = trials[args.trial]
    State = optuna.trial.TrialState
    if trial.state not in (State.COMPLETE, State.PRUNED):
        raise EvaluationError(f"--trial {args.trial} is {trial.state.name} (only COMPLETE or PRUNED trials have a "
                          "configuration that trained)")
    spec = spec_of(trial)
    task, _ = load_checked(task_name, args.data, attrs)
    seeds = defaults.final_seeds(args.seeds)
    torch.set_num_threads(args.threads)
    write(f"training trial #{trial.number} ({spec.family}) on seeds {seeds[0]}-{seeds[-1]}, {spec.epochs} epochs")

    def on_epoch(epoch: int, results) -> bool:
        write(f"  epoch {epoch}/{spec.epochs}")
        return False  # never stop early

    metric = attrs.get("metric") or entry_of(task).metric
    if args.refit:
        entry, states = evaluate_refit(spec, task, seeds, metric, args.device, tau=args.tau, on_epoch=on_epoch,
                                       keep_models=True, write=write)
        task = task.refit()
    else:
        entry, states = evaluate_spec(spec, task, seeds, metric, args.device, keep_models=True, on_epoch=on_epoch)
    failed = [f"seed {r['seed']} {r['status']}" for r in entry["runs"] if r["status"] != "finished"]
    if failed:
        raise RuntimeError(f"trial #{trial.number} did not train: {'; '.join(failed)}; nothing written")
    tau = args.tau if args.tau is not None else entry["decision"]["tau"]
    models = []
    for state in states:
        models.append(create_model(spec, task.input_size, task.num_classes, task.seq_len))
        models[-1].load_state_dict(state)
        models[-1].eval()
    storage = shown_paths(hide_password(args.storage))  # no password, no machine path: runs again from here
    command = ["python -m search.export", args.study, "--trial", str(trial.number), "--storage", storage,
               "--study-name", study_name, "--seeds", str(args.seeds), "--out", shown_path(str(out))] \
        + (["--data", shown_path(args.data)] if args.data else []) + (["--tau", repr(args.tau)] if args.tau is not None else []) \
        + (["--refit"] if args.refit else [])
    source = {"study": study.study_name, "storage": storage, "trial": trial.number,
              "state": trial.state.name, "search_metric": metric,
              "search_value": trial.value if trial.state == State.COMPLETE else None,
              "search_seeds": trial.user_attrs.get("seeds"),
              "tau_from": "--tau" if args.tau is not None else
              "validation split" if spec.decision == "logit_adjust" else "argmax rule",
              "trained_on": "train+validation" if args.refit else "train",
              "study_commands": [shown_paths(hide_password(c)) for c in attrs.get("commands", [])],
              "command": " ".join(command[:1] + [shlex.quote(a) for a in command[1:]])}
    return save_model(out, spec, task, models, seeds, {"tau": tau}, final_metrics(models, task, tau), source)


def main(argv: list[str] | None = None) -> None:
    signals.ctrl_c_raises()  # until here search/__init__.py made Ctrl-C end the process at once
    try:
        args = parser().parse_args(argv)
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        folder = export(args)
    except (EvaluationError, DataError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("interrupted: nothing written", file=sys.stderr)
        sys.exit(signals.EXIT)
    card = json.loads((folder / "model.json").read_text(encoding="utf-8"))
    mean, ensemble = card["metrics"]["mean"], card["metrics"]["ensemble"]
    print(f"{folder}: {card['spec']['family']} ensemble of {len(card['seeds'])} seeds; test accuracy "
          f"{mean['accuracy']:.3f} (ensemble {ensemble['accuracy']:.3f}), balanced accuracy "
          f"{mean['balanced_accuracy']:.3f} (ensemble {ensemble['balanced_accuracy']:.3f})")
    example = (card.get("intended_use") or {}).get("example") or "INPUT"
    print(f"predict: python -m search.predict --model {shlex.quote(str(folder))} {example}")


if __name__ == "__main__":
    main()
