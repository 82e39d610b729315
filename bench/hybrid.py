"""Does averaging a study's recommended network with the n-gram logistic regression beat either alone?

    python bench/hybrid.py [--storage sqlite:///studies.db] [--study-name names] [--trial N] [--data PATH] [--seeds 5]

The network is the trial `search.report` recommends (read from reports/<study>/summary.json; without one,
the study's best search value; --trial picks another). It is retrained on the final seeds (100, ...; never
a search seed) and its seed ensemble's log-probabilities are mixed with the character n-gram logistic
regression's (`search/baselines.py`, C chosen on validation): w * network + (1 - w) * n-gram. The
weight w and the logit-adjustment strength tau are chosen together on the validation split by the
study's metric; the test split is measured once, for that choice and for each model alone at its own
validation-chosen tau. Printed: the validation grid, then the three test rows.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script from anywhere

import numpy as np  # noqa: E402
import torch  # noqa: E402

from search.tasks import load as load_task  # noqa: E402
from search import defaults  # noqa: E402
from search.baselines import char_ngram_logreg  # noqa: E402
from search.decision import TAUS, decide, ensemble_log_probs  # noqa: E402
from search.evaluate import open_study, ranked, spec_of  # noqa: E402
from search.report.build import safe_name  # noqa: E402
from search.train import log_prior, scores, train_seeds  # noqa: E402

WEIGHTS = (0.0, 0.25, 0.5, 0.75, 1.0)  # the network's share; 0 is the n-gram model alone, 1 the network alone


def choose(val: dict[float, np.ndarray], y: np.ndarray, prior: np.ndarray, metric: str) -> tuple[float, float, dict]:
    """The (w, tau) with the best validation metric (the first on ties) and every grid point's scores."""
    grid = {(w, tau): scores(y, decide(val[w], prior, tau), len(prior)) for w in val for tau in TAUS}
    w, tau = max(grid, key=lambda key: grid[key][metric])  # max keeps the first maximum
    return w, tau, grid


def network_trial(study, number: int | None, reports: Path = ROOT / "reports"):
    """The trial asked for, else the one the study's report recommends, else the best search value."""
    if number is None:
        summary = reports / safe_name(study.study_name) / "summary.json"
        found = json.loads(summary.read_text()) if summary.exists() else {}
        number = (found.get("recommended") or {}).get("trial") if found.get("study") == study.study_name else None
    if number is None:
        return ranked(study)[0]
    trials = {t.number: t for t in ranked(study)}
    if number not in trials:
        print(f"error: --trial {number}: no complete trial with that number in study {study.study_name!r}",
              file=sys.stderr)
        sys.exit(2)
    return trials[number]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python bench/hybrid.py", description=__doc__.splitlines()[0])
    p.add_argument("--storage", default="sqlite:///studies.db")
    p.add_argument("--study-name", default="names")
    p.add_argument("--data", default=None, help="names data folder or archive (else $NAMES_DATA, cache, download)")
    p.add_argument("--seeds", type=int, default=defaults.FINAL_SEEDS, help="final seeds (default 5)")
    p.add_argument("--trial", type=int, default=None,
                   help="the network's trial (default: the report's recommendation, else the best search value)")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    study = open_study(args.storage, args.study_name)
    best = network_trial(study, args.trial)
    metric = study.user_attrs.get("metric", "acc_bal_hmean")
    task = load_task("names", args.data)
    spec = spec_of(best)
    print(f"network: trial #{best.number} ({spec.family} {spec.layers}x{spec.width}), seeds "
          f"{defaults.final_seeds(args.seeds)}; metric {metric}", flush=True)
    runs = [r for r in train_seeds(spec, task, defaults.final_seeds(args.seeds), test=True) if r.test is not None]
    ngram = char_ngram_logreg(task, metric, quick=False, balanced=False)
    print(f"n-gram: {ngram.description}", flush=True)
    network = {split: ensemble_log_probs([r.logits[split] for r in runs]).numpy() for split in ("val", "test")}
    mix = lambda split, w: w * network[split] + (1 - w) * getattr(ngram, f"{split}_logprob")  # noqa: E731
    prior = log_prior(task.train, task.num_classes).numpy()
    y_val, y_test = task.val.y.numpy(), task.test.y.numpy()

    _, _, grid = choose({w: mix("val", w) for w in WEIGHTS}, y_val, prior, metric)
    print("\nvalidation accuracy / balanced accuracy (w = the network's share):")
    print("w \\ tau " + " ".join(f"{t:>11g}" for t in TAUS))
    for weight in WEIGHTS:
        print(f"{weight:<7g} " + " ".join(f"{grid[weight, t]['accuracy']:.3f}/{grid[weight, t]['balanced_accuracy']:.3f}"
                                          for t in TAUS))
    print("\ntest split, once per row (w and tau chosen on validation):")
    for name, weights in (("n-gram alone", [0.0]), ("network alone", [1.0]), ("mixture", WEIGHTS)):
        chosen_w, chosen_tau, _ = choose({x: mix("val", x) for x in weights}, y_val, prior, metric)
        found = scores(y_test, decide(mix("test", chosen_w), prior, chosen_tau), task.num_classes)
        print(f"{name:14s} w {chosen_w:g} tau {chosen_tau:g}: accuracy {found['accuracy']:.3f}, "
              f"balanced accuracy {found['balanced_accuracy']:.3f}, {metric} {found[metric]:.3f}")


if __name__ == "__main__":
    main()
