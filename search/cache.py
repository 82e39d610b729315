"""One JSON cache file of results: reused only when its stamp matches, rewritten whole after each new result."""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path

from data import write_text

from .trialspec import TrialSpec


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
