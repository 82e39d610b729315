"""The review's tables without training: kinds of sequence tasks, and recurrent parameter counts.

Counts come from the project's closed-form counter (`models.recurrent_params`, `models.param_count`)
and are checked against modules PyTorch builds; nothing here counts parameters a second way by formula.
"""
from __future__ import annotations

from torch import nn

from models import ModelSpec, create_model, module_param_count, param_count, recurrent_params
from models.params import CELLS, GATES, built_count

TASK_KINDS = [  # (kind, input -> output, example, covered here)
    ("many-to-one", "sequence -> one label", "activity from a window of inertial signals; a surname's language",
     "yes: the HAR and names studies, and the review's first-symbol task"),
    ("many-to-many, aligned", "one output per input step", "part-of-speech tagging; frame-wise speech labels; "
     "forecasting the next value at every step", "yes: the review's causal Conv1d forecaster (one forecast per step)"),
    ("many-to-many, not aligned", "sequence -> sequence of another length", "machine translation; speech "
     "recognition to text (encoder-decoder, CTC)", "no"),
    ("one-to-many", "one input -> a sequence", "image captioning; music or text generated from a seed",
     "no"),
]

QUESTION = {"input_size": 30, "hidden": [32, 64], "classes": 10, "seq_len": 100}


def textbook_built_count(family: str, input_size: int, hidden: list[int], classes: int) -> int:
    """Built PyTorch modules counted with one bias per gate: every b_hh is left out (b_ih + b_hh act as one)."""
    sizes = [input_size] + hidden
    cells = [CELLS[family](a, b) for a, b in zip(sizes, sizes[1:])]
    recurrent = sum(p.numel() for cell in cells for name, p in cell.named_parameters()
                    if not name.startswith("bias_hh"))
    return recurrent + sum(p.numel() for p in nn.Linear(hidden[-1], classes).parameters())


def parameter_counts() -> dict:
    """The question's two-layer models (hidden 32 then 64), both bias conventions; and the project's
    equal-width two-layer models (width 32 and 64) as create_model builds them."""
    q = QUESTION
    stacked = []
    for family in ("rnn", "lstm", "gru"):
        stacked.append({
            "family": family, "gates": GATES[family],
            "pytorch": recurrent_params(GATES[family], q["input_size"], q["hidden"], q["classes"], biases=2),
            "pytorch_built": built_count(family, q["input_size"], q["hidden"], q["classes"]),
            "textbook": recurrent_params(GATES[family], q["input_size"], q["hidden"], q["classes"], biases=1),
            "textbook_built": textbook_built_count(family, q["input_size"], q["hidden"], q["classes"]),
        })
    equal_width = []
    for family in ("rnn", "lstm", "gru"):
        for width in q["hidden"]:
            spec = ModelSpec(family=family, layers=2, width=width)
            model = create_model(spec, q["input_size"], q["classes"], q["seq_len"])
            equal_width.append({"family": family, "width": width,
                                "formula": param_count(spec, q["input_size"], q["classes"], q["seq_len"]),
                                "built": module_param_count(model)})
    return {"question": q, "stacked": stacked, "equal_width": equal_width}
