"""search/pool.py: a report's training, one (configuration, seed) per job in worker processes, costliest first."""
from __future__ import annotations

import operator

import pytest
import torch

from conftest import HAR_ZIP
from search.evaluate import Evaluations, evaluate_spec
from search.pool import Pool
from search.train import TrialSpec, train_seeds

pytestmark = pytest.mark.usefixtures("one_torch_thread")
LINEAR = TrialSpec(family="linear", epochs=1, batch_size=256, lr=1e-2)


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
