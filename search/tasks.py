"""The task registry: every task is one declarative entry; a user's file gets one sized to its data.

An entry says what the search needs to know about a task that the data itself does not: the metric
it maximises, its time budget, its search space and warm starts, and the model card's text. What
depends on the kind of data (numeric series or text: baselines, preprocessing, predict inputs) is
keyed by `kind`, never by a task's name.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from data import DataError, Task, har, load_file, names
from data.splits import FOLDS
from models.minirocket import RIDGE_MOST
from . import defaults
from .space import Space
from .trialspec import TrialSpec

SERIES, TEXT = "series", "text"
FILE_TIME_LIMIT = 5 * 60  # a user's file: half of a ten-minute study + report


@dataclass(frozen=True)
class TaskEntry:
    name: str
    kind: str  # SERIES or TEXT
    load: Callable[..., Task]  # load(source, fold=0) -> Task; source: a path, or None for the default
    folds: int  # validation folds the loader offers; fold 0 is the search's split, the others re-rank
    metric: str  # what a study maximises on validation
    # Seconds: the default --timeout of a sampled study, the task's budget less its space's longest trial, so
    # that a study ends inside its budget whichever corner the sampler settles in (bench/README.md, "Time limit").
    time_limit: int
    space: Space
    warm_starts: tuple[dict, ...] = ()  # known-good configurations a new default study trains first
    # The field's first try (one of warm_starts): the report re-ranks it beside the leaders and keeps it unless
    # one beats it on validation by more than a standard error (search/rerank.py).
    standard: dict | None = None
    final_seeds: int = defaults.FINAL_SEEDS  # the report's seeds per final evaluation
    held_out: str = "groups"  # what a validation fold holds out, for the report's text
    meant_for: str = ""  # the model card's "Meant for" and "Not meant for"
    not_meant_for: tuple[str, ...] = ()
    example: str = ""  # an input for the predict command's example line
    notes: dict = field(default_factory=dict)  # "input", "label": the nouns predict and the card use


# A random-kernel family computes each example's features once (models/minirocket.py), so its linear head
# gets the epochs it needs at little cost, over up to MiniRocket's 10,000 features (width 119).
RANDOM_KERNELS = {"epochs": (20, 40), "max_width": 119}


CORNER_LR = 3e-4  # MiniRocket's corner trains its head from this rate down (a cosine schedule)


def minirocket_corner(batch_size: int, epochs: int, lr: float = CORNER_LR) -> dict:
    """MiniRocket's configuration as a trial: its 10,000 features (width 119), a trained linear head, no tuning
    (the field's first try, so a search can always at least choose it). On a small training split the head
    starts at MiniRocket's ridge (models/minirocket.py), and lr RIDGE_LR keeps it there."""
    return dict(family="minirocket", layers=1, width=119, dropout=0.0, clipnorm=0.0, lr=lr, batch_size=batch_size,
                epochs=epochs, schedule="cosine", weight_decay=1e-2, imbalance="none", decision="argmax")


# A ridge-started head barely moves at this learning rate: the search's lower end for it, and its corner's.
RIDGE_LR = 1e-6


def ngram_corner(batch_size: int, epochs: int, decision: str) -> dict:
    """The field's first try for text as a trial: a linear model over the characters' 1-3-grams (the n-gram part,
    models/ngrams.py), learnt beside a one-layer character CNN."""
    return dict(family="conv1d", layers=1, width=64, dropout=0.0, kernel_size=5, pool=1, norm=False, ngrams=3,
                clipnorm=0.0, lr=5e-3, batch_size=batch_size, epochs=epochs, schedule="cosine", weight_decay=1e-6,
                imbalance="none", decision=decision)


HAR_CORNER = minirocket_corner(batch_size=64, epochs=20)

HAR = TaskEntry(
    name="har", kind=SERIES, load=har.load_har, folds=har.FOLDS, metric="accuracy", time_limit=40 * 60,
    # Width 64 at most: wider models cost several times more per trial for the same validation value.
    space=Space(families=("rnn", "lstm", "gru", "conv1d", "minirocket", "dense", "linear"), max_layers=3,
                max_width=64, frontends=(0, 32, 64), pools=(1, 2, 4), norms=(False, True), epochs=(10, 20),
                imbalance=("none", "class_weights", "oversample"),  # HAR's classes are near balanced
                overrides={"minirocket": RANDOM_KERNELS}),
    standard=HAR_CORNER,
    warm_starts=(
        HAR_CORNER,
        # Known-good conv1ds from earlier studies' validation values (bench/README.md, "Warm starts").
        dict(family="conv1d", layers=3, width=64, dropout=0.09, kernel_size=3, pool=2, norm=True, clipnorm=1.0,
             lr=1.4e-3, batch_size=32, epochs=10, schedule="constant", weight_decay=2e-3,
             imbalance="class_weights", decision="argmax"),
        dict(family="conv1d", layers=3, width=64, dropout=0.3, kernel_size=7, pool=2, norm=True, clipnorm=0.0,
             lr=2e-3, batch_size=64, epochs=20, schedule="cosine", weight_decay=1e-4,
             imbalance="none", decision="argmax"),
        dict(family="conv1d", layers=3, width=41, dropout=0.27, kernel_size=5, pool=2, norm=True, clipnorm=0.0,
             lr=2.9e-3, batch_size=64, epochs=20, schedule="cosine", weight_decay=8e-3,
             imbalance="none", decision="argmax"),
    ),
    held_out="subjects",
    meant_for="Labelling 2.56 s windows (128 samples at 50 Hz) of waist-worn smartphone accelerometer and gyroscope "
              "signals with one of 6 activities, recorded and filtered as in UCI HAR (Samsung Galaxy S II; "
              "accelerations in g, angular velocity in rad/s, body/gravity split by the same Butterworth filter).",
    not_meant_for=(
        "Other sensor placements, devices, sampling rates or units: the standardisation below assumes UCI HAR's.",
        "Activities outside the 6 (transitions, running, falls): every window gets one of the 6.",
        "Medical, safety or insurance decisions about a person; people unlike the 30 volunteers (aged 19-48)."),
    example="'UCI HAR Dataset/test/Inertial Signals'",
    notes={"input": "window", "label": "activity"},  # what predict's output calls an input and a class
)

NAMES = TaskEntry(
    name="names", kind=TEXT, load=names.load_names, folds=names.FOLDS,
    # The harmonic mean of accuracy and balanced accuracy, high only when both are: balanced accuracy alone
    # recommended models that gave up most of their accuracy (bench/README.md, "Metric").
    metric="acc_bal_hmean", time_limit=26 * 60,
    space=Space(families=("rnn", "lstm", "gru", "conv1d"), max_layers=2, max_width=96, frontends=(0, 64),
                ngrams=(0, 3, 5), epochs=(10,),
                imbalance=("none", "class_weights", "oversample", "logit_adjust"),
                # Logit adjustment both ways: in the loss (imbalance) and as a decision rule, tau chosen on validation.
                decisions=("argmax", "logit_adjust")),
    warm_starts=(
        dict(family="gru", layers=2, width=96, dropout=0.2, bidirectional=True, frontend=0, ngrams=0, clipnorm=0.0,
             lr=2e-3, batch_size=32, epochs=10, schedule="cosine", weight_decay=1e-6,
             imbalance="none", decision="logit_adjust"),
        dict(family="conv1d", layers=1, width=64, dropout=0.02, kernel_size=5, pool=1, norm=False, ngrams=3,
             clipnorm=4.0, lr=5e-3, batch_size=64, epochs=10, schedule="cosine", weight_decay=2e-6,
             imbalance="none", decision="logit_adjust"),
    ),
    held_out="surnames",
    meant_for="Guessing which of the 18 languages of the PyTorch tutorial data a surname written in Latin letters "
              "comes from, as a ranked list of candidates (the probabilities matter more than the first guess).",
    not_meant_for=(
        "A person's nationality, ethnicity or origin: the label is the language list a surname appeared in, "
        "not a fact about anyone who bears it.",
        "Languages outside the 18 (every input gets one of them), given names, or scripts other than Latin "
        "(their characters fall into the unknown-character slot).",
        "Balanced use without reading the per-class figures: the training data is dominated by Russian and "
        "English, and some languages have fewer than 100 distinct training surnames."),
    example="Nakamura \"O'Neill\" Schmidt",
    notes={"input": "surname", "label": "language"},
)

REGISTRY = {entry.name: entry for entry in (HAR, NAMES)}


def is_file_task(task: Task) -> bool:
    """A task read from a user's file (data.load_file records how), not a registered one."""
    return "file" in task.info


def entry_of(task: Task) -> TaskEntry:
    """The registry's entry for a registered task; for a user's file, an entry sized to its data."""
    if not is_file_task(task) and task.name in REGISTRY:
        return REGISTRY[task.name]
    return for_data(task)


def standard_of(task: Task) -> TrialSpec | None:
    """The task's first try (its entry's `standard`) as a configuration, or None."""
    standard = entry_of(task).standard
    return TrialSpec(**standard) if standard else None


def epochs_for(series: int, least: int = 20) -> tuple[int, int]:
    """Two epoch budgets giving about 3,000 examples seen at the longer one, between `least` and 200 epochs:
    a 40-series set trains for 40 or 80 short epochs, a 7,000-window set for 10 or 20."""
    longest = min(200, max(least, int(round(3_000 / max(series, 1), -1))))
    return longest // 2, longest


def batch_sizes_for(series: int) -> tuple[int, ...]:
    """Batch sizes of at most a quarter of the training set (at least 8), four at most."""
    sizes = [b for b in (8, 16, 32, 64, 128, 256) if b <= max(8, series // 4)]
    return tuple(sizes[-4:])


def for_data(task: Task) -> TaskEntry:
    """An entry for data nobody has configured: the space and epochs follow its size; its one warm start is the
    field's first try, MiniRocket's corner for series and the character n-gram corner for text (no configuration
    found on other data)."""
    counts = [c for c in task.train.class_counts(task.num_classes) if c > 0]
    imbalanced = max(counts) > 3 * min(counts)
    kind = task.info.get("kind", SERIES)
    n = len(task.train)
    if kind == TEXT:
        # Strings are short and the n-gram part learns in a few passes: half the epochs of series, one layer.
        epochs = epochs_for(n, least=10)
        space = Space(families=("conv1d", "gru"), max_layers=1, max_width=64, ngrams=(0, 3, 5),
                      epochs=epochs, batch_sizes=batch_sizes_for(n),
                      imbalance=("none", "class_weights", "oversample", "logit_adjust"),
                      decisions=("argmax", "logit_adjust") if imbalanced else ("argmax",))
    else:
        # Recurrences step through every time step: over long series only behind a pooling conv front-end.
        long = task.seq_len > 100
        # MiniRocket's ridge head as the head's start (models/minirocket.py), also for the refit on train +
        # validation: its learning rates then start at one that keeps it, and so does its corner.
        ridge_start = n + len(task.val) <= RIDGE_MOST
        epochs = epochs_for(n)
        minirocket = {**RANDOM_KERNELS, "epochs": epochs, **({"lrs": (RIDGE_LR, 1e-2)} if ridge_start else {})}
        space = Space(families=("conv1d", "minirocket", "gru", "dense", "linear"), max_layers=3, max_width=64,
                      frontends=(32, 64) if long else (0, 32), pools=(2, 4) if long else (1, 2),
                      norms=(False, True), epochs=epochs, batch_sizes=batch_sizes_for(n),
                      imbalance=("none", "class_weights", "oversample"),
                      decisions=("argmax", "logit_adjust") if imbalanced else ("argmax",),
                      overrides={"minirocket": minirocket})
    batch = min(space.batch_sizes, key=lambda b: abs(b - 64))  # HAR's and names': enough steps in few epochs
    warm_starts = (ngram_corner(batch, epochs[0], space.decisions[-1]) if kind == TEXT else
                   minirocket_corner(batch_size=batch, epochs=epochs[-1], lr=RIDGE_LR if ridge_start else CORNER_LR),)
    unit = "strings" if kind == TEXT else "series"
    return TaskEntry(
        name=task.name, kind=kind, load=load_file, folds=FOLDS, metric="acc_bal_hmean" if imbalanced else "accuracy",
        time_limit=FILE_TIME_LIMIT, space=space, warm_starts=warm_starts, standard=warm_starts[0],
        final_seeds=defaults.LARGE_FILE_SEEDS if n > defaults.LARGE_FILE else defaults.FINAL_SEEDS,
        held_out=task.info.get("group_noun", "groups"),
        meant_for=f"Labelling {unit} like those of `{task.info.get('source', task.name)}` with one of its "
                  f"{task.num_classes} classes.",
        not_meant_for=(f"{unit.capitalize()} recorded or written differently from the training data: the model "
                       "has seen only its training split.",
                       "Classes outside the training data's: every input gets one of them."),
        example="INPUT")


def load(name: str, source=None, fold: int = 0) -> Task:
    """A task's data. source: a registered task's path (None: its default place), or for a user's file the
    options it was read with (a dict, as data.load_file takes them and a study records them)."""
    if isinstance(source, dict):
        return load_file(**source, fold=fold)  # a user's file, read with the options its study recorded
    if name not in REGISTRY:
        raise DataError(f"task must be one of {sorted(REGISTRY)} (or a file: python -m search.fit PATH), got {name!r}")
    return REGISTRY[name].load(source, fold=fold)


def folds(task: Task) -> int:
    """How many validation folds a task's loader offers (fold 0 is the search's split)."""
    return entry_of(task).folds


class Folds:
    """A task's validation folds, each loaded once when first asked for (fold 0 is `task`); source: where
    the other folds are loaded from. refit=True: the fold with its validation rows in training (Task.refit)."""

    def __init__(self, task: Task, source=None):
        self.source, self.tasks = source, {(0, False): task}

    def __call__(self, fold: int, refit: bool = False) -> Task:
        if (fold, refit) not in self.tasks:
            self.tasks[fold, refit] = self(fold).refit() if refit else \
                load(self.tasks[0, False].name, self.source, fold=fold)
        return self.tasks[fold, refit]
