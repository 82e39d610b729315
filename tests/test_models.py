"""The model zoo: every family builds for both tasks, parameter counts in closed form, padding-invariant."""
from __future__ import annotations

import itertools
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from models import FAMILIES, ModelSpec, create_model, module_param_count, param_count, recurrent_params

pytestmark = pytest.mark.usefixtures("one_torch_thread")

ROOT = Path(__file__).resolve().parents[1]


def shapes(task):
    return task.input_size, task.num_classes, task.seq_len


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_every_family_returns_logits_for_both_tasks(family, har_task, names_task):
    for task in (har_task, names_task):
        torch.manual_seed(0)
        model = create_model(ModelSpec(family, layers=2, width=16), *shapes(task)).eval()
        lengths = task.val.lengths[:8]
        x = task.val.x[:8, : int(lengths.max())]
        logits = model(x, lengths)
        assert logits.shape == (8, task.num_classes)
        assert bool(torch.isfinite(logits).all())


@pytest.mark.slow
def test_closed_form_count_equals_the_built_module(har_task, names_task):
    task_shapes = {shapes(har_task), shapes(names_task)}
    assert len(task_shapes) == 2
    checked = 0
    for family, layers, width, bidirectional, kernel, (inputs, classes, seq_len) in itertools.product(
            sorted(FAMILIES), (1, 2, 3), (1, 8, 33), (False, True), (1, 4, 5), sorted(task_shapes)):
        spec = ModelSpec(family, layers=layers, width=width, bidirectional=bidirectional, kernel_size=kernel)
        built = module_param_count(create_model(spec, inputs, classes, seq_len))
        assert param_count(spec, inputs, classes, seq_len) == built, spec
        checked += 1
    assert checked == len(FAMILIES) * 3 * 3 * 2 * 3 * 2


@pytest.mark.parametrize("norm", [False, True])
def test_closed_form_count_with_conv_front_ends_and_batch_norm(norm):
    specs = [ModelSpec("conv1d", layers=layers, width=width, kernel_size=kernel, norm=norm)
             for layers in (1, 3) for width in (1, 33) for kernel in (1, 5)]
    specs += [ModelSpec(family, layers=2, width=8, frontend=frontend, kernel_size=3, bidirectional=True, norm=norm)
              for family in ("rnn", "lstm", "gru") for frontend in (0, 7)]
    for spec in specs:
        assert param_count(spec, 9, 6, 128) == module_param_count(create_model(spec, 9, 6, 128)), spec
    # Batch norm adds a scale and a shift per channel of each convolution, nothing else.
    plain, normed = ModelSpec("conv1d", layers=3, width=10), ModelSpec("conv1d", layers=3, width=10, norm=True)
    assert param_count(normed, 9, 6, 128) - param_count(plain, 9, 6, 128) == 3 * 2 * 10


def test_recurrent_formula_by_hand():
    # One-layer LSTM, 9 inputs, 20 units, 6 classes: 4 gates x (20*9 + 20*20 + 2*20), then 20*6 + 6.
    assert recurrent_params(4, 9, [20], 6) == 4 * (180 + 400 + 40) + 126 == 2606
    # Bidirectional: two directions per layer, and the next layer (and the head) sees 2h inputs.
    assert recurrent_params(1, 9, [20, 20], 6, bidirectional=True) == \
        2 * (20 * 9 + 400 + 40) + 2 * (20 * 40 + 400 + 40) + 40 * 6 + 6
    assert recurrent_params(3, 9, [20], 6, biases=1) == 3 * (180 + 400 + 20) + 126


def test_unknown_family_lists_the_known_ones():
    with pytest.raises(ValueError) as error:
        create_model(ModelSpec("transformer"), 9, 6, 128)
    message = str(error.value)
    assert "'transformer'" in message
    assert all(family in message for family in FAMILIES)
    assert set(FAMILIES) == {"linear", "dense", "conv1d", "rnn", "lstm", "gru", "fcn", "resnet", "inception",
                             "minirocket"}
    with pytest.raises(ValueError, match="family must be one of"):
        param_count(ModelSpec("transformer"), 9, 6, 128)


@pytest.mark.parametrize("field, value, message", [
    ("width", 0, "width must be an int >= 1, got 0"),
    ("width", 2.5, "width must be an int >= 1, got 2.5"),
    ("width", True, "width must be an int >= 1, got True"),
    ("layers", 0, "layers must be an int >= 1, got 0"),
    ("kernel_size", -3, "kernel_size must be an int >= 1, got -3"),
    ("ngrams", -1, "ngrams must be an int >= 0, got -1"),
    ("dropout", 1.0, "dropout must be a float in [0, 1), got 1.0"),
    ("dropout", -0.1, "dropout must be a float in [0, 1), got -0.1"),
    ("bidirectional", "yes", "bidirectional must be a bool, got 'yes'"),
    ("norm", 1, "norm must be a bool, got 1"),
])
def test_bad_spec_values_name_the_field(field, value, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        ModelSpec("lstm", **{field: value})


PADDING_SPECS = [ModelSpec(family, layers=layers, width=12, bidirectional=bidirectional)
                 for family in ("rnn", "lstm", "gru") for layers in (1, 2) for bidirectional in (False, True)]
PADDING_SPECS += [ModelSpec("conv1d", layers=2, width=12, kernel_size=k) for k in (3, 4)]
PADDING_SPECS += [ModelSpec("conv1d", layers=2, width=12, kernel_size=3, pool=2, norm=True),
                  ModelSpec("gru", width=12, frontend=8, kernel_size=3, norm=True)]
PADDING_SPECS += [ModelSpec("fcn", layers=3, width=6), ModelSpec("resnet", layers=2, width=6),
                  ModelSpec("inception", layers=3, width=4, kernel_size=10), ModelSpec("minirocket", width=8)]
PADDING_SPECS += [ModelSpec("dense", layers=2, width=12), ModelSpec("linear"),
                  ModelSpec("conv1d", layers=1, width=12, kernel_size=3, ngrams=4)]


def spec_id(spec: ModelSpec) -> str:
    return (f"{spec.family}-l{spec.layers}-bi{int(spec.bidirectional)}-k{spec.kernel_size}" + ("-norm" if spec.norm else "")
            + (f"-ngrams{spec.ngrams}" if spec.ngrams else ""))


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel lengths")
@pytest.mark.parametrize("spec", PADDING_SPECS, ids=spec_id)
def test_padding_does_not_change_the_prediction(spec, names_task):
    part = names_task.val
    short = int(torch.nonzero(part.lengths == 4)[0])
    longer = [int(torch.nonzero(part.lengths == n)[0]) for n in (9, 12)]
    torch.manual_seed(0)
    model = create_model(spec, *shapes(names_task))
    with torch.no_grad():
        model(part.x[:64], part.lengths[:64])  # a training-mode batch: batch norm gets real running statistics
    model.eval()
    with torch.no_grad():
        alone = model(part.x[short:short + 1, :4], part.lengths[short:short + 1])
        index = torch.tensor([longer[0], short, longer[1]])  # the short name in the middle of the batch
        batch = model(part.x[index, :12], part.lengths[index])
    assert part.x[index, :12].shape == (3, 12, names_task.input_size)
    torch.testing.assert_close(batch[1:2], alone, atol=1e-5, rtol=0)
    # The neighbours are predicted as they would be alone too.
    with torch.no_grad():
        alone_long = model(part.x[longer[1]:longer[1] + 1, :12], part.lengths[longer[1]:longer[1] + 1])
    torch.testing.assert_close(batch[2:3], alone_long, atol=1e-5, rtol=0)


def test_ngram_ids_are_the_char_wb_ngrams_of_each_word():
    """The hashed n-grams are scikit-learn's char_wb n-grams (the word framed by spaces), each read as a number
    in base V + 2 (unknown 1, the alphabet 2.., the frame V + 1), mixed (models.ngrams.mix), modulo the bucket count."""
    from sklearn.feature_extraction.text import CountVectorizer
    from data.names import encode
    from models.ngrams import BUCKETS, mix, ngram_ids
    alphabet = {"a": 1, "b": 2, "c": 3}
    vocab = len(alphabet) + 1
    digit = {**{ch: i + 1 for ch, i in alphabet.items()}, " ": vocab + 1}  # "g" and "e" are unknown: 1
    # Words of every length against the longest gram, among them a batch of words shorter than it (a study's
    # last short batch, or one name to predict).
    for words, seq_len, order in ((["ab", "cabbage", "b", "abcabcab"], 8, 4), (["b", "ab"], 2, 5)):
        x, lengths = encode(words, alphabet, seq_len)
        ids, real = ngram_ids(x, lengths, order)
        analyse = CountVectorizer(analyzer="char_wb", ngram_range=(1, order), lowercase=False).build_analyzer()
        for row, word in enumerate(words):
            expected = []
            for gram in analyse(word):
                number = 0
                for ch in gram:
                    number = number * (vocab + 2) + digit.get(ch, 1)
                expected.append(int(mix(torch.tensor(number))) % BUCKETS)
            assert sorted(ids[row][real[row]].tolist()) == sorted(expected), (word, order)
        assert int(real[words.index("b")].sum()) == 3 + 2 + 1  # " b ": " ", "b", " ", " b", "b ", " b "


def test_an_ngram_part_adds_its_rows_to_any_family(names_task):
    from models.ngrams import BUCKETS
    for family in ("gru", "conv1d", "linear"):
        plain, spec = ModelSpec(family, width=8), ModelSpec(family, width=8, ngrams=3)
        added = param_count(spec, *shapes(names_task)) - param_count(plain, *shapes(names_task))
        assert added == BUCKETS * names_task.num_classes
        assert module_param_count(create_model(spec, *shapes(names_task))) == param_count(spec, *shapes(names_task))
    # Its weights start at zero: before training, the logits are the network's alone.
    torch.manual_seed(0)
    plain = create_model(ModelSpec("conv1d", width=8), *shapes(names_task)).eval()
    torch.manual_seed(0)
    wide = create_model(ModelSpec("conv1d", width=8, ngrams=3), *shapes(names_task)).eval()
    part = names_task.val
    with torch.no_grad():
        torch.testing.assert_close(wide(part.x[:16], part.lengths[:16]), plain(part.x[:16], part.lengths[:16]))


def params_cli(*args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "models.params", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def counts(output: str) -> tuple[int, int, int]:
    pytorch = int(re.search(r"PyTorch \(b_ih \+ b_hh per layer\): (\d+)", output).group(1))
    built = int(re.search(r"built modules: (\d+)", output).group(1))
    textbook = int(re.search(r"textbook/Keras \(one bias\):\s+(\d+)", output).group(1))
    return pytorch, built, textbook


def by_hand(gates: int) -> tuple[int, int]:
    """Per layer gates * (h*in + h*h + b*h), b = 2 biases (PyTorch) or 1 (textbook); layer 1: in=30, h=32;
    layer 2: in=32, h=64; then a dense layer 64 -> 10 with its bias."""
    head = 64 * 10 + 10
    pytorch = gates * (32 * 30 + 32 * 32 + 2 * 32) + gates * (64 * 32 + 64 * 64 + 2 * 64) + head
    textbook = gates * (32 * 30 + 32 * 32 + 1 * 32) + gates * (64 * 32 + 64 * 64 + 1 * 64) + head
    return pytorch, textbook


@pytest.mark.parametrize("family, gates, review", [("rnn", 1, (8970, 8874)), ("lstm", 4, (33930, 33546))])
@pytest.mark.slow
def test_review_numbers_of_models_params(family, gates, review):
    pytorch, textbook = by_hand(gates)
    assert (pytorch, textbook) == review
    output = params_cli(family, "--input", "30", "--hidden", "32", "64", "--classes", "10")
    print(output)
    assert counts(output) == (pytorch, pytorch, textbook)


@pytest.mark.slow
def test_models_params_gru_and_its_arguments(capsys):
    from models import params

    params.main(["gru", "--input", "30", "--hidden", "32", "64", "--classes", "10", "--seq-len", "100"])
    output = capsys.readouterr().out
    pytorch, textbook = by_hand(3)
    assert counts(output) == (pytorch, pytorch, textbook)
    assert "seq_len=100 (does not change the count)" in output
    with pytest.raises(SystemExit) as exit_:
        params.main(["rnn", "--input", "0", "--hidden", "8", "--classes", "2"])
    assert exit_.value.code == 2
    assert "--input must be an int >= 1, got 0" in capsys.readouterr().err


@pytest.mark.slow
def test_models_params_refuses_a_negative_seq_len_and_counts_huge_sizes_without_building(capsys):
    from models import params

    with pytest.raises(SystemExit) as exit_:
        params.main(["rnn", "--input", "30", "--hidden", "32", "--classes", "10", "--seq-len", "-5"])
    assert exit_.value.code == 2 and "--seq-len must be an int >= 1, got -5" in capsys.readouterr().err
    params.main(["lstm", "--input", "30", "--hidden", "1000000", "--classes", "10"])  # 16 TB if built
    output = capsys.readouterr().out
    assert f"{recurrent_params(4, 30, [1_000_000], 10)}  (built modules: not built, 16000.6 GB of weights)" in output
