"""The model.json schema: a model folder is untrusted input, checked field by field before anything is used."""
from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from data.har import CHANNELS, STEPS
from models import FAMILIES
from . import defaults
from .train import TrialSpec

FORMAT = 1
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


class NamesPreprocessing(Strict):
    alphabet: str = Field(min_length=1, max_length=10_000)
    unknown_index: int = Field(ge=0, le=0)  # the encoding's slot for characters outside the alphabet
    seq_len: int = Field(ge=1, le=10_000)
    input_size: int

    def problems(self):
        yield "alphabet", len(set(self.alphabet)) == len(self.alphabet), "a character appears twice", self.alphabet
        yield "input_size", self.input_size == len(self.alphabet) + 1, \
            f"must be len(alphabet) + 1 = {len(self.alphabet) + 1}", self.input_size


class HarPreprocessing(Strict):
    channels: list[str]
    steps: int
    seq_len: int
    input_size: int
    mean: list[Mean]
    std: list[Std]

    def problems(self):
        yield "channels", self.channels == CHANNELS, f"must be {CHANNELS} (the order this version reads)", self.channels
        for name in ("steps", "seq_len"):
            yield name, getattr(self, name) == STEPS, f"must be {STEPS} (samples per window)", getattr(self, name)
        yield "input_size", self.input_size == len(CHANNELS), f"must be {len(CHANNELS)} (one per channel)", \
            self.input_size
        for name in ("mean", "std"):
            values = getattr(self, name)
            yield name, len(values) == len(CHANNELS), f"must hold {len(CHANNELS)} numbers (one per channel)", \
                len(values)


# Each task's input preparation, picked by the card's task: a task without an entry has no predict input.
PREPROCESSING: dict[str, type[Strict]] = {"names": NamesPreprocessing, "har": HarPreprocessing}


class Card(Strict):
    """model.json, as this version reads it (format 1); metrics, data and source are free-form notes."""
    format: int
    task: str
    class_names: list[Text] = Field(min_length=2, max_length=10_000)
    spec: dict[str, Any]
    seeds: list[int] = Field(min_length=1, max_length=defaults.MAX_FINAL_SEEDS)
    decision: Decision
    preprocessing: dict[str, Any]
    weights: list[Weight]
    metrics: dict[str, Any] | None = None
    data: dict[str, Any] | None = None
    source: dict[str, Any] | None = None

    @field_validator("task")
    @classmethod
    def known_task(cls, task: str) -> str:
        if task not in PREPROCESSING:
            raise ValueError(f"must be one of {sorted(PREPROCESSING)}, got {task!r}")
        return task

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


def validate_card(raw: Any, where: Path, advice: str) -> tuple[Card, Strict]:
    """The validated card and its task's preprocessing; a ModelError naming the file and field otherwise.

    advice: how to produce the folder again, quoted when the format is another version's."""
    if not isinstance(raw, dict):
        raise ModelError(f"{where}: corrupt (expected a JSON object, got {type(raw).__name__})")
    version = raw.get("format")
    if type(version) is not int:  # noqa: E721  (True is an int to isinstance)
        raise ModelError(f"{where}: field format: must be the integer {FORMAT} (the model format), "
                         f"got {version!r} ({type(version).__name__})")
    if version != FORMAT:
        raise ModelError(f"{where}: model format {version}, but this version reads format {FORMAT}; "
                         f"export the model again{advice}")
    try:
        card = Card.model_validate(raw)
    except ValidationError as exc:
        raise ModelError(f"{where}: {describe(exc)}") from None
    try:
        pre = PREPROCESSING[card.task].model_validate(card.preprocessing)
    except ValidationError as exc:
        raise ModelError(f"{where}: {describe(exc, 'preprocessing')}") from None
    for prefix, part in (("", card), ("preprocessing.", pre)):
        for field, ok, rule, value in part.problems():
            if not ok:
                raise ModelError(f"{where}: field {prefix}{field}: {rule}, got {value!r}")
    return card, pre
