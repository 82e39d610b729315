"""search/workers.py: a study's worker processes end with their parent, even one killed with `kill -9`."""
from __future__ import annotations

import os
import queue
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def children(pid: int) -> list[int]:
    """The processes whose parent is pid (the workers and multiprocessing's resource tracker)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue  # ended meanwhile
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def spawned(pid: int) -> list[int]:
    """The children of pid started by multiprocessing's spawn (the workers)."""
    found = []
    for child in children(pid):
        try:
            if b"--multiprocessing-fork" in Path(f"/proc/{child}/cmdline").read_bytes():
                found.append(child)
        except OSError:
            continue
    return found


def alive(pid: int) -> bool:
    """Running, not a zombie waiting for a reaper (a killed parent's children are reparented)."""
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def wait_for(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(0.02)
    raise AssertionError(f"no {what} within {timeout} s")


@pytest.mark.slow
@pytest.mark.parametrize("moment", ["importing", "training"])
def test_workers_stop_when_their_parent_is_killed(tmp_path, tiny_har_dir, moment):
    log = tmp_path / "stderr.txt"
    args = [sys.executable, "-m", "search.har", "--data", str(tiny_har_dir), "--storage", f"sqlite:///{tmp_path / 's.db'}",
            "--trials", "50", "--workers", "2", "--family", "dense", "--width", "16", "--epochs", "50", "--seeds", "1",
            "--pruner", "none"]
    with open(log, "w") as stderr:
        parent = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=stderr, text=True,
                                  env={**os.environ, "DATA_CACHE": str(tmp_path / "cache")})
    lines = queue.Queue()  # stdout is read to its end, as a terminal would: the workers write to it until they end
    threading.Thread(target=lambda: [lines.put(line) for line in parent.stdout] + [lines.put(None)], daemon=True).start()
    try:
        while (line := lines.get(timeout=300)) is not None:
            if moment == "importing" and line.startswith("2 workers x"):  # printed just before they start
                break
            if moment == "training" and re.match(r"\[w[01]\] trial +\d+ seed 0 epoch \d+/50", line):
                break
        else:
            raise AssertionError(f"the study ended first:\n{log.read_text()[-2000:]}")
        wait_for(lambda: len(spawned(parent.pid)) == 2, 60, "2 workers")
        family = children(parent.pid)  # the workers and multiprocessing's resource tracker
    finally:
        parent.kill()
        parent.wait()
    # Within a second in practice; 10 s here so that a machine busy enough to slow imports does not fail it.
    names = {pid: Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")[-70:] for pid in family}
    wait_for(lambda: not any(alive(p) for p in family), 10,
             f"end of the workers after the parent's kill: {names}, left {[p for p in family if alive(p)]}")
    text = log.read_text()
    assert "leaked semaphore" not in text and "Traceback" not in text, text
