"""bench/families.py: every configuration is a valid spec of a registered family; bad arguments exit 2 in one
line; a short run on the real HAR data prints a row per configuration."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from models import FAMILIES

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

import families  # noqa: E402


def run(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "bench/families.py", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


def test_configurations_compare_every_new_family_with_conv1d():
    found = {spec.family for spec in families.CONFIGURATIONS.values()}
    assert found == {"conv1d", "fcn", "resnet", "inception", "minirocket"} <= set(FAMILIES)
    assert any(spec.augment > 0 for spec in families.CONFIGURATIONS.values())


@pytest.mark.parametrize("args, message", [
    (["--only", "conv1d,transformer"], "--only: unknown configuration(s) ['transformer']"),
    (["--budget", "0"], "--budget must be > 0 and --threads an int >= 1, got 0.0 and 1"),
])
@pytest.mark.slow
def test_bad_arguments_exit_2_with_one_line(args, message, tiny_har_dir, cli):
    done = cli("families", *args, "--data", str(tiny_har_dir))  # bench/families.py's main() in this process
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [f"error: {message}; known: {list(families.CONFIGURATIONS)}"
                                                if "--only" in message else f"error: {message}"]


@pytest.mark.slow
def test_a_short_run_prints_one_row_per_configuration(tiny_har_dir):
    # Enough seconds for the head's epochs on busy cores: the first epoch computes the features, the rest are cheap.
    done = run("--budget", "5", "--only", "fcn 32,minirocket 32", "--no-aeon", "--data", str(tiny_har_dir))
    assert done.returncode == 0, done.stderr
    rows = {m[1]: m for m in re.finditer(r"^(fcn 32|minirocket 32) +(\d+) +(\d+) +([\d.]+) +([\d.]+)  (0\.\d{4})",
                                         done.stdout, flags=re.M)}
    assert set(rows) == {"fcn 32", "minirocket 32"}, done.stdout
    assert int(rows["minirocket 32"][2]) == 84 * 32 * 6 + 6
    assert all(int(m[3]) >= 1 for m in rows.values())  # one epoch at least, whatever the budget
    # The random-kernel head learns the tiny folder's windows (every 50th) within its second: far above chance.
    assert float(rows["minirocket 32"][6]) > 0.5
