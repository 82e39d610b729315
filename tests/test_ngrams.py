"""The hashed character n-grams of models/ngrams.py: every alphabet spreads its grams like a uniform hash."""
from __future__ import annotations

from collections import Counter

import pytest
import torch

from conftest import NAMES_DIR
from data.names import encode, normalise
from models.ngrams import BUCKETS, PRIME, mix, ngram_ids

ORDER = 5


def surnames() -> list[str]:
    """The distinct surnames of the real names data, read without the loader."""
    return sorted({normalise(line) for file in NAMES_DIR.glob("*.txt")
                   for line in file.read_text(encoding="utf-8").splitlines() if line.strip()})


def distinct_grams(words: list[str], alphabet: dict[str, int], order: int) -> int:
    """How many different 1..order-grams the words hold, each framed by a boundary and with the characters
    outside the alphabet read as one unknown character (as the one-hot encoding reads them)."""
    grams = set()
    for word in words:
        framed = "\0" + "".join(ch if ch in alphabet else "\1" for ch in word) + "\0"
        grams.update(framed[i:i + n] for n in range(1, order + 1) for i in range(len(framed) - n + 1))
    return len(grams)


@pytest.mark.slow
@pytest.mark.parametrize("base", [62, 63, 64])
def test_rows_used_match_a_uniform_hash_for_every_alphabet_size(base):
    """V + 2 = base: an alphabet of base - 3 characters (+ the unknown slot and the boundary). The names folds'
    training alphabets have 60 or 61 characters; the rarest ones drop out (unknown), or unused letters join."""
    words = surnames()
    frequent = [ch for ch, _ in Counter("".join(words)).most_common()]
    letters = (frequent + [chr(0x0400 + i) for i in range(base)])[:base - 3]
    alphabet = {ch: i + 1 for i, ch in enumerate(sorted(letters))}
    x, lengths = encode(words, alphabet, max(map(len, words)))
    assert x.shape[2] + 2 == base
    ids, real = ngram_ids(x, lengths, ORDER)
    used = len(torch.unique(ids[real]))
    grams = distinct_grams(words, alphabet, ORDER)
    assert grams > BUCKETS  # the names data fills the table: collisions are certain, their number is the test
    expected = BUCKETS * (1 - (1 - 1 / BUCKETS) ** grams)  # occupied rows when each gram picks one at random
    # The spread of a uniform hash's count is about 0.2 % here; reducing the plain base-(V+2) number used
    # 13 % of the expected rows at base 64.
    assert used == pytest.approx(expected, rel=0.01), (used, round(expected), grams)


def test_grams_of_a_large_alphabet_are_numbered_modulo_the_prime_without_overflow():
    """A user's text may hold thousands of characters: a 5-gram's number in base V + 2 then exceeds int64's
    range unless it is reduced as it is built; each id is the exact number's remainder, mixed."""
    vocab = 5000  # 4,999 characters + the unknown slot
    torch.manual_seed(0)
    letters = torch.randint(0, vocab, (8, 6))
    x = torch.nn.functional.one_hot(letters, vocab).float()
    lengths = torch.tensor([6, 5, 4, 3, 2, 1, 6, 6])
    ids, real = ngram_ids(x, lengths, ORDER)
    assert (ids >= 0).all() and (ids < BUCKETS).all()
    for row in range(len(letters)):
        digits = [vocab + 1] + [d + 1 for d in letters[row, :lengths[row]].tolist()] + [vocab + 1]
        expected = []
        for n in range(1, ORDER + 1):
            for i in range(len(digits) - n + 1):
                number = 0
                for d in digits[i:i + n]:
                    number = number * (vocab + 2) + d  # exact (a Python int), reduced only at the end
                expected.append(int(mix(torch.tensor(number % PRIME))) % BUCKETS)
        assert sorted(ids[row][real[row]].tolist()) == sorted(expected)


def test_mix_stays_in_31_bits_and_separates_neighbours():
    numbers = torch.arange(PRIME - 100_000, PRIME)
    mixed = mix(numbers)
    assert (mixed >= 0).all() and (mixed < 2 ** 31).all()
    # Neighbouring numbers (grams that differ in their last character) land far apart.
    assert len(torch.unique(mixed[:4096] % BUCKETS)) > 0.9 * 4096


def test_a_splits_ids_computed_once_give_every_batch_the_logits_of_the_batch_alone(names_task):
    """Training computes a split's n-gram ids once (search.batching.DeviceSplit); each batch cut from them, at
    its own width, holds exactly the ids of that batch, so the model's logits are the same to the bit."""
    from models import create_model
    from models.spec import ModelSpec
    from search.batching import DeviceSplit, batches, epoch_order
    torch.manual_seed(0)
    model = create_model(ModelSpec("conv1d", layers=1, width=8, ngrams=ORDER), names_task.input_size,
                         names_task.num_classes, names_task.seq_len).eval()
    torch.nn.init.normal_(model.ngrams.weight)  # rows no longer zero: the n-gram part counts
    split = DeviceSplit(names_task.val, torch.device("cpu"), ngrams=ORDER)
    generator = torch.Generator().manual_seed(0)
    widths = set()
    with torch.no_grad():
        for index in list(batches(epoch_order(names_task.val, names_task.num_classes, False, generator),
                                  split.cpu_lengths, 64, generator))[:20]:
            x, _, lengths, extra = split.take(index)
            widths.add(x.shape[1])
            assert torch.equal(extra[0], ngram_ids(x, lengths, ORDER)[0])
            assert torch.equal(model(x, lengths, *extra), model(x, lengths))
    assert len(widths) > 3  # batches of many widths, each cut from the one split's ids
    # A model without an n-gram part gets no extra inputs.
    assert DeviceSplit(names_task.val, torch.device("cpu")).take(torch.arange(4))[3] == ()
