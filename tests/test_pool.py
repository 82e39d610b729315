"""search/pool.py: a report's training, one (configuration, seed) per job in worker processes, costliest first."""
from __future__ import annotations

import operator
import os
import queue
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch

from conftest import HAR_ZIP
from test_workers import alive, children, wait_for
from search.evaluate import Evaluations, evaluate_spec
from search.pool import Pool
from search.train import TrialSpec, train_seeds

pytestmark = pytest.mark.usefixtures("one_torch_thread")
LINEAR = TrialSpec(family="linear", epochs=1, batch_size=256, lr=1e-2)
ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_each_seed_trained_in_a_worker_gives_what_it_gives_in_this_process(har_task):
    found = []
    with Pool("har", str(HAR_ZIP), "cpu", workers=2) as pool:
        pool.train(LINEAR, [7, 8], "linear", then=found.append, test=True, keep_models=True)
        pool.wait()
    [results] = found  # one callback, once both seeds are in, in seed order
    here = train_seeds(LINEAR, har_task, [7, 8], test=True, keep_models=True)
    assert [r.seed for r in results] == [7, 8]
    for remote, local in zip(results, here):
        timings = ("epoch_seconds",)
        assert {k: v for k, v in remote.history.items() if k not in timings} == \
            {k: v for k, v in local.history.items() if k not in timings}
        assert remote.status == local.status == "finished"
        assert torch.allclose(remote.logits["test"], local.logits["test"], atol=1e-5)
        weights = local.model.state_dict()  # they come back as a state dict
        assert set(remote.model) == set(weights) and all(torch.allclose(remote.model[k], weights[k]) for k in weights)


@pytest.mark.slow
def test_urgent_jobs_run_first_then_the_costliest(har_task):
    done = []
    with Pool("har", str(HAR_ZIP), "cpu", workers=1) as pool:  # one worker: jobs end in the order they start
        pool.train(LINEAR, [1], "cheap", then=lambda r: done.append("cheap"), cost=1.0)
        pool.train(LINEAR, [2], "dear", then=lambda r: done.append("dear"), cost=5.0)
        pool.call(operator.attrgetter("name"), then=done.append, cost=3.0)  # any function of the worker's task
        pool.train(LINEAR, [3], "urgent", then=lambda r: done.append("urgent"), urgent=True)
        pool.wait(until=lambda: "urgent" in done)
        assert done == ["urgent"]  # wait returned with work left
        pool.wait()
    assert done == ["urgent", "dear", "har", "cheap"]
    assert pool.jobs == 4 and pool.usage().startswith("4 job(s) in ") and "1 worker(s) busy" in pool.usage()


@pytest.mark.slow
def test_evaluations_in_a_shared_pool_train_a_configuration_once(har_task, tmp_path):
    lines = []
    evaluations = Evaluations(tmp_path / "evaluations.json", {"task": "har"}, [100, 101], "accuracy", har_task,
                              str(HAR_ZIP), write=lines.append)
    with Pool("har", str(HAR_ZIP), "cpu", workers=2) as pool:
        evaluations.submit(pool, [LINEAR])
        evaluations.submit(pool, [LINEAR], keep_models={LINEAR})  # still in flight: not queued again
        pool.wait()
    entry = evaluations.get(LINEAR)
    assert evaluations.trained == 1 and sum("evaluating" in line for line in lines) == 1
    alone, _ = evaluate_spec(LINEAR, har_task, [100, 101], "accuracy")
    assert [run["test"]["accuracy"] for run in entry["runs"]] == [run["test"]["accuracy"] for run in alone["runs"]]
    assert entry["ensemble"]["test"]["accuracy"] == alone["ensemble"]["test"]["accuracy"]


@pytest.mark.slow
def test_an_error_in_a_worker_is_raised_here_with_its_traceback(har_task):
    with pytest.raises(AttributeError, match="no_such_attribute") as error:
        with Pool("har", str(HAR_ZIP), "cpu", workers=1) as pool:
            pool.call(operator.attrgetter("no_such_attribute"), then=print)
            pool.wait()
    assert "in a pool worker:" in str(error.value.__cause__) and "Traceback" in str(error.value.__cause__)
    assert pool._workers is None  # closed: its worker has ended


LONG = """
import sys
from search.pool import Pool
from search.train import TrialSpec
with Pool("har", sys.argv[1], "cpu", workers=2) as pool:
    pool.train(TrialSpec(family="dense", width=16, epochs=1000, batch_size=32), [1, 2], "long", then=print)
    pool.wait()
"""


@pytest.mark.slow
def test_workers_end_with_their_parent_killed_and_leave_no_semaphore(tiny_har_dir, tmp_path):
    parent = subprocess.Popen([sys.executable, "-c", LONG, str(tiny_har_dir)], cwd=ROOT, stderr=subprocess.PIPE,
                              text=True, env={**os.environ, "DATA_CACHE": str(tmp_path)})
    lines = queue.Queue()  # stderr is read to its end, as a terminal would: the workers write to it until they end
    threading.Thread(target=lambda: [lines.put(line) for line in parent.stderr] + [lines.put(None)], daemon=True).start()
    seen = []
    try:
        while sum(line.startswith(("long: seed 1, epoch 1/", "long: seed 2, epoch 1/")) for line in seen) < 2:
            seen.append(lines.get(timeout=300))
            assert seen[-1] is not None, "".join(seen[:-1])
        family = children(parent.pid)  # both workers train; and multiprocessing's resource tracker
    finally:
        parent.kill()
        parent.wait()
    # Within a second in practice; 3 s here only so that a busy machine does not fail the test.
    wait_for(lambda: not any(alive(p) for p in family), 3, f"end of the pool's processes {family}")
    while (line := lines.get(timeout=60)) is not None:
        seen.append(line)
    text = "".join(seen)
    assert "leaked semaphore" not in text and "Traceback" not in text, text
