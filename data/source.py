"""Where data comes from: a given path, an environment variable, the cache, then a download."""
from __future__ import annotations

import os
import re
import sys
import urllib.error
import urllib.request
import zipfile
import zlib
from pathlib import Path
from typing import Callable

from .files import atomic_path, process_alive
from .task import DataError

CACHE_DIR = Path(__file__).resolve().parent / "cache"


def cache_dir() -> Path:
    """The git-ignored cache folder; DATA_CACHE overrides it (tests use a temporary one)."""
    return Path(os.environ.get("DATA_CACHE", CACHE_DIR))


# Temporary files of a write: ".<name>.<pid>.part..." (data/files.py) or "<name>.part<pid>..." (older code).
_PART = re.compile(r"^\..+\.(?P<pid>\d+)\.part|\.part(?P<old>\d+)")


def remove_stale_parts(folder: Path) -> None:
    """Delete the temporary files of cache writes whose process was killed (they are never renamed)."""
    if not folder.is_dir():
        return
    for path in folder.iterdir():
        found = _PART.search(path.name)
        if found and path.is_file() and not process_alive(int(found["pid"] or found["old"])):
            path.unlink(missing_ok=True)


def discard_damaged(path: Path, reason: str) -> None:
    """A damaged cache file is named on stderr and removed, so the caller rebuilds it."""
    print(f"warning: {path}: damaged cache file ({reason}); removed, rebuilding it", file=sys.stderr, flush=True)
    path.unlink(missing_ok=True)


def check_zip(path: Path) -> zipfile.ZipFile:
    """Open a zip archive, turning a truncated or corrupt file into one clear line."""
    try:
        archive = zipfile.ZipFile(path)
        bad = archive.testzip()
    except (zipfile.BadZipFile, zlib.error, NotImplementedError, OSError, EOFError) as exc:
        # zlib.error: a damaged deflate stream; NotImplementedError: damaged flag bits in a member header.
        raise DataError(f"{path}: not a valid zip archive (truncated or corrupt: {exc})") from None
    if bad is not None:
        raise DataError(f"{path}: corrupt member {bad!r} in zip archive (CRC check failed)")
    return archive


def download(url: str, dest: Path, validate: Callable[[Path], None], timeout: float = 60) -> Path:
    """Fetch url into dest through a temporary file, renamed only once complete and valid."""
    try:
        with atomic_path(dest) as tmp:
            with urllib.request.urlopen(url, timeout=timeout) as response, open(tmp, "wb") as out:
                expected = response.headers.get("Content-Length")
                size = 0
                while chunk := response.read(1 << 20):
                    out.write(chunk)
                    size += len(chunk)
            if expected is not None and size != int(expected):
                raise DataError(f"{url}: download truncated ({size} of {expected} bytes)")
            validate(tmp)
        return dest
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise DataError(f"{url}: download failed ({exc})") from None


def resolve(path: str | os.PathLike | None, env_var: str, cached_name: str, url_env: str,
            default_url: str, validate: Callable[[Path], None]) -> Path:
    """The data location, in order: path argument, $env_var, cache, download into the cache."""
    if path is not None:
        found = Path(path)
        if not found.exists():
            raise DataError(f"--data {found}: no such file or folder")
        return found
    if os.environ.get(env_var):
        found = Path(os.environ[env_var])
        if not found.exists():
            raise DataError(f"{env_var}={found}: no such file or folder")
        return found
    remove_stale_parts(cache_dir())
    cached = cache_dir() / cached_name
    if cached.exists():
        try:
            zipfile.ZipFile(cached).close()  # cheap: reads the central directory, which a truncated file lacks
            return cached
        except (zipfile.BadZipFile, OSError, EOFError) as exc:
            discard_damaged(cached, f"not a valid zip archive: {exc}")
    url = os.environ.get(url_env, default_url)
    try:
        return download(url, cached, validate)
    except DataError as exc:
        raise DataError(
            f"no data found: pass --data PATH (folder or zip), set {env_var}=PATH, "
            f"or put {cached_name} in {cache_dir()} (download failed: {exc})") from None
