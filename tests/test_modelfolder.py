"""Model folders as untrusted input and as output: the project's real folders (reports/har/model with its
weights, reports/names/model without them) damaged one field at a time are refused in one line naming the
field; saving never deletes or moves anything that is not a model folder this project wrote."""
from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from data import Split, Task
from search.modelfolder import check_out, load_model, save_model
from search.modelschema import ModelError
from search.train import TrialSpec, train_seeds

ROOT = Path(__file__).resolve().parents[1]
HAR_MODEL = ROOT / "reports" / "har" / "model"
NAMES_MODEL = ROOT / "reports" / "names" / "model"  # its weights (over 2 MiB) are not committed
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def copy_of(folder: Path, tmp_path: Path) -> Path:
    target = tmp_path / "model"
    shutil.copytree(folder, target)
    return target


def edit(folder: Path, change) -> None:
    """Apply change(card) to the folder's model.json and write it back."""
    path = folder / "model.json"
    card = json.loads(path.read_text())
    change(card)
    path.write_text(json.dumps(card))


def refused(folder: Path) -> str:
    with pytest.raises(ModelError) as error:
        load_model(folder)
    message = str(error.value)
    assert "\n" not in message and "Traceback" not in message
    return message


@pytest.fixture(scope="module")
def small_names_model(names_task, tmp_path_factory) -> tuple[Path, Task, TrialSpec, list]:
    """A names model folder trained here: 1 epoch of a small GRU on every 20th surname, two seeds."""
    def every(split: Split) -> Split:
        return Split(split.x[::20].clone(), split.y[::20].clone(), split.lengths[::20].clone())
    task = Task("names", every(names_task.train), every(names_task.val), every(names_task.test),
                list(names_task.class_names), dict(names_task.info))
    spec = TrialSpec(family="gru", width=8, epochs=1)
    models = [r.model for r in train_seeds(spec, task, [100, 101], keep_models=True)]
    folder = save_model(tmp_path_factory.mktemp("names") / "model", spec, task, models, [100, 101], {"tau": 0.0}, {},
                        {"study": "names", "trial": 0})
    return folder, task, spec, models


def test_the_real_har_model_folder_loads_and_predicts_finite_probabilities():
    predictor = load_model(HAR_MODEL)
    windows = np.zeros((2, 128, 9), dtype=np.float32)
    proba = predictor.predict_proba(windows, adjust=True)
    assert proba.shape == (2, 6) and np.isfinite(proba).all() and np.allclose(proba.sum(1), 1)


# Each damage is one a user met; the message names the field and says what is wrong with it.
MALFORMED = [
    ("har", "weights as a number", lambda c: c.update(weights=3), "field weights: Input should be a valid list, got 3"),
    ("har", "weights as a list of numbers", lambda c: c.update(weights=[1, 2]),
     "field weights.0: Input should be a valid dictionary or instance of Weight"),
    ("names", "class_names of ints", lambda c: c.update(class_names=list(range(18))),
     "field class_names.0: Input should be a valid string, got 0"),
    ("har", "preprocessing without mean", lambda c: c["preprocessing"].pop("mean"),
     "field preprocessing.mean: Field required"),
    ("names", "preprocessing without alphabet", lambda c: c["preprocessing"].pop("alphabet"),
     "field preprocessing.alphabet: Field required"),
    ("har", "a 3-value mean", lambda c: c["preprocessing"].update(mean=[0.0, 0.1, 0.2]),
     "field preprocessing.mean: must hold 9 numbers (one per channel), got 3"),
    ("names", "seq_len 0", lambda c: c["preprocessing"].update(seq_len=0),
     "field preprocessing.seq_len: Input should be greater than or equal to 1, got 0"),
    ("har", "tau 'abc'", lambda c: c["decision"].update(tau="abc"),
     "field decision.tau: Input should be a valid number, got 'abc'"),
    ("har", "tau NaN", lambda c: c["decision"].update(tau=float("nan")),
     "field decision.tau: Input should be a finite number, got nan"),
    ("har", "a huge tau", lambda c: c["decision"].update(tau=1e300),
     "field decision.tau: Input should be less than or equal to 10, got 1e+300"),
    ("har", "a zero std", lambda c: c["preprocessing"]["std"].__setitem__(4, 0.0),
     "field preprocessing.std.4: Input should be greater than or equal to 0.000000000001, got 0.0"),
    ("names", "a width beyond any model", lambda c: c["spec"].update(width=2**70),
     "field spec: width must be at most 100,000, got 1180591620717411303424"),
    ("har", "a log prior per class missing", lambda c: c["decision"]["log_prior"].pop(),
     "field decision.log_prior: must hold one number per class (6), got 5"),
    ("har", "format as a string", lambda c: c.update(format="1"),
     "field format: must be the integer 2 (the model format), got '1' (str)"),
    ("names", "an unknown family", lambda c: c["spec"].update(family="transformer"),
     "field spec: family must be one of"),
    ("names", "width 0", lambda c: c["spec"].update(width=0), "field spec: width must be an int >= 1, got 0"),
    ("har", "a weight path outside the folder", lambda c: c["weights"][0].update(file="../../outside.pt"),
     "field weights.0.file: must be a path inside the model folder, like weights/seed-100.pt, got '../../outside.pt'"),
    ("har", "an absolute weight path", lambda c: c["weights"][0].update(file="/etc/passwd"),
     "field weights.0.file: must be a path inside the model folder"),
    ("har", "more seeds than the bound", lambda c: c.update(seeds=list(range(51))),
     "field seeds: List should have at most 50 items after validation, not 51"),
]


@pytest.mark.parametrize("task, damage, change, message", MALFORMED, ids=[m[1] for m in MALFORMED])
def test_a_malformed_model_json_is_refused_naming_the_field(tmp_path, task, damage, change, message):
    folder = copy_of(HAR_MODEL if task == "har" else NAMES_MODEL, tmp_path)
    edit(folder, change)
    assert message in refused(folder)


def test_deeply_nested_or_oversized_json_is_refused_in_one_line(tmp_path):
    folder = copy_of(HAR_MODEL, tmp_path)
    (folder / "model.json").write_text('{"format": 1, "metrics": ' + "[" * 100_000 + "]" * 100_000 + "}")
    assert "model.json: corrupt (nested deeper than a JSON reader allows)" in refused(folder)
    (folder / "model.json").write_bytes(b'{"format": 1, "task": "har\xff"}')
    assert "model.json: corrupt (not UTF-8 text: byte 0xff at offset 26)" in refused(folder)
    (folder / "model.json").write_text(" " * (17 * 2**20))
    assert "over the 16 MiB a model card may hold" in refused(folder)


def test_a_weight_file_leading_outside_the_folder_is_refused_before_it_is_read(tmp_path):
    folder = copy_of(HAR_MODEL, tmp_path)
    outside = tmp_path / "elsewhere.pt"
    shutil.copy(folder / "weights" / "seed-100.pt", outside)  # the right bytes and sha256, in the wrong place
    (folder / "weights" / "seed-100.pt").unlink()
    (folder / "weights" / "seed-100.pt").symlink_to(outside)
    assert refused(folder).endswith("model.json: field weights: weights/seed-100.pt leads outside the model folder")


@pytest.mark.slow
def test_missing_weights_say_why_only_when_it_is_true(small_names_model, tmp_path):
    small = copy_of(small_names_model[0], tmp_path / "small")
    (small / "weights" / "seed-101.pt").unlink()
    message = refused(small)
    assert message.endswith("seed-101.pt: missing; produce them with: python -m search.export STUDY --trial N")
    # Weights of 4.8 MB a seed (the report's names model) are left out of git, which the message says.
    edit(small, lambda c: (c["weights"][1].update(bytes=4_800_000),
                           c["source"].update(command="python -m search.report names --out reports")))
    assert message.replace("seed-101.pt: missing;", "seed-101.pt: missing (weights over 2 MiB are not committed);") \
        .replace("search.export STUDY --trial N", "search.report names --out reports") == refused(small)


def test_a_format_1_folder_loads_unless_it_has_an_n_gram_part(tmp_path):
    """Format 1 hashed n-grams as models/ngrams.py no longer does: such a folder would predict wrongly."""
    legacy = copy_of(HAR_MODEL, tmp_path)
    edit(legacy, lambda c: (c.update(format=1), c["preprocessing"].pop("kind", None),
                            c["preprocessing"].pop("padding", None)))
    assert load_model(legacy).kind == "series"  # format 1 recorded no kind: its task's entry gives it
    edit(legacy, lambda c: c["spec"].update(ngrams=3))
    message = refused(legacy)
    assert "model.json: model format 1 with an n-gram part (spec.ngrams 3), whose n-grams were hashed as this " \
           "version no longer does: it would predict wrongly; export the model again with: python -m search." in message
    edit(legacy, lambda c: c.update(task="GunPoint"))
    assert "field task: a format-1 folder's task must be one of ['har', 'names'], got 'GunPoint'" in refused(legacy)


@pytest.mark.slow
def test_saving_refuses_a_folder_it_did_not_write_and_leaves_it_untouched(small_names_model, tmp_path):
    _, task, spec, models = small_names_model
    mydocs = tmp_path / "mydocs"
    mydocs.mkdir()
    (mydocs / "thesis.txt").write_text("draft\n")
    with pytest.raises(ModelError, match=r"mydocs: exists and is not a model folder written by search.export "
                                         r"\(it holds thesis.txt, no model.json\); choose another folder"):
        save_model(mydocs, spec, task, models, [100, 101], {"tau": 0.0}, {}, {})
    assert [p.name for p in mydocs.iterdir()] == ["thesis.txt"] and (mydocs / "thesis.txt").read_text() == "draft\n"
    # A file where the folder would go is refused too, and neither moved nor hidden.
    (tmp_path / "notes").write_text("keep\n")
    with pytest.raises(ModelError, match="notes: exists and is not a folder"):
        save_model(tmp_path / "notes", spec, task, models, [100, 101], {"tau": 0.0}, {}, {})
    assert (tmp_path / "notes").read_text() == "keep\n"
    # A model folder with a stray file in it is not only ours any more.
    folder = save_model(tmp_path / "model", spec, task, models, [100, 101], {"tau": 0.0}, {}, {})
    (folder / "weights" / "notes.txt").write_text("mine\n")
    with pytest.raises(ModelError, match=r"it holds weights/notes.txt"):
        save_model(folder, spec, task, models, [100, 101], {"tau": 0.0}, {}, {})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model", "mydocs", "notes"]  # no temporary folder left


@pytest.mark.slow
def test_saving_replaces_only_a_model_folder_and_nothing_beside_it(small_names_model, tmp_path):
    _, task, spec, models = small_names_model
    (tmp_path / "keep.txt").write_text("beside\n")
    folder = save_model(tmp_path / "model", spec, task, models, [100, 101], {"tau": 0.0}, {}, {"trial": 1})
    save_model(folder, spec, task, models, [100, 101], {"tau": 0.5}, {}, {"trial": 2})
    assert load_model(folder).tau == 0.5
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt", "model"]
    empty = tmp_path / "empty"
    empty.mkdir()  # an empty folder holds nothing to lose
    assert load_model(save_model(empty, spec, task, models, [100, 101], {"tau": 0.0}, {}, {})).tau == 0.0


def test_check_out_refuses_a_place_that_cannot_be_written(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(ModelError, match=r"^--out .*file/model: cannot write in .*file \(Not a directory\)$"):
        check_out(tmp_path / "file" / "model")
    if os.path.isdir("/proc/self"):  # read-only even for root
        with pytest.raises(ModelError, match=r"^--out /proc/model: cannot write in /proc"):
            check_out("/proc/model")
    assert check_out(tmp_path / "new" / "deeper" / "model") == tmp_path / "new" / "deeper" / "model"
    assert not (tmp_path / "new").exists()  # checking creates nothing


@pytest.mark.slow
def test_model_json_and_card_hold_no_absolute_path(small_names_model):
    folder = small_names_model[0]
    text = (folder / "model.md").read_text() + (folder / "model.json").read_text()
    assert not re.search(r"(?<![\w.])" + re.escape(str(folder.parent)), text)  # only as ../..: relative
    assert f"--model {os.path.relpath(folder)} " in (folder / "model.md").read_text()
