"""optuna-dashboard shows each trial's figures and notes, live, beside a running study.

The module's study: `python -m search.har` (4 trials, lockstep seeds, dense width 16, 8 epochs, 2 seeds, real HAR
data) runs in a subprocess while `python -m search.dashboard` serves the same SQLite file and the
test polls it. The tests then read that study through Chromium and through Optuna's API, and break
the artifact folder of another (in-process) study mid-run.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import matplotlib.image
import optuna
import pytest
from optuna.artifacts import download_artifact, get_all_artifact_meta
from optuna_dashboard import get_note

from search.artifacts import MISSING, AtomicFileStore
from search.dashboard import main as dashboard_main
from search.storage import artifact_dir
from search.study import StudyConfig, run_study

REPO = Path(__file__).resolve().parents[1]
HAR_ZIP = REPO.parent / "shared" / "data" / "UCI_HAR_Dataset.zip"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
# The dashboard caches a study's trials for 2 s: trials of about 2 s each (8 epochs) leave some 6 s between the
# first finished trial and the last, so a poll every 0.5 s sees one finished mid-study (2 epochs: 2.4 s, flaky).
FAST = {"family": "dense", "width": 16, "layers": 1, "batch_size": 256, "epochs": 8}
TRIALS = 4
PNG = b"\x89PNG\r\n\x1a\n"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=60) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def get_json(url: str) -> dict:
    status, body = get(url)
    assert status == 200, f"GET {url}: {status} {body[:300]!r}"
    return json.loads(body)


def wait_until_serving(server: subprocess.Popen, base: str, log: Path) -> None:
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        assert server.poll() is None, f"the dashboard exited with {server.returncode}:\n{log.read_text()}"
        try:
            if get(base + "/api/meta")[0] == 200:
                return
        except OSError:
            pass  # not listening yet
        time.sleep(0.5)
    pytest.fail(f"the dashboard did not answer {base}/api/meta within 180 s:\n{log.read_text()}")


def poll_round(base: str, running: bool) -> dict:
    """One look at the dashboard: study list, study detail, one artifact image, the app's page."""
    statuses, seen = [], {"running": running, "finished": 0, "with_figures": 0, "png": False}
    status, body = get(base + "/api/studies")
    statuses.append(status)
    studies = json.loads(body)["study_summaries"] if status == 200 else []
    for summary in studies:
        status, body = get(f"{base}/api/studies/{summary['study_id']}")
        statuses.append(status)
        trials = json.loads(body)["trials"] if status == 200 else []
        done = [t for t in trials if t["state"] == "Complete"]
        figured = [t for t in done if len(t["artifacts"]) == 2 and t["note"]["body"]]
        seen.update(finished=len(done), with_figures=len(figured))
        if figured:
            t = figured[0]
            status, body = get(f"{base}/artifacts/{t['study_id']}/{t['trial_id']}/{t['artifacts'][0]['artifact_id']}")
            statuses.append(status)
            seen["png"] = body.startswith(PNG)
    statuses.append(get(base + "/dashboard")[0])
    seen["statuses"] = statuses
    return seen


@pytest.fixture(scope="module")
def live(request, tmp_path_factory):
    """The dashboard serving a SQLite file while a HAR study writes to it; both kept for the tests."""
    root = tmp_path_factory.mktemp("live")
    url = f"sqlite:///{root / 'studies.db'}"
    optuna.storages.RDBStorage(url)  # an empty Optuna database, so the dashboard can start first
    port, log = free_port(), root / "dashboard.log"
    base = f"http://127.0.0.1:{port}"
    with open(log, "w") as out:
        dashboard = subprocess.Popen([sys.executable, "-m", "search.dashboard", "--storage", url, "--port", str(port)],
                                     cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
    try:
        har_cache = request.getfixturevalue("har_cache")
        request.getfixturevalue("har_task")  # parses the zip into har_cache while the dashboard starts
        wait_until_serving(dashboard, base, log)
        # lockstep: all seeds report each epoch, so intermediate values are their mean; one worker: trials
        # end one by one (two end in pairs), so some poll sees finished trials while others are to come.
        args = ["--trials", str(TRIALS), "--seeds", "2", "--threads", "1", "--workers", "1", "--pruner", "none",
                "--sampler-seed", "0", "--strategy", "lockstep"]
        args += [f"--{k.replace('_', '-')}={v}" for k, v in FAST.items()]
        study = subprocess.Popen([sys.executable, "-m", "search.har", *args, "--storage", url, "--data", str(HAR_ZIP)],
                                 cwd=REPO, env={**os.environ, "DATA_CACHE": str(har_cache)},
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        polls = []
        while study.poll() is None:
            polls.append(poll_round(base, running=True))
            time.sleep(0.5)
        out, err = study.communicate()
        yield SimpleNamespace(url=url, root=root, base=base, log=log, dashboard=dashboard, polls=polls,
                              returncode=study.returncode, out=out, err=err)
    finally:
        dashboard.terminate()
        dashboard.wait(timeout=30)


@pytest.fixture(scope="module")
def study_detail(live) -> dict:
    """The study as the dashboard shows it once the study has ended. optuna-dashboard caches a study's
    trials for up to 10 s (optuna_dashboard/_storage.py), so a trial it last saw running may take that long
    to show as finished: ask again until none is running, for at most 30 s."""
    (summary,) = get_json(live.base + "/api/studies")["study_summaries"]
    deadline = time.monotonic() + 30
    while True:
        detail = get_json(f"{live.base}/api/studies/{summary['study_id']}")
        if all(t["state"] != "Running" for t in detail["trials"]) or time.monotonic() > deadline:
            return detail
        time.sleep(1)


@pytest.mark.slow
def test_study_and_dashboard_share_the_sqlite_file(live, study_detail):
    assert live.returncode == 0, live.err
    assert live.dashboard.poll() is None, live.log.read_text()
    assert live.polls, "the study ended before the dashboard was polled once"
    failed = [s for r in live.polls for s in r["statuses"] if s != 200]
    assert not failed, f"dashboard answers during the study: {failed}\n{live.log.read_text()[-2000:]}"
    # Live: some poll saw a finished trial's figures (and fetched a PNG) while trials were still to come.
    assert any(r["with_figures"] and r["png"] and r["finished"] < TRIALS for r in live.polls), live.polls
    trials = study_detail["trials"]
    assert study_detail["objective_names"] == ["val accuracy, mean of 2 seeds"]  # not "Objective 0"
    assert [t["state"] for t in trials] == ["Complete"] * TRIALS
    assert all(len(t["artifacts"]) == 2 and t["note"]["body"] for t in trials)


@pytest.mark.slow
def test_dashboard_shows_per_epoch_seed_mean_as_intermediate_values(live, study_detail):
    assert study_detail["has_intermediate_values"]
    # The curves come from Optuna: the dashboard cuts user attributes at 1,024 characters.
    stored = {t.number: t for t in optuna.load_study(study_name="har", storage=live.url).trials}
    for t in study_detail["trials"]:
        curves = stored[t["number"]].user_attrs["curves"]
        expected = [sum(c["val_accuracy"][e] for c in curves) / len(curves) for e in range(FAST["epochs"])]
        shown = [(v["step"], v["value"]) for v in t["intermediate_values"]]
        assert [s for s, _ in shown] == list(range(1, FAST["epochs"] + 1))
        assert [v for _, v in shown] == pytest.approx(expected, abs=1e-12)


@pytest.fixture(scope="module")
def chromium():
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (`make browser`) to run the dashboard test")
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.mark.slow
def test_browser_shows_study_note_trial_note_and_figures(live, study_detail, chromium, tmp_path):
    trial = study_detail["trials"][0]
    study_id, trial_id = trial["study_id"], trial["trial_id"]
    page = chromium.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(60_000)

    page.goto(f"{live.base}/dashboard/studies/{study_id}/note")
    page.get_by_text("max_width=64").first.wait_for()
    page.get_by_role("heading", name="Data").wait_for()
    page.screenshot(path=tmp_path / "study-note.png")

    page.goto(f"{live.base}/dashboard/studies/{study_id}/trials?numbers=0")
    page.get_by_role("heading", name="Trial 0: finished").wait_for()  # the note's markdown, rendered
    page.get_by_text(f"{json.loads(_attr(trial, 'params')):,} trainable parameters", exact=False).wait_for()
    images = page.locator(f"img[src*='/artifacts/{study_id}/{trial_id}/']")
    images.first.wait_for()
    page.wait_for_function(
        f"() => {{ const imgs = [...document.querySelectorAll(\"img[src*='/artifacts/{study_id}/{trial_id}/']\")];"
        " return imgs.length === 2 && imgs.every(i => i.complete && i.naturalWidth > 0); }")
    assert sorted(images.evaluate_all("imgs => imgs.map(i => i.alt)")) == ["trial-0-confusion.png", "trial-0-curves.png"]
    widths = images.evaluate_all("imgs => imgs.map(i => i.naturalWidth)")
    assert min(widths) > 300, widths  # the figures themselves, not a broken-image icon
    page.get_by_role("heading", name="Artifacts").scroll_into_view_if_needed()
    page.evaluate("window.scrollTo(0, window.scrollY)")  # long user attrs widen the page; show its left side
    page.screenshot(path=tmp_path / "trial-0.png")
    print(f"screenshots: {tmp_path / 'study-note.png'} {tmp_path / 'trial-0.png'}")
    page.close()


def _attr(trial: dict, key: str) -> str:
    return next(a["value"] for a in trial["user_attrs"] if a["key"] == key)


@pytest.mark.slow
def test_optuna_api_finds_figures_and_notes(live, tmp_path):
    storage = optuna.storages.RDBStorage(live.url)
    study = optuna.load_study(study_name="har", storage=storage)
    folder = artifact_dir(live.url)
    assert Path(folder) == live.root / "artifacts"  # beside the SQLite file
    store = AtomicFileStore(folder)
    for frozen in study.trials:
        n, attrs = frozen.number, frozen.user_attrs
        metas = get_all_artifact_meta(frozen, storage=storage)
        assert sorted(m.filename for m in metas) == [f"trial-{n}-confusion.png", f"trial-{n}-curves.png"]
        for meta in metas:
            assert meta.mimetype == "image/png"
            path = tmp_path / meta.filename
            download_artifact(artifact_store=store, artifact_id=meta.artifact_id, file_path=str(path))
            assert path.read_bytes().startswith(PNG)
            height, width, _ = matplotlib.image.imread(path).shape
            assert height > 300 and width > 300, (meta.filename, height, width)
        note = get_note(optuna.trial.Trial(study, frozen._trial_id))
        assert note.startswith(f"### Trial {n}: finished")
        assert f"**{attrs['metric_mean']:.4f} ± {attrs['metric_std']:.4f}**" in note
        for seed, value in zip(attrs["seeds"], attrs["seed_metrics"]["accuracy"]):
            assert f"seed {seed}: {value:.4f}" in note
        assert f"{attrs['params']:,} trainable parameters" in note and f"{attrs['train_seconds']:.1f} s" in note
        assert MISSING not in note
    note = get_note(study)
    counts = study.user_attrs["counts"]
    assert "Space(" in note and "families=(" in note
    assert f"| train | {sum(counts['train']):,} |" in note and "WALKING_UPSTAIRS" in note
    assert f"`{study.user_attrs['commands'][0]}`" in note and f"--trials {TRIALS}" in note


@pytest.mark.slow
def test_broken_artifact_folder_leaves_trials_complete_with_a_note(small_har, tmp_path, capfd):
    """Trial 0 writes its figures; the folder is removed (trial 1 re-creates it); then a file takes its
    place (trials 2 and 3: no figures, no dangling artifact entries, one warning on stderr)."""
    folder = tmp_path / "artifacts"
    config = StudyConfig(task="har", trials=4, storage=f"sqlite:///{tmp_path / 'studies.db'}", seeds=1, pruner="none",
                         sampler_seed=0, fixed=dict(FAST), artifact_dir=str(folder), command="test")
    ended = []

    def break_folder(line: str) -> None:  # run_study's progress lines; a trial line ends with its seconds
        if " epoch " in line:
            return
        ended.append(line)
        if len(ended) == 1:
            shutil.rmtree(folder)
        elif len(ended) == 2:
            shutil.rmtree(folder)
            folder.write_text("in the way")  # root ignores permissions; a file where the folder was does not

    study = run_study(config, small_har, write=break_folder)
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE] * 4
    assert all(math.isfinite(t.value) for t in study.trials)
    for frozen in study.trials:
        n = frozen.number
        note = get_note(optuna.trial.Trial(study, frozen._trial_id))
        metas = get_all_artifact_meta(frozen, storage=study._storage)
        assert note.startswith(f"### Trial {n}: finished")
        if n < 2:
            assert len(metas) == 2 and MISSING not in note
        else:  # no broken entries in the dashboard, and the note says what is missing
            assert metas == []
            for name in (f"trial-{n}-curves.png", f"trial-{n}-confusion.png"):
                assert f"**{MISSING}**: `{name}` was not saved to {folder}" in note
    err = capfd.readouterr().err
    assert err.count("warning: figures cannot be written") == 1 and str(folder) in err
    assert folder.read_text() == "in the way"  # and no probe or partial file was left anywhere
    assert sorted(p.name for p in tmp_path.iterdir()) == ["artifacts", "studies.db"]


@pytest.mark.slow
def test_diverged_trial_gets_figures_and_a_note_too(small_har, tmp_path):
    config = StudyConfig(task="har", trials=1, storage=f"sqlite:///{tmp_path / 'studies.db'}", seeds=1, pruner="none",
                         fixed={**FAST, "lr": 1e9}, artifact_dir=str(tmp_path / "figures"), command="test")
    study = run_study(config, small_har, write=lambda line: None)
    (trial,) = study.trials
    assert trial.state == optuna.trial.TrialState.FAIL and trial.user_attrs["ended"].startswith("diverged")
    metas = get_all_artifact_meta(trial, storage=study._storage)
    assert sorted(m.filename for m in metas) == ["trial-0-confusion.png", "trial-0-curves.png"]
    assert all((tmp_path / "figures" / m.artifact_id).read_bytes().startswith(PNG) for m in metas)
    note = get_note(optuna.trial.Trial(study, trial._trial_id))
    assert note.startswith(f"### Trial 0: {trial.user_attrs['ended']}") and MISSING not in note


@pytest.mark.parametrize("args, message", [
    (["--storage", "nonsense://x"], "error: --storage 'nonsense://x'"),
    (["--storage", "sqlite:///{tmp}/none.db"], "no such SQLite file"),
    (["--storage", "{db}", "--artifacts", "{db_file}"], "must be a folder, but it is a file"),
    (["--storage", "{db}", "--port", "70000"], "--port must be in 1..65535, got 70000"),
    (["--storage", "{db}", "--port", "{busy}"], "error: cannot listen on --host 127.0.0.1 --port"),
    (["--storage", "postgresql://postgres:secret@127.0.0.1:{closed}/test"], "cannot reach the database"),
    (["--storage", "sqlite://"], "--storage 'sqlite://' is an in-memory database, empty in every new process"),
])
@pytest.mark.slow
def test_dashboard_bad_input_is_one_line_and_exit_2(args, message, tmp_path, capsys):
    db_file = tmp_path / "studies.db"
    optuna.storages.RDBStorage(f"sqlite:///{db_file}")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        values = {"tmp": tmp_path, "db": f"sqlite:///{db_file}", "db_file": db_file, "busy": busy.getsockname()[1],
                  "closed": free_port()}
        with pytest.raises(SystemExit) as exit_info:
            dashboard_main([a.format(**values) for a in args])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], err
    assert "secret" not in err[0]  # the password is masked
    assert not (tmp_path / "none.db").exists()  # a mistyped path does not become an empty database


@pytest.mark.slow
def test_default_artifact_folder_is_beside_the_sqlite_file():
    assert artifact_dir("sqlite:////data/runs/studies.db") == "/data/runs/artifacts"
    assert artifact_dir("sqlite:///studies.db") == "artifacts"
    assert artifact_dir("postgresql://postgres@127.0.0.1/test") == "artifacts"
    assert artifact_dir("sqlite://") is None  # an in-memory study keeps no figures
