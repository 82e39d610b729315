"""Fault injection: kill a study's processes at random moments and count what survives.

    python bench/faults.py [--kills 20] [--seed 0] [--data PATH] [--workers 2]

Runs `python -m search.har` on a grid (dense models, 2 seeds x 4 epochs, 80 points, so that every point must end up
run) against a temporary SQLite file, with the default heartbeat (30 s), and kills it `--kills`
times, cycling through three faults:
- SIGKILL of every process right after a trial is created (the instant before its first heartbeat);
- SIGKILL of one worker at a random moment, then Ctrl-C (SIGINT to the process group);
- SIGKILL of the parent at a random moment (its workers must stop by themselves).
Each next run starts at once, as a user would re-run the command. Then one last run finishes the grid.

Prints trials finished, failed, retried (grid points that failed and were run again), stuck (a
trial RUNNING whose process is gone, seen once the next run has started, or left at the end) and
lost (a trial seen finished before a kill and not finished at the end, or a grid point never run).
Stuck and lost must be 0.
"""
from __future__ import annotations

import argparse
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED_HAR = REPO.parent / "shared" / "data" / "UCI_HAR_Dataset.zip"
GRID = ["--family", "dense", "--epochs", "4", "--seeds", "2", "--batch-size", "32", "--pruner", "none",
        "--grid", "lr=0.0005,0.001,0.0015,0.002,0.003,0.004,0.005,0.006,0.008,0.01",
        "--grid", "weight_decay=0.0,0.0001,0.0003,0.001", "--grid", "width=16,32"]
POINTS = 10 * 4 * 2
FAULTS = ("right after a trial's creation", "one worker, then Ctrl-C", "the parent")


def query(db: Path, sql: str) -> list[tuple]:
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30) as connection:
            return connection.execute(sql).fetchall()
    except sqlite3.OperationalError:
        return []  # no file or no tables yet


def trials(db: Path) -> dict[int, tuple[str, str | None]]:
    """number -> (state, worker host:pid)."""
    rows = query(db, "SELECT t.number, t.state, a.value_json FROM trials t LEFT JOIN trial_system_attributes a "
                     "ON a.trial_id = t.trial_id AND a.key = 'worker'")
    return {number: (state, worker.strip('"') if worker else None) for number, state, worker in rows}


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


def stuck(db: Path, earlier: set[int]) -> list[int]:
    """Trials of earlier runs still RUNNING (the new run has started: it must have failed them)."""
    return [n for n, (state, _) in trials(db).items() if state == "RUNNING" and n in earlier]


def group(pgid: int) -> list[int]:
    found = subprocess.run(["pgrep", "-g", str(pgid)], capture_output=True, text=True).stdout.split()
    return [int(p) for p in found]


def wait_group_gone(pgid: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while group(pgid) and time.monotonic() < deadline:
        time.sleep(0.05)
    for pid in group(pgid):  # should not happen: say so in the figures by leaving its trial to be counted
        print(f"warning: process {pid} still alive {timeout:.0f} s after the fault; killing it", file=sys.stderr)
        os.kill(pid, signal.SIGKILL)


def start(command: list[str], log) -> subprocess.Popen:
    return subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=log, start_new_session=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--kills", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--data", default=os.environ.get("HAR_DATA") or (str(SHARED_HAR) if SHARED_HAR.exists() else None))
    args = p.parse_args()
    rng = random.Random(args.seed)
    folder = Path(tempfile.mkdtemp(prefix="faults-"))
    db = folder / "studies.db"
    command = [sys.executable, "-m", "search.har", "--storage", f"sqlite:///{db}", "--workers", str(args.workers),
               *GRID] + (["--data", args.data] if args.data else [])
    seen_finished: set[int] = set()
    stuck_at_start: set[int] = set()
    stops, quiet = [], True
    log_path = folder / "stderr.txt"
    started = time.monotonic()
    with open(log_path, "w") as log:
        for kill in range(args.kills):
            fault = FAULTS[kill % len(FAULTS)]
            before = {n for n, (state, _) in trials(db).items() if state != "WAITING"}
            earlier = {n for n, (state, _) in trials(db).items() if state == "RUNNING"}
            process = start(command, log)
            # Once this run has started a trial (its startup is over), no dead run's trial may be RUNNING.
            deadline = time.monotonic() + 120
            while (not {n for n, (state, _) in trials(db).items() if state == "RUNNING"} - before
                   and process.poll() is None and time.monotonic() < deadline):
                time.sleep(0.002)
            if process.poll() is not None:
                print(f"the grid was done after {kill} kills; no more faults", file=sys.stderr)
                break
            stuck_at_start.update(stuck(db, earlier))
            if fault == FAULTS[0]:
                os.killpg(process.pid, signal.SIGKILL)  # within milliseconds of the trial's start
            else:
                time.sleep(rng.uniform(0.0, 4.0))
                seen_finished |= {n for n, (state, _) in trials(db).items() if state in ("COMPLETE", "PRUNED")}
                members = [pid for pid in group(process.pid) if pid != process.pid]
                workers = [pid for pid in members if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()]
                if fault == FAULTS[1] and workers:
                    os.kill(rng.choice(workers), signal.SIGKILL)
                    time.sleep(rng.uniform(0.0, 1.0))
                    size = log.tell()
                    signalled = time.monotonic()
                    os.killpg(process.pid, signal.SIGINT)
                    process.wait()
                    wait_group_gone(process.pid)
                    stops.append(time.monotonic() - signalled)
                    log.flush()
                    said = log_path.read_text()[size:]
                    quiet &= "Traceback" not in said and said.count("\n") <= 1
                else:
                    os.kill(process.pid, signal.SIGKILL)
            process.wait()
            wait_group_gone(process.pid)
            seen_finished |= {n for n, (state, _) in trials(db).items() if state in ("COMPLETE", "PRUNED")}
        final = subprocess.run(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=log)
    end = trials(db)
    states = [state for state, _ in end.values()]
    points = {}
    for number, params in query(db, "SELECT t.number, group_concat(p.param_name || '=' || p.param_value, ',') "
                                    "FROM trials t JOIN trial_params p ON p.trial_id = t.trial_id GROUP BY t.number"):
        points.setdefault(tuple(sorted(params.split(","))), []).append(end[number][0])
    done = [key for key, found in points.items() if {"COMPLETE", "PRUNED"} & set(found)]
    retried = [key for key, found in points.items() if "FAIL" in found and {"COMPLETE", "PRUNED"} & set(found)]
    lost = [n for n in seen_finished if end.get(n, ("gone",))[0] not in ("COMPLETE", "PRUNED")]
    lost += [None] * (POINTS - len(done))
    left_running = [n for n, (state, _) in end.items() if state == "RUNNING"]
    print(f"{args.kills} kills ({', '.join(f'{sum(1 for k in range(args.kills) if k % 3 == i)} {f}' for i, f in enumerate(FAULTS))}), "
          f"{args.workers} workers, heartbeat 30 s, {time.monotonic() - started:.0f} s in all; final run exit {final.returncode}")
    print(f"trials: {len(end)} ({states.count('COMPLETE') + states.count('PRUNED')} finished, "
          f"{states.count('FAIL')} failed); grid points done {len(done)} of {POINTS}")
    print(f"finished {states.count('COMPLETE') + states.count('PRUNED')}, failed {states.count('FAIL')}, "
          f"retried {len(retried)}, stuck {len(stuck_at_start | set(left_running))}, lost {len(lost)}")
    if stops:
        print(f"Ctrl-C after a worker was killed: stopped in {min(stops):.2f}-{max(stops):.2f} s "
              f"({len(stops)} runs), one line and no traceback each: {'yes' if quiet else 'NO'}")
    print(f"files kept in {folder}")


if __name__ == "__main__":
    main()
