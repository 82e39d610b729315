"""A linear model over hashed character n-grams, added to any family's logits (a "wide and deep" model).

With `ngrams=N` (text only: the input must be one-hot characters), the logits are the network's plus
those of a linear model over the word's character 1..N-grams, the word framed by a boundary symbol as
scikit-learn's `char_wb` analyzer frames it. That linear part is what the n-gram logistic regression
baseline is, learnt jointly with the network: n-grams carry a language's spelling conventions, which
the recurrent and convolutional models found less reliably. Each n-gram is hashed into one of BUCKETS
rows of class weights (no vocabulary to fit or store: the model alone predicts), and a word's n-gram
logits are the sum of its grams' rows: their mean, or their sum over sqrt(count), learnt too slowly
(bench/README.md, "The n-gram part").
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# 2^16 rows: about as many as the names data's distinct 1-5-grams; more rows slow every AdamW step (dense over rows).
BUCKETS = 2 ** 16
# Hash arithmetic stays modulo the prime 2^31 - 1, so that no product of two numbers exceeds 2^62: int64
# never overflows, on any device. The constants are arbitrary odd numbers below the prime.
PRIME = 2 ** 31 - 1
MULTIPLY, ADD, REMIX = 0x5BD1E995, 0x27D4EB2F, 0x2C1B3C6D


def mix(number: torch.Tensor) -> torch.Tensor:
    """A gram's number (int64 in [0, PRIME)) scrambled into [0, 2^31): an affine map modulo the prime, then two
    xor-shifts around a second multiplication. Without mixing, the row would be the last few characters of
    a gram on some alphabets; the affine map alone still shows the base-(V+2) structure in the low bits."""
    number = (number * MULTIPLY + ADD) % PRIME
    number = number ^ (number >> 15)
    number = (number * REMIX) % PRIME
    return number ^ (number >> 13)


def ngram_ids(x: torch.Tensor, lengths: torch.Tensor, order: int, buckets: int = BUCKETS
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """The bucket of every character 1..order-gram of each one-hot word, and which of them are real.

    x (B, T, V) one-hot, lengths (B,). Characters are numbered 1..V and the boundary V+1; a gram's number in
    base V+2 is unique (no digit is 0), taken modulo PRIME as it is built; its row is mix(number) % buckets.
    Returns (B, order, W) ids and mask, W = frame_width(T, order): the n-gram starting at each framed position
    (False, id 0, where it runs past the word's closing boundary). The first W' positions are the same for
    any T' <= T, so a split's ids cut to a batch's width are that batch's ids (see cut)."""
    steps, vocab = x.shape[1:]
    width = frame_width(steps, order)
    position = torch.arange(width, device=x.device)[None, :]
    framed = F.pad(x.argmax(-1) + 1, (1, width - steps - 1))  # not in place: seeds train stacked under vmap
    framed = framed.masked_fill(position > lengths[:, None], 0)  # past the word: no character
    boundary = (position == 0) | (position == lengths[:, None] + 1)
    framed = framed.masked_fill(boundary, vocab + 1)
    ids, real = [], []
    for n in range(1, order + 1):
        windows = F.pad(framed, (0, n - 1)).unfold(1, n, 1)  # (B, width, n): past the frame, digit 0
        number = windows[..., 0]
        for k in range(1, n):
            number = (number * (vocab + 2) + windows[..., k]) % PRIME
        found = (windows > 0).all(-1)
        ids.append((mix(number) % buckets).masked_fill(~found, 0))
        real.append(found)
    return torch.stack(ids, 1), torch.stack(real, 1)


def frame_width(steps: int, order: int) -> int:
    """Framed positions of words padded to `steps`: a batch of short words (or one word of 1-2 letters) still
    holds an order-gram."""
    return max(steps + 2, order)


def cut(grams: tuple[torch.Tensor, torch.Tensor], steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A split's (ids, real) cut to a batch padded to `steps`: the ids ngram_ids gives that batch."""
    width = frame_width(steps, grams[0].shape[-2])
    return grams[0][..., :width], grams[1][..., :width]


class WithNgrams(nn.Module):
    """network(x, lengths) + the summed class weights of the word's hashed n-grams (zero at the start)."""

    def __init__(self, network: nn.Module, order: int, num_classes: int, buckets: int = BUCKETS):
        super().__init__()
        self.network, self.order, self.buckets = network, order, buckets
        self.ngrams = nn.Embedding(buckets, num_classes)
        nn.init.zeros_(self.ngrams.weight)  # starts as the network alone, as a logistic regression starts at 0

    def forward(self, x: torch.Tensor, lengths: torch.Tensor, ids: torch.Tensor | None = None,
                real: torch.Tensor | None = None) -> torch.Tensor:
        """ids, real: this batch's ngram_ids, when computed once for its whole split (search/batching.py)."""
        if ids is None:
            ids, real = ngram_ids(x, lengths, self.order, self.buckets)
        weights = self.ngrams(ids.flatten(-2)) * real.flatten(-2)[..., None]
        return self.network(x, lengths) + weights.sum(-2)

    @staticmethod
    def param_count(num_classes: int, buckets: int = BUCKETS) -> int:
        return buckets * num_classes
