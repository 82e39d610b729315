"""`python -m search.smoke`: every family on both real tasks, one line each; bad input is one error line."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from models import FAMILIES, ModelSpec, param_count

ROOT = Path(__file__).resolve().parents[1]
LINE = re.compile(r"^(?P<task>har|names)\s+(?P<family>\w+)\s+params\s+(?P<params>[\d,]+)\s+seconds\s+[\d.]+"
                  r"\s+val accuracy (?P<accuracy>[\d.]+)\s+balanced accuracy (?P<balanced>[\d.]+)$")


def smoke(*args: str, cache: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    # One intra-op thread: the two cores are shared with other work (see conftest.one_torch_thread).
    env = os.environ | {"DATA_CACHE": str(cache), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "search.smoke", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
def test_every_family_on_both_real_tasks(har_task, tiny_har_dir, small_names_task, small_names_dir, tmp_path):
    # The tiny HAR folder (every 50th window): the command's whole path on real windows in seconds.
    done = smoke("--har", str(tiny_har_dir), "--names", str(small_names_dir), "--epochs", "3", cache=tmp_path)
    print(done.stdout)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    found = {(m["task"], m["family"]): m for m in map(LINE.match, lines) if m}
    assert len(found) == len(lines) == 2 * len(FAMILIES)
    assert set(found) == {(task, family) for task in ("har", "names") for family in FAMILIES}
    for (task_name, family), match in found.items():
        task = har_task if task_name == "har" else small_names_task
        spec = ModelSpec(family)
        assert int(match["params"].replace(",", "")) == param_count(spec, task.input_size, task.num_classes,
                                                                     task.seq_len)
        assert 0 <= float(match["accuracy"]) <= 1 and 0 <= float(match["balanced"]) <= 1
    # Three epochs on every 50th window lift the best HAR family far above chance (1/6).
    assert max(float(found[("har", family)]["accuracy"]) for family in FAMILIES) > 0.4


@pytest.mark.slow
def test_missing_data_path_is_one_line_and_exit_2(tmp_path, tiny_har_dir):
    # HAR loads; the surnames path does not exist: nothing is trained.
    done = smoke("--har", str(tiny_har_dir), "--names", str(tmp_path / "no-such-names"), cache=tmp_path, timeout=300)
    assert done.returncode == 2
    assert done.stdout == ""
    assert len(done.stderr.splitlines()) == 1, done.stderr
    assert re.match(r"^error: --data .*no-such-names: no such file or folder$", done.stderr), done.stderr


@pytest.mark.parametrize("args, message", [
    (["--har", "{tmp}/no-such-har.zip"], r"^error: --data .*no-such-har\.zip: no such file or folder$"),
    (["--har", "{tmp}/not-a-zip.zip"], r"^error: .*not-a-zip\.zip: not a valid zip archive"),
    (["--epochs", "0"], r"^error: epochs must be an int >= 1, got 0$"),
], ids=["no-such-path", "not-a-zip", "epochs"])
@pytest.mark.slow
def test_bad_arguments_in_process(args, message, tmp_path, capsys):
    from search import smoke as smoke_module

    (tmp_path / "not-a-zip.zip").write_text("hello")
    with pytest.raises(SystemExit) as exit_:
        smoke_module.main([arg.format(tmp=tmp_path) for arg in args])
    assert exit_.value.code == 2
    out, err = capsys.readouterr()
    assert out == "" and len(err.splitlines()) == 1
    assert re.match(message, err), err
