"""`python -m search.review`: the review report at a tiny budget, and the numbers it states checked independently."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from search.review import QUICK, compute
from search.review.convolution import CausalConvForecaster, conv_equivalence, future_influence
from search.review.params import parameter_counts
from search.review.recurrent import WIDTH, build

ROOT = Path(__file__).resolve().parents[1]
FIGURES = ["clipping_init.png", "clipping_training.png", "memory_accuracy.png", "memory_gradient.png", "forecast.png"]


def review(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "search.review", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def stacked_count(cell: type[nn.RNNBase], input_size: int, hidden: list[int], classes: int, biases: int) -> int:
    """Parameters of real PyTorch layers; with biases=1 the hidden-to-hidden bias is left out."""
    sizes = [input_size] + hidden
    layers = [cell(a, b) for a, b in zip(sizes, sizes[1:])]
    count = sum(p.numel() for layer in layers for name, p in layer.named_parameters()
                if biases == 2 or not name.startswith("bias_hh"))
    return count + sum(p.numel() for p in nn.Linear(hidden[-1], classes).parameters())


@pytest.fixture(scope="module")
def quick_report(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("review-out")
    done = review("--quick", "--seeds", "1", "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(out / "review" / "report.md")
    return out / "review"


@pytest.mark.slow
def test_quick_run_writes_the_report_its_figures_and_data(quick_report):
    text = (quick_report / "report.md").read_text()
    for name in FIGURES:
        assert f"]({name})" in text
        assert (quick_report / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "`python -m search.review --quick --seeds 1 --out " in text
    assert re.search(r"in \d+ min \d\d s of wall time", text)
    # Every figure's caption says how many seeds and training steps it rests on.
    captions = re.findall(r"^\*Figure: .*\*$", text, flags=re.M)
    assert len(captions) == len(FIGURES)
    for caption in captions:
        assert "1 seed (0)" in caption and re.search(r"\d+ (training|SGD) steps|0 training steps", caption)
    data = json.loads((quick_report / "results.json").read_text())
    assert data["run"]["quick"] is True and data["run"]["seeds"] == [0]
    assert not list(quick_report.glob(".*"))  # no temporary file left behind


@pytest.mark.slow
def test_parameter_counts_in_the_report_match_built_pytorch_modules(quick_report):
    text = (quick_report / "report.md").read_text()
    for name, cell in (("Elman RNN", nn.RNN), ("LSTM", nn.LSTM), ("GRU", nn.GRU)):
        row = re.search(rf"^\| {name} \(\d gates?\) \| ([\d,]+) \| ([\d,]+) \| ([\d,]+) \| ([\d,]+) \| ([\d,]+) \|$",
                        text, flags=re.M)
        assert row, name
        pytorch, built, textbook, textbook_built, difference = (int(v.replace(",", "")) for v in row.groups())
        assert pytorch == built == stacked_count(cell, 30, [32, 64], 10, biases=2)
        assert textbook == textbook_built == stacked_count(cell, 30, [32, 64], 10, biases=1)
        assert difference == pytorch - textbook
    # The question's two answers, spelled out: one bias vector per gate and layer apart.
    assert stacked_count(nn.RNN, 30, [32, 64], 10, 2) - stacked_count(nn.RNN, 30, [32, 64], 10, 1) == 32 + 64
    assert stacked_count(nn.LSTM, 30, [32, 64], 10, 2) - stacked_count(nn.LSTM, 30, [32, 64], 10, 1) == 4 * (32 + 64)


def test_parameter_counts_equal_width_models_agree():
    counts = parameter_counts()
    assert len(counts["equal_width"]) == 6
    for row in counts["equal_width"]:
        assert row["formula"] == row["built"]
    (rnn,) = [r for r in counts["stacked"] if r["family"] == "rnn"]
    assert rnn["pytorch"] == rnn["pytorch_built"] and rnn["textbook"] == rnn["textbook_built"]


@pytest.mark.slow
def test_report_states_conv1d_equals_conv2d_and_causal_rows_see_no_future(quick_report):
    text = (quick_report / "report.md").read_text()
    for layer in (r"`Conv2d\(F, C, \(w, 1\)\)`", r"`Conv2d\(1, C, \(w, F\)\)`"):
        row = re.search(rf"^\| {layer} \|.*\| ([\d,]+) \| ([-\d.e]+) \(equal\) \|$", text, flags=re.M)
        assert row, layer
        assert int(row.group(1).replace(",", "")) == 9 * 16 * 5 + 16
        assert float(row.group(2)) < 1e-5
    causal = re.findall(r"^\| causal, \d+ layers? \| \d+ \|.*\| ([-\d.e]+) \|$", text, flags=re.M)
    assert causal and all(float(v) == 0.0 for v in causal)
    leaking = re.search(r"^\| same padding, .*\| ([-\d.e]+) \|$", text, flags=re.M)
    assert float(leaking.group(1)) > 0


@pytest.mark.parametrize("features,kernel", [(9, 5), (3, 1), (30, 7)])
def test_conv1d_with_kernel_w_equals_conv2d_with_kernel_w_by_1(features, kernel):
    result = conv_equivalence(batch=2, features=features, time=40, out_channels=8, kernel_size=kernel, seed=1)
    assert result["conv2d_w1"]["max_abs_diff"] < 1e-5
    assert result["conv2d_image"]["max_abs_diff"] < 1e-5
    assert result["conv1d"]["params"] == result["conv2d_w1"]["params"] == 8 * features * kernel + 8
    # The one-channel image layout with kernel (w, 1) is another model: one filter per output, shared by features.
    assert result["conv2d_per_feature"]["output"] == [2, 8, 40 - kernel + 1, features]


def test_causal_forecaster_cannot_see_the_future():
    torch.manual_seed(0)
    model = CausalConvForecaster(layers=4, channels=8, kernel_size=3)
    series = torch.randn(3, 120)
    for cut in (0, 30, 118):
        changed = series.clone()
        changed[:, cut + 1:] += 5 * torch.randn(3, 119 - cut)
        with torch.no_grad():
            before, after = model(series), model(changed)
        assert torch.equal(before[:, :cut + 1], after[:, :cut + 1])
        assert not torch.equal(before[:, cut + 1:], after[:, cut + 1:])
    assert future_influence(model, 200, 100) == 0.0
    # The same weights with "same" padding read the future: the check catches it.
    leaking = CausalConvForecaster(layers=4, channels=8, kernel_size=3, causal=False)
    leaking.load_state_dict(model.state_dict())
    assert future_influence(leaking, 200, 100) > 0.0


def test_receptive_field_is_what_the_output_reads():
    torch.manual_seed(0)
    model = CausalConvForecaster(layers=3, channels=4, kernel_size=3)  # 1 + 2 * (1 + 2 + 4) = 15
    assert model.receptive_field == 15
    series = torch.randn(1, 60)
    t = 50
    for offset, changes in ((model.receptive_field - 1, True), (model.receptive_field, False)):
        changed = series.clone()
        changed[0, t - offset] += 100.0  # a large change, so a read sample changes output t through the ReLUs
        with torch.no_grad():
            moved = float((model(series)[0, t] - model(changed)[0, t]).abs())
        assert (moved > 0) == changes, offset


def test_chrono_initialisation_sets_forget_and_input_biases():
    model = build("lstm", 50, seed=0, chrono=True)
    forget = model.rnn.bias_ih_l0[WIDTH:2 * WIDTH] + model.rnn.bias_hh_l0[WIDTH:2 * WIDTH]
    entry = model.rnn.bias_ih_l0[:WIDTH] + model.rnn.bias_hh_l0[:WIDTH]
    assert torch.all(forget >= 0) and torch.all(forget <= torch.log(torch.tensor(49.0)))
    assert torch.allclose(entry, -forget)


@pytest.mark.slow
def test_seeds_fix_the_numbers():
    first, second = compute(QUICK, [0]), compute(QUICK, [0])
    for data in (first, second):
        data.pop("run")
    assert json.dumps(first, sort_keys=True) == json.dumps(second, sort_keys=True)


@pytest.mark.parametrize("args,message", [
    (["--seeds", "0"], "--seeds must be an int >= 1, got 0"),
    (["--threads", "0"], "--threads must be an int >= 1, got 0"),
    (["--seeds", "two"], "argument --seeds: invalid int value: 'two'"),
    (["--bogus"], "unrecognized arguments: --bogus"),
])
@pytest.mark.slow
def test_bad_arguments_give_one_line_and_exit_2(tmp_path, args, message, cli):
    done = cli("search.review.__main__", "--quick", "--out", str(tmp_path), *args)  # in this process; the next test
    # runs the command as a user does
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [f"error: {message}"]
    assert not (tmp_path / "review").exists()


@pytest.mark.slow
def test_out_that_is_a_file_is_refused(tmp_path):
    target = tmp_path / "taken"
    target.write_text("not a folder")
    done = review("--quick", "--out", str(target))
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"error: --out '{target / 'review'}': cannot create the folder ({target} is not a writable folder)"]
    assert target.read_text() == "not a folder"
    assert target.read_text() == "not a folder"
