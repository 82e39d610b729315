"""Model folders on the real data: export, reload and predict give the in-memory ensemble's
probabilities; the card and model.json hold what prediction needs; damaged folders are refused."""
from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import optuna
import pytest
import torch

from conftest import foreground
from data import Split, Task
from data.har import read_signals
from data.names import normalise, split_surnames
from search.evaluate import spec_of
from search.export import InputError, ModelError, final_metrics, load_model, save_model
from search.study import StudyConfig, run_study
from search.train import TrialSpec, train_seeds

ROOT = Path(__file__).resolve().parents[1]
NAMES_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "names"
SEEDS = [100, 101]
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def every(split: Split, step: int) -> Split:
    """Every step-th example: all classes stay in the subset (the splits are ordered by language)."""
    return Split(split.x[::step].clone(), split.y[::step].clone(), split.lengths[::step].clone())


def subset(task: Task, step: int) -> Task:
    return Task(task.name, every(task.train, step), every(task.val, step), every(task.test, step),
                list(task.class_names), dict(task.info))


@torch.inference_mode()
def in_memory(models, x, lengths) -> np.ndarray:
    """The ensemble's probabilities computed directly from the trained modules, all inputs in one batch."""
    return torch.stack([model(x, lengths).softmax(1) for model in models]).mean(0).double().numpy()


def surnames_of_test_split(step: int) -> tuple[list[str], list[str]]:
    """Every step-th surname of the names task's test split, as text, with its language (the split's order)."""
    by_language = {file.stem: [n for n in map(normalise, file.read_text(encoding="utf-8").splitlines()) if n]
                   for file in sorted(NAMES_DIR.glob("*.txt"))}
    rows = split_surnames(by_language, split_seed=0)["test"][::step]
    return [name for name, _ in rows], [language for _, language in rows]


@pytest.fixture(scope="module")
def names_small(names_task) -> Task:
    return subset(names_task, 10)


@pytest.fixture(scope="module")
def names_models(names_small):
    spec = TrialSpec(family="gru", width=16, epochs=1, ngrams=3)  # the n-gram part travels with the weights
    results = train_seeds(spec, names_small, SEEDS, test=True, keep_models=True)
    return spec, [r.model for r in results]


@pytest.fixture(scope="module")
def names_folder(names_small, names_models, tmp_path_factory) -> Path:
    spec, models = names_models
    metrics = final_metrics(models, names_small)
    source = {"study": "names", "trial": 3, "command": "python -m search.export names --trial 3"}
    return save_model(tmp_path_factory.mktemp("names") / "model", spec, names_small, models, SEEDS, {"tau": 0.0},
                      metrics, source)


@pytest.fixture(scope="module")
def har_small(har_task) -> Task:
    return subset(har_task, 20)


@pytest.fixture(scope="module")
def har_models(har_small):
    spec = TrialSpec(family="conv1d", width=16, norm=True, pool=2, epochs=1)  # batch norm: buffers saved too
    results = train_seeds(spec, har_small, SEEDS, test=True, keep_models=True)
    return spec, [r.model for r in results]


@pytest.mark.slow
def test_names_model_reloaded_gives_the_in_memory_probabilities(names_task, names_models, names_folder):
    _, models = names_models
    surnames, languages = surnames_of_test_split(7)
    assert [names_task.class_names.index(lang) for lang in languages] == names_task.test.y[::7].tolist()
    expected = in_memory(models, names_task.test.x[::7], names_task.test.lengths[::7])

    predictor = load_model(names_folder)
    found = predictor.predict_proba(surnames)
    assert found.shape == (len(surnames), 18)
    np.testing.assert_allclose(found, expected, rtol=0, atol=1e-6)
    assert predictor.predict(surnames) == [names_task.class_names[i] for i in expected.argmax(1)]
    # Accents are dropped as in training; the batch size changes nothing.
    np.testing.assert_allclose(predictor.predict_proba(["Müller", "Ślusarski"]),
                               predictor.predict_proba(["Muller", "Slusarski"]), rtol=0, atol=1e-7)
    np.testing.assert_allclose(predictor.predict_proba(surnames, batch_size=7), found, rtol=0, atol=1e-6)


@pytest.mark.slow
def test_har_model_reloaded_gives_the_in_memory_probabilities(har_task, har_small, har_models, tiny_har_dir, tmp_path):
    spec, models = har_models
    folder = save_model(tmp_path / "model", spec, har_small, models, SEEDS, {"tau": 0.0},
                        final_metrics(models, har_small), {"study": "har", "trial": 0})
    # Raw windows from a UCI-layout folder (every 50th test window) against the task's standardised tensors.
    windows = read_signals(tiny_har_dir / "test" / "Inertial Signals")
    expected = in_memory(models, har_task.test.x[::50], har_task.test.lengths[::50])
    assert windows.shape == (len(expected), 128, 9)

    predictor = load_model(folder)
    assert predictor.task == "har" and predictor.class_names == har_task.class_names
    np.testing.assert_allclose(predictor.predict_proba(windows), expected, rtol=0, atol=1e-6)
    assert predictor.predict(windows) == [har_task.class_names[i] for i in expected.argmax(1)]


@pytest.mark.slow
def test_model_folder_holds_what_prediction_needs_and_a_card(names_small, names_folder):
    card = json.loads((names_folder / "model.json").read_text())
    assert card["format"] == 2 and card["task"] == "names" and card["seeds"] == SEEDS
    assert card["class_names"] == names_small.class_names and card["spec"]["family"] == "gru"
    pre = card["preprocessing"]
    assert pre["alphabet"] == names_small.info["alphabet"] and pre["seq_len"] == names_small.seq_len == 19
    assert pre["unknown_index"] == 0 and "NFKD" in pre["normalisation"]
    counts = np.bincount(names_small.train.y.numpy(), minlength=18)
    np.testing.assert_allclose(card["decision"]["prior"], counts / counts.sum(), rtol=1e-6)
    assert card["decision"]["tau"] == 0.0
    assert sum(map(sum, card["metrics"]["confusion"])) == len(SEEDS) * len(names_small.test)
    assert card["data"]["counts"] == names_small.counts() and card["source"]["trial"] == 3
    assert "/" not in card["data"]["source"]  # no machine path in a folder that may be committed
    # Weights live apart from the text files, one per seed, with their checksums.
    assert sorted(p.name for p in names_folder.iterdir()) == ["model.json", "model.md", "weights"]
    assert [w["file"] for w in card["weights"]] == ["weights/seed-100.pt", "weights/seed-101.pt"]

    text = (names_folder / "model.md").read_text()
    for heading in ("## Use", "## Input", "## Test metrics", "## Known confusions", "## Meant for", "## Not meant for"):
        assert heading in text
    confusion = np.array(card["metrics"]["confusion"], dtype=float)
    rates = confusion / confusion.sum(1, keepdims=True).clip(1)
    np.fill_diagonal(rates, -1)
    true, predicted = np.unravel_index(rates.argmax(), rates.shape)
    names = card["class_names"]
    assert f"- {names[true]} taken for {names[predicted]}: {rates[true, predicted]:.1%}" in text
    assert f"| accuracy | {card['metrics']['mean']['accuracy']:.3f} ± " in text


@pytest.mark.slow
def test_har_preprocessing_records_channels_and_training_statistics(har_small, har_models, tmp_path):
    spec, models = har_models
    folder = save_model(tmp_path / "model", spec, har_small, models, SEEDS, {"tau": 0.0}, {}, {})
    pre = json.loads((folder / "model.json").read_text())["preprocessing"]
    assert pre["channels"] == har_small.info["channels"] and pre["steps"] == 128
    assert pre["mean"] == har_small.info["standardisation"]["mean"]
    assert pre["std"] == har_small.info["standardisation"]["std"]
    text = (folder / "model.md").read_text()
    assert "body_acc_x, body_acc_y, body_acc_z, body_gyro_x" in text and "channel-major" in text


@pytest.mark.slow
def test_tau_shifts_labels_towards_rare_classes(names_small, names_models, tmp_path):
    spec, models = names_models
    folder = save_model(tmp_path / "model", spec, names_small, models, SEEDS, {"tau": 1.0},
                        final_metrics(models, names_small, tau=1.0), {})
    predictor = load_model(folder)
    surnames, _ = surnames_of_test_split(5)
    proba = predictor.predict_proba(surnames)
    counts = np.bincount(names_small.train.y.numpy(), minlength=18)
    expected = np.argmax(np.log(proba) - 1.0 * np.log(counts / counts.sum()), axis=1)
    labels = predictor.predict(surnames)
    assert labels == [predictor.class_names[i] for i in expected]
    assert labels != [predictor.class_names[i] for i in proba.argmax(1)]  # the rule changes some labels
    adjusted = predictor.predict_proba(surnames, adjust=True)
    np.testing.assert_allclose(adjusted.sum(1), 1, atol=1e-6)
    assert [predictor.class_names[i] for i in adjusted.argmax(1)] == labels


@pytest.mark.slow
def test_saving_replaces_an_old_folder_only_once_the_new_one_is_complete(names_small, names_models, tmp_path):
    spec, models = names_models
    folder = tmp_path / "model"
    save_model(folder, spec, names_small, models, SEEDS, {"tau": 0.0}, {}, {"trial": 1})
    save_model(folder, spec, names_small, models, SEEDS, {"tau": 0.5}, {}, {"trial": 2})
    assert json.loads((folder / "model.json").read_text())["source"]["trial"] == 2
    with pytest.raises(TypeError):  # not JSON: fails after the weights were written
        save_model(folder, spec, names_small, models, SEEDS, {"tau": 0.0}, {"bad": object()}, {"trial": 3})
    assert json.loads((folder / "model.json").read_text())["source"]["trial"] == 2
    assert load_model(folder).tau == 0.5
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]  # no temporary folder left behind
    with pytest.raises(ValueError, match="models and seeds must be equally long"):
        save_model(folder, spec, names_small, models, [100], {"tau": 0.0}, {}, {})
    with pytest.raises(ValueError, match=r"decision\['tau'\] must be a finite float from -10 to 10, got nan"):
        save_model(folder, spec, names_small, models, SEEDS, {"tau": float("nan")}, {}, {})


def damage(folder: Path, kind: str) -> None:
    card_path = folder / "model.json"
    card = json.loads(card_path.read_text())
    if kind == "missing folder":
        shutil.rmtree(folder)
    elif kind == "other format":
        card["format"] = 3
        card_path.write_text(json.dumps(card))
    elif kind == "corrupt json":
        card_path.write_text(card_path.read_text()[:100])
    elif kind == "missing weights":
        (folder / "weights" / "seed-101.pt").unlink()
    elif kind == "truncated weights":
        path = folder / "weights" / "seed-100.pt"
        path.write_bytes(path.read_bytes()[:500])
    elif kind == "corrupt weights":  # the same size, one byte changed
        path = folder / "weights" / "seed-100.pt"
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0xFF
        path.write_bytes(bytes(data))
    elif kind == "spec larger than the weights":
        card["spec"]["width"] = 32
        card_path.write_text(json.dumps(card))
    elif kind == "weights of another architecture":  # smaller than the file: the tensors' shapes differ
        card["spec"]["width"] = 8
        card_path.write_text(json.dumps(card))


@pytest.mark.parametrize("kind, message", [
    ("missing folder", "no model folder there (make one with: python -m search.export STUDY --trial N)"),
    ("other format", "model format 3, but this version reads format 2 (or 1); export the model again with: "
                     "python -m search.export names --trial 3"),
    ("corrupt json", "model.json: corrupt (Expecting value: line 9"),
    ("missing weights", "seed-101.pt: missing (weights over 2 MiB are not committed); produce them with: "
                        "python -m search.export names --trial 3"),
    ("truncated weights", "seed-100.pt: corrupt (500 bytes, model.json says "),
    ("corrupt weights", "seed-100.pt: corrupt (its sha256 differs from the one in model.json)"),
    ("spec larger than the weights", "seed-100.pt: does not fit the model.json spec (gru, width 32, 1 layer(s)): "
                                     "the spec's tensors need "),
    # The whole reason in the line, not the first line of load_state_dict's message.
    ("weights of another architecture", "seed-100.pt: does not fit the model.json spec (gru, width 8, 1 layer(s)): "
                                        "network.rnn.weight_ih_l0 is (48, "),
])
@pytest.mark.slow
def test_loading_refuses_a_damaged_or_other_format_folder_in_one_line(names_folder, tmp_path, kind, message):
    folder = tmp_path / "model"
    shutil.copytree(names_folder, folder)
    damage(folder, kind)
    with pytest.raises(ModelError) as error:
        load_model(folder)
    assert message in str(error.value) and "\n" not in str(error.value)
    assert isinstance(error.value, ValueError)
    if kind == "weights of another architecture":  # 3 gates x width: the file's 16, the spec's 8
        assert str(error.value).endswith("in the spec (and 4 more difference(s))")
        assert ", (24, " in str(error.value)


@pytest.mark.slow
def test_bad_inputs_raise_input_errors_naming_the_input(names_folder, har_small, har_models, tmp_path):
    names = load_model(names_folder)
    with pytest.raises(InputError, match="surname 2 is empty") as error:
        names.predict_proba(["Abe", " \u0301 "])  # only a combining accent: empty after normalisation
    assert error.value.index == 1
    spec, models = har_models
    har = load_model(save_model(tmp_path / "har", spec, har_small, models, SEEDS, {"tau": 0.0}, {}, {}))
    with pytest.raises(InputError, match=r"windows must have shape \(N, 128, 9\).*got \(2, 128, 8\)"):
        har.predict_proba(np.zeros((2, 128, 8)))
    windows = np.zeros((3, 128, 9))
    windows[2, 40, 4] = np.nan
    with pytest.raises(InputError, match="window 3, channel body_gyro_y, step 41: nan is not a finite number"):
        har.predict(windows)


@pytest.mark.slow
def test_export_command_retrains_a_trial_of_a_sqlite_study(small_names_task, small_names_dir, tmp_path, cli,
                                                            monkeypatch):
    monkeypatch.chdir(ROOT)  # the recorded command is relative to the folder it ran in
    storage = f"sqlite:///{tmp_path / 's.db'}"
    config = StudyConfig(task="names", trials=1, storage=storage, seeds=1, sampler_seed=0,
                         fixed={"family": "linear", "epochs": 1, "decision": "argmax"})
    trial = run_study(config, small_names_task, write=lambda line: None).trials[0]
    out = tmp_path / "exported"

    def export(*args: str) -> subprocess.CompletedProcess:  # in this process; the last check starts a real one
        return cli("search.export", "names", "--storage", storage, *args)

    result = export("--trial", "0", "--data", str(small_names_dir), "--seeds", "2", "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert f"predict: python -m search.predict --model {out} Nakamura" in result.stdout
    card = json.loads((out / "model.json").read_text())
    assert card["seeds"] == [100, 101]  # the final seeds, never the search's seed 0
    assert TrialSpec(**card["spec"]) == spec_of(trial)
    assert card["source"]["trial"] == 0 and card["source"]["search_value"] == pytest.approx(trial.value)
    assert card["source"]["command"].startswith("python -m search.export names --trial 0 --storage sqlite:///")
    # No absolute path in the folder, and the recorded command runs again as written from the working folder.
    assert not os.path.isabs(card["source"]["storage"].removeprefix("sqlite:///"))
    assert not any(os.path.isabs(word) for word in shlex.split(card["source"]["command"]))
    python, dash_m, module, *args = shlex.split(card["source"]["command"])
    again = cli(module, *args)
    assert again.returncode == 0, again.stderr
    assert json.loads((out / "model.json").read_text())["weights"] == card["weights"]  # the same model, replaced
    assert card["data"]["counts"] == small_names_task.counts()
    assert len(card["metrics"]["seeds"]["accuracy"]) == 2 and card["decision"]["tau"] == 0.0
    assert load_model(out).predict(["Nakamura"])[0] in small_names_task.class_names
    # --refit: trained on the training and validation rows together, as a report's recommendation is.
    refit = export("--trial", "0", "--data", str(small_names_dir), "--seeds", "1", "--refit", "--tau", "0.5",
                   "--out", str(tmp_path / "refit"))
    assert refit.returncode == 0, refit.stderr
    card = json.loads((tmp_path / "refit" / "model.json").read_text())
    counts = small_names_task.counts()
    assert card["source"]["trained_on"] == "train+validation" and card["source"]["command"].endswith("--refit")
    assert card["data"]["counts"]["train"] == [t + v for t, v in zip(counts["train"], counts["val"])]
    assert card["decision"]["tau"] == 0.5 and card["metrics"]["tau"] == 0.5

    missing = export("--trial", "4")
    assert missing.returncode == 2 and missing.stdout == ""
    assert missing.stderr == "error: --trial 4: no such trial in study 'names' (trials: 0-0)\n"
    other = subprocess.run([sys.executable, "-m", "search.export", "names", "--trial", "0", "--storage",
                            f"sqlite:///{tmp_path / 'none.db'}"], capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert other.returncode == 2 and other.stderr.count("\n") == 1 and "no such SQLite file" in other.stderr
    assert optuna.load_study(study_name="names", storage=storage).trials[0].number == 0


# ---------------------------------------------------------------------------------------------
# The command's checks before work, its output folder, Ctrl-C


@pytest.fixture(scope="module")
def names_study(names_task, tmp_path_factory) -> str:
    """A real SQLite study of one trained trial (a linear model, one epoch)."""
    storage = f"sqlite:///{tmp_path_factory.mktemp('study') / 's.db'}"
    config = StudyConfig(task="names", trials=1, storage=storage, seeds=1, sampler_seed=0,
                         fixed={"family": "linear", "epochs": 1, "decision": "argmax"})
    run_study(config, names_task, write=lambda line: None)
    return storage


def export_args(*args: str) -> list[str]:
    return ["names", "--data", str(NAMES_DIR), *args]


def export_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "search.export", *export_args(*args)]


def refused_in_one_line(result: subprocess.CompletedProcess, message: str) -> None:
    assert result.returncode == 2 and result.stdout == "", result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.startswith("error: ") and message in result.stderr, result.stderr
    assert "training" not in result.stderr  # refused before any training


@pytest.mark.slow
def test_export_refuses_an_out_folder_it_did_not_write_before_training(names_study, tmp_path, cli):
    mydocs = tmp_path / "mydocs"
    mydocs.mkdir()
    (mydocs / "thesis.txt").write_text("draft\n")
    (tmp_path / "file").write_text("")
    for out, message in ((mydocs, "--out " + str(mydocs) + ": exists and is not a model folder written by "
                                  "search.export (it holds thesis.txt, no model.json)"),
                         (tmp_path / "file" / "model", "file/model: cannot write in"),
                         (Path("/proc/model"), "--out /proc/model: cannot write in /proc")):
        result = cli("search.export", *export_args("--storage", names_study, "--trial", "0", "--out", str(out)))
        refused_in_one_line(result, message)
    assert [p.name for p in mydocs.iterdir()] == ["thesis.txt"] and (mydocs / "thesis.txt").read_text() == "draft\n"


@pytest.mark.slow
def test_seeds_are_bounded_for_export_and_report(tmp_path, cli):
    storage = f"sqlite:///{tmp_path / 'none.db'}"
    result = cli("search.export", *export_args("--storage", storage, "--trial", "0", "--seeds", "100000"))
    refused_in_one_line(result, "--seeds must be an int from 1 to 50, got 100000")
    assert not (tmp_path / "none.db").exists()  # refused before the storage was opened
    report = cli("search.report.cli", "names", "--storage", storage, "--seeds", "1000", "--out", str(tmp_path / "reports"))
    refused_in_one_line(report, "--seeds must be an int from 1 to 50, got 1000")
    assert sorted(p.name for p in tmp_path.iterdir()) == []


@pytest.mark.slow
def test_ctrl_c_during_training_is_one_line_exit_130_and_writes_nothing(names_study, tmp_path):
    out = tmp_path / "model"
    process = subprocess.Popen(export_command("--storage", names_study, "--trial", "0", "--seeds", "50", "--out",
                                              str(out)), stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT,
                               preexec_fn=foreground)
    try:
        first = process.stderr.readline().decode()  # "training trial #0 ...": the checks passed, training started
        assert first.startswith("training trial #0"), first
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=120)
    finally:
        process.kill()
    assert process.returncode == 130 and stdout == b""
    lines = [line for line in stderr.decode().splitlines() if not line.startswith("  epoch")]
    assert lines == ["interrupted: nothing written"], stderr
    assert list(tmp_path.iterdir()) == []  # no folder, no temporary sibling
