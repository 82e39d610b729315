"""The model.json schema: a model folder is untrusted input, checked field by field before anything is used."""
from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from models import FAMILIES
from . import defaults
from .tasks import REGISTRY
from .train import TrialSpec

FORMAT = 2
# Format 1 (HAR and names only, no `kind`) is still read, except with an n-gram part: its n-grams were hashed
# the way models/ngrams.py no longer does, so its rows would be read wrongly.
LEGACY = 1
MAX_STEPS = 1_000_000
TAU_LIMIT = 10.0  # |tau| beyond this makes tau * log prior swamp every probability (validation picks 0-2)
# Far above any search space, low enough that building the model (on the meta device, to size it) is instant.
SPEC_LIMITS = {"layers": 100, "width": 100_000, "kernel_size": 1_000, "pool": 1_000, "frontend": 100_000,
               "ngrams": 8, "batch_size": 1_000_000, "epochs": 100_000}
Finite = Annotated[float, Field(allow_inf_nan=False)]
# Standardisation runs in float32: a mean or std outside these bounds makes finite inputs inf or NaN.
Mean = Annotated[float, Field(allow_inf_nan=False, ge=-1e12, le=1e12)]
Std = Annotated[float, Field(allow_inf_nan=False, ge=1e-12, le=1e12)]
Text = Annotated[str, Field(min_length=1, max_length=1000)]


class ModelError(ValueError):
    """A missing, corrupt or incompatible model folder: one line naming the folder or file."""


class Strict(BaseModel):
    # strict: the string "1" is not the number 1, nor true an int; extra fields (a writer's notes) are kept
    model_config = ConfigDict(strict=True, extra="allow", frozen=True)


class Weight(Strict):
    seed: int
    file: Text
    bytes: int = Field(ge=0)
    sha256: str = Field(pattern="^[0-9a-f]{64}$")

    @field_validator("file")
    @classmethod
    def inside(cls, file: str) -> str:
        """A relative path with no '..': the folder's own file, whatever a hand-edited card claims."""
        path = PurePosixPath(file)
        if path.is_absolute() or ".." in path.parts or "\\" in file or ":" in file:
            raise ValueError(f"must be a path inside the model folder, like weights/seed-100.pt, got {file!r}")
        return file


class Decision(Strict):
    tau: Finite = Field(ge=-TAU_LIMIT, le=TAU_LIMIT)
    log_prior: list[Annotated[float, Field(allow_inf_nan=False, ge=-100, le=0)]]  # a class frequency >= e^-100
    prior: list[Annotated[float, Field(allow_inf_nan=False, ge=0, le=1)]] | None = None


class Exact(Strict):
    # a preprocessing record is read field by field: a field this version does not know is refused, not ignored
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


class TextPreprocessing(Exact):
    """Text in: NFKD-normalised characters one-hot over the training alphabet (data/text.py)."""
    kind: Literal["text"]
    alphabet: str = Field(min_length=1, max_length=10_000)
    unknown_index: int = Field(ge=0, le=0)  # the encoding's slot for characters outside the alphabet
    seq_len: int = Field(ge=1, le=10_000)
    input_size: int
    input: Text | None = None  # notes for people
    normalisation: Text | None = None
    encoding: Text | None = None

    def problems(self):
        yield "alphabet", len(set(self.alphabet)) == len(self.alphabet), "a character appears twice", self.alphabet
        yield "input_size", self.input_size == len(self.alphabet) + 1, \
            f"must be len(alphabet) + 1 = {len(self.alphabet) + 1}", self.input_size


class SeriesPreprocessing(Exact):
    """Numbers in: (steps, channels) series standardised per channel with the training split's statistics,
    zero-padded after their length (masked) and cut at seq_len (data/series.py, data/har.py)."""
    kind: Literal["series"]
    channels: list[Text] = Field(min_length=1, max_length=10_000)
    steps: int | None = Field(default=None, ge=1, le=MAX_STEPS)  # every input has exactly this many steps
    seq_len: int = Field(ge=1, le=MAX_STEPS)  # the longest training series: longer inputs are cut here
    input_size: int
    mean: list[Mean]
    std: list[Std]
    input: Text | None = None  # notes for people
    standardisation: Text | None = None
    padding: Text | None = None
    csv_layout: Text | None = None

    def problems(self):
        channels = len(self.channels)
        yield "channels", len(set(self.channels)) == channels, "a channel name appears twice", self.channels
        yield "input_size", self.input_size == channels, f"must be {channels} (one per channel)", self.input_size
        for name in ("mean", "std"):
            values = getattr(self, name)
            yield name, len(values) == channels, f"must hold {channels} numbers (one per channel)", len(values)
        yield "steps", self.steps in (None, self.seq_len), f"must be seq_len ({self.seq_len}) or null", self.steps


# Each kind's input preparation, picked by the preprocessing's kind: a kind without an entry has no predict input.
PREPROCESSING: dict[str, type[Exact]] = {"text": TextPreprocessing, "series": SeriesPreprocessing}


def legacy_kind(task: str, where: Path) -> str:
    """A format-1 folder's kind (format 1 wrote none): its task's entry's; format 1 knew registered tasks only."""
    if task not in REGISTRY:
        raise ModelError(f"{where}: field task: a format-{LEGACY} folder's task must be one of {sorted(REGISTRY)}, "
                         f"got {task!r}")
    return REGISTRY[task].kind


class Nouns(Exact):
    input: Text  # what one input is called (surname, window, series, text)
    label: Text  # what a class is called (language, activity, class)


class Card(Strict):
    """model.json, as this version reads it (format 2, or 1); metrics, data, source and intended_use are
    free-form notes."""
    format: int
    task: Text  # the task's or the study's name; its preprocessing's kind decides how inputs are read
    class_names: list[Text] = Field(min_length=2, max_length=10_000)
    spec: dict[str, Any]
    seeds: list[int] = Field(min_length=1, max_length=defaults.MAX_FINAL_SEEDS)
    decision: Decision
    preprocessing: dict[str, Any]
    weights: list[Weight]
    metrics: dict[str, Any] | None = None
    data: dict[str, Any] | None = None
    source: dict[str, Any] | None = None
    nouns: Nouns | None = None  # format 1 wrote none: the task's registry entry, else the kind's, name them
    intended_use: dict[str, Any] | None = None

    @field_validator("spec")
    @classmethod
    def trial_spec(cls, spec: dict) -> dict:
        if not isinstance(spec.get("family"), str) or spec["family"] not in FAMILIES:
            raise ValueError(f"family must be one of {sorted(FAMILIES)}, got {spec.get('family')!r}")
        try:
            built = TrialSpec(**spec)
        except TypeError as exc:  # an unknown field name
            raise ValueError(str(exc).replace("__init__() ", "")) from None
        for name, limit in SPEC_LIMITS.items():
            if getattr(built, name) > limit:
                raise ValueError(f"{name} must be at most {limit:,}, got {getattr(built, name)!r}")
        return spec

    def problems(self):
        classes = len(self.class_names)
        yield "class_names", len(set(self.class_names)) == classes, "a name appears twice", self.class_names
        yield "seeds", len(set(self.seeds)) == len(self.seeds), "must be distinct", self.seeds
        for name in ("log_prior", "prior"):
            values = getattr(self.decision, name)
            yield f"decision.{name}", values is None or len(values) == classes, \
                f"must hold one number per class ({classes})", len(values or [])
        yield "weights", [w.seed for w in self.weights] == self.seeds, \
            f"must list one file per seed, in the order of seeds {self.seeds}", [w.seed for w in self.weights]


def describe(error: ValidationError, prefix: str = "") -> str:
    """The first failure as 'field a.b.c: what is wrong, got VALUE', and how many more there are."""
    first = error.errors(include_url=False)[0]
    loc = ".".join(str(part) for part in (prefix, *first["loc"]) if part != "")
    message = first["msg"].removeprefix("Value error, ")
    shown = repr(first.get("input"))
    got = "" if first["type"] == "value_error" else f", got {shown[:80] + '...' if len(shown) > 80 else shown}"
    more = error.error_count() - 1
    return f"field {loc or '(top level)'}: {message}{got}" + (f" (and {more} more problem(s))" if more else "")


def validate_card(raw: Any, where: Path, advice: str) -> tuple[Card, Exact]:
    """The validated card and its preprocessing (chosen by its kind); a ModelError naming the file and field
    otherwise. advice: how to produce the folder again, quoted when the format is another version's."""
    if not isinstance(raw, dict):
        raise ModelError(f"{where}: corrupt (expected a JSON object, got {type(raw).__name__})")
    version = raw.get("format")
    if type(version) is not int:  # noqa: E721  (True is an int to isinstance)
        raise ModelError(f"{where}: field format: must be the integer {FORMAT} (the model format), "
                         f"got {version!r} ({type(version).__name__})")
    if version not in (FORMAT, LEGACY):
        raise ModelError(f"{where}: model format {version}, but this version reads format {FORMAT} (or {LEGACY}); "
                         f"export the model again{advice}")
    try:
        card = Card.model_validate(raw)
    except ValidationError as exc:
        raise ModelError(f"{where}: {describe(exc)}") from None
    recorded = dict(card.preprocessing)
    if version == LEGACY:
        recorded = {"kind": legacy_kind(card.task, where), **recorded}
    kind = recorded.get("kind")
    if not isinstance(kind, str) or kind not in PREPROCESSING:
        raise ModelError(f"{where}: field preprocessing.kind: must be one of {sorted(PREPROCESSING)}, got {kind!r}")
    try:
        pre = PREPROCESSING[kind].model_validate(recorded)
    except ValidationError as exc:
        raise ModelError(f"{where}: {describe(exc, 'preprocessing')}") from None
    for prefix, part in (("", card), ("preprocessing.", pre)):
        for field, ok, rule, value in part.problems():
            if not ok:
                raise ModelError(f"{where}: field {prefix}{field}: {rule}, got {value!r}")
    ngrams = card.spec.get("ngrams", 0)
    if version == LEGACY and ngrams:
        raise ModelError(f"{where}: model format {LEGACY} with an n-gram part (spec.ngrams {ngrams}), whose n-grams "
                         f"were hashed as this version no longer does: it would predict wrongly; export the model "
                         f"again{advice}")
    return card, pre
