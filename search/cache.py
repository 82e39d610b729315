"""Fingerprinted JSON caches of results: the code fingerprint, an entry's key, and the cache file itself."""
from __future__ import annotations

import ast
import hashlib
import json
from dataclasses import asdict
from pathlib import Path

from data import write_text

from .trialspec import TrialSpec

ROOT = Path(__file__).resolve().parents[1]
# The code that decides what a final evaluation trains and measures (the data loaders, the models, the loop).
TRAINING_CODE = ["data/*.py", "models/*.py", "search/augment.py", "search/batching.py", "search/decision.py",
                 "search/evaluate.py", "search/metrics.py", "search/pool.py", "search/runs.py", "search/stacked.py",
                 "search/train.py", "search/trialspec.py"]
BASELINE_CODE = [*TRAINING_CODE, "search/baselines.py"]  # baselines.json: the metrics come from evaluate.py


def code_fingerprint(patterns: list[str] = TRAINING_CODE) -> str:
    """sha256 over what the code that decides a final evaluation (or a baseline) does: each file's syntax tree.

    Not the files' text: comments, docstrings and layout change no result, so rewording them keeps the caches."""
    digest = hashlib.sha256()
    for pattern in patterns:
        for path in sorted(ROOT.glob(pattern)):
            digest.update(path.relative_to(ROOT).as_posix().encode() + b"\0" + code_of(path).encode())
    return digest.hexdigest()[:16]


def code_of(path: Path) -> str:
    """A Python file's syntax tree without its docstrings, as text (no comments, no line numbers)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
                node.body = node.body[1:] or [ast.Pass()]
    return ast.dump(tree)


class JsonCache:
    """A file {**stamp, field: entries}. stamp: what the entries depend on as a whole (a format version, or the
    data, metric and code they were computed from); a file with another stamp is ignored and overwritten.
    Saved after each new entry, so that an interrupted report keeps what it has computed."""

    def __init__(self, path: Path, stamp: dict, field: str, what: str):
        self.path, self.stamp, self.field, self.what = Path(path), stamp, field, what

    def load(self, empty):
        """The saved entries, or `empty` when there is no file or its stamp differs; ValueError if unreadable."""
        if not self.path.exists():
            return empty
        try:
            saved = json.loads(self.path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ValueError(f"{self.path}: unreadable {self.what} ({exc}); delete it to compute it again") from None
        if isinstance(saved, dict) and self.field in saved and all(saved.get(k) == v for k, v in self.stamp.items()):
            return saved[self.field]
        return empty

    def save(self, entries) -> None:
        write_text(self.path, json.dumps({**self.stamp, self.field: entries}, sort_keys=True, indent=1) + "\n")


def cache_key(spec: TrialSpec, seeds: list[int], data: dict, metric: str, fingerprint: str) -> str:
    """An entry's key: the first 16 hex digits of sha256(JSON of spec, seeds, data, metric and code fingerprint)."""
    text = json.dumps({"spec": asdict(spec), "seeds": list(seeds), "data": data, "metric": metric,
                       "fingerprint": fingerprint}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]
