"""MiniRocket's features (Dempster et al. 2021) with a linear classifier trained in the training loop.

The transform is MiniRocket's, in torch: its 84 fixed kernels of length 9 (weights -1, and 2 at three
of the nine taps), each at the dilations MiniRocket chooses for the sequence length, each kernel and
dilation summing a random subset of 1..min(channels, 9) channels (its multivariate form). A feature is
the proportion of positive values (PPV) of one convolution output minus one bias; its biases are
quantiles (MiniRocket's low-discrepancy sequence) of that convolution's output on one training example.
Nothing in the transform is learnt: `fit_features`, which the training loop calls once before the first epoch,
fits the biases on the whole training split as MiniRocket does (one training example drawn at random for each
kernel and dilation, whatever the batch size), and they are kept in a buffer with the random channel choices,
so an exported model predicts as trained. On up to RIDGE_MOST training examples it also starts the head where
MiniRocket ends: ridge regression on the standardised features, its alpha chosen by leave-one-out error as
scikit-learn's RidgeClassifierCV chooses it (closed form; a learning rate near 0 then keeps MiniRocket itself).
As in MiniRocket, every other kernel/dilation pair counts PPV over the 'valid' steps only.

`width` is the number of features per kernel (84 * width features; MiniRocket's default 10,000 is
width 119). The features are standardised by the training split's mean and variance (kept in a batch norm's
running statistics, never updated by training: the scikit-learn pipeline's StandardScaler), then `dropout` and
the linear classifier, the only trained parameters.
`layers`, `kernel_size`, `norm` and `pool` are not read. PPV counts each sequence's real steps only
(padding is zeros beyond its length, as 'same' convolution pads), so padding never changes a feature.
"""
from __future__ import annotations

import hashlib
import itertools
import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .conv1d import step_mask
from .registry import register
from .spec import ModelSpec

TAPS = 9
KERNELS = len(list(itertools.combinations(range(TAPS), 3)))  # 84
MAX_DILATIONS = 32  # MiniRocket's max_dilations_per_kernel
CACHE_BYTES = 2 ** 30  # per model: HAR's splits at MiniRocket's 10,000 features fit
# The ridge start's eigendecomposition of the examples' Gram matrix costs 2 s at 2,000 examples and 18 s at 4,000
# (one core); on HAR's thousands the trained head beat ridge on validation anyway (bench/README.md, "A user's file").
RIDGE_MOST = 3_000
ALPHAS = torch.logspace(-3, 3, 10, dtype=torch.float64)  # RidgeClassifierCV's grid in the MiniRocket baseline


def kernel_weights() -> torch.Tensor:
    """(84, 9): -1 everywhere, 2 at each choice of three taps."""
    weights = -torch.ones(KERNELS, TAPS)
    for k, taps in enumerate(itertools.combinations(range(TAPS), 3)):
        weights[k, list(taps)] = 2.0
    return weights


def fit_dilations(seq_len: int, per_kernel: int) -> tuple[list[int], list[int]]:
    """MiniRocket's dilations for this length and how many features (biases) each gets per kernel."""
    true_max = min(per_kernel, MAX_DILATIONS)
    max_exponent = max(0.0, math.log2((seq_len - 1) / (TAPS - 1))) if seq_len > 1 else 0.0
    dilations, counts = np.unique(np.logspace(0, max_exponent, true_max, base=2).astype(np.int32),
                                  return_counts=True)
    counts = (counts * (per_kernel / true_max)).astype(np.int32)
    for i in range(per_kernel - int(counts.sum())):  # the remainder, one each from the smallest dilation
        counts[i % len(counts)] += 1
    return [int(d) for d in dilations], [int(c) for c in counts]


def masked(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """(B, T, C) -> (B, C, T) with every step past a sequence's length zeroed: what the convolutions read."""
    return x.transpose(1, 2) * step_mask(lengths, x.shape[1])


def quantiles(n: int) -> torch.Tensor:
    """MiniRocket's bias quantiles: the fractional parts of 1..n times the golden ratio."""
    return torch.from_numpy((np.arange(1, n + 1) * ((np.sqrt(5) + 1) / 2)) % 1).float()


def example_quantiles(conv: torch.Tensor, lengths: torch.Tensor, q: torch.Tensor, first: int) -> torch.Tensor:
    """(84, n) quantiles q (84, n) of kernel k's output on batch example (first + k) mod B, over its real steps
    (numpy's 'linear' interpolation)."""
    batch, kernels, steps = conv.shape
    examples = (first + torch.arange(kernels, device=conv.device)) % batch
    rows = conv[examples, torch.arange(kernels, device=conv.device)]  # (84, T)
    real = lengths[examples].clamp(min=1)[:, None]
    ordered = rows.masked_fill(torch.arange(steps, device=conv.device) >= real, float("inf")).sort(-1).values
    position = q * (real - 1)
    low = position.floor().long()
    high = torch.minimum(low + 1, real - 1)
    below, above = ordered.gather(1, low), ordered.gather(1, high)
    return below + (above - below) * (position - low)


def count_above(conv: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """(B, 84, n): how many steps of each output row (B, 84, T) exceed each of its kernel's n biases (84, n).

    One float pass per bias (subtract, then sign and relu in place: ops with a vmap rule), not one boolean tensor
    of all biases at once, nor a sort or binary search of the steps: those were slower on the CPU (bench/README.md)."""
    return torch.stack([(conv - bias[:, j, None]).sign_().relu_().sum(-1) for j in range(bias.shape[1])], -1)


@register("minirocket")
class MiniRocketClassifier(nn.Module):
    def __init__(self, spec: ModelSpec, input_size: int, num_classes: int, seq_len: int):
        super().__init__()
        self.dilations, self.counts = fit_dilations(seq_len, spec.width)
        combinations = len(self.dilations) * KERNELS
        # Channels of each kernel and dilation, drawn from torch's generator (the seed) on the CPU, also when
        # the model is built on the meta device: an exported model reloads them with its weights.
        most = min(input_size, TAPS)
        chosen = (2 ** (torch.rand(combinations, device="cpu") * math.log2(most + 1))).long().clamp(1, most)
        rank = torch.rand(combinations, input_size, device="cpu").argsort(1).argsort(1)
        self.register_buffer("channels", (rank < chosen[:, None]).float().view(len(self.dilations), KERNELS, -1))
        self.register_buffer("weights", kernel_weights(), persistent=False)
        features = KERNELS * sum(self.counts)
        self.register_buffer("quantiles", quantiles(features), persistent=False)
        self.register_buffer("biases", torch.zeros(features))
        self.register_buffer("fitted", torch.zeros((), dtype=torch.bool))
        self.norm = nn.BatchNorm1d(features, affine=False)
        self.dropout = nn.Dropout(spec.dropout)
        self.head = nn.Linear(features, num_classes)
        self.cache: dict[bytes, torch.Tensor] = {}  # an example's features, once the biases are fitted
        self.cache_version = -1

    def cached(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """transform(x, lengths), each example's features computed once: the transform is fixed once fitted,
        so epochs after the first train the head alone. Off under vmap (stacked seeds) and off the CPU."""
        wrapped = torch._C._functorch.is_functorch_wrapped_tensor
        if x.device.type != "cpu" or wrapped(x) or wrapped(self.biases) or not bool(self.fitted):
            return self.transform(x, lengths)
        if self.cache_version != self.biases._version:  # refitted or reloaded: the features changed
            self.cache, self.cache_version = {}, self.biases._version
        keys = [hashlib.blake2b(row.numpy().tobytes() + int(n).to_bytes(8, "little"), digest_size=16).digest()
                for row, n in zip(x, lengths)]
        missing = [i for i, key in enumerate(keys) if key not in self.cache]
        fresh = {}
        if missing:
            rows = self.transform(x[torch.tensor(missing)], lengths[torch.tensor(missing)])
            fresh = dict(zip((keys[i] for i in missing), rows))
            if len(self.cache) + len(fresh) <= CACHE_BYTES // max(rows[0].nbytes, 1):
                with torch.inference_mode(False):  # kept rows may meet a training step later
                    self.cache.update((key, row.clone()) for key, row in fresh.items())
        return torch.stack([fresh[key] if key in fresh else self.cache[key] for key in keys])

    @torch.no_grad()
    def fit_features(self, x: torch.Tensor, lengths: torch.Tensor, y: torch.Tensor | None = None) -> None:
        """Fit the biases to the training split (x, lengths): kernel k at each dilation takes its quantiles of its
        output on one training example drawn at random (torch's generator: the seed), as MiniRocket draws one.
        With the labels y of at most RIDGE_MOST examples, then start the head at ridge (see ridge_start)."""
        start = 0
        for i, count in enumerate(self.counts):
            pick = torch.randint(len(x), (KERNELS,), device="cpu").to(x.device)
            size = KERNELS * count
            conv = self.convolve(masked(x[pick], lengths[pick]), i)  # (84, 84, T): example k for kernel k
            fresh = example_quantiles(conv, lengths[pick], self.quantiles[start:start + size].view(KERNELS, count), 0)
            self.biases[start:start + size] = fresh.flatten()
            start += size
        self.fitted.fill_(True)
        # The training split's features, also the first epoch's (kept by `cached`), in chunks that bound memory.
        features = torch.cat([self.cached(x[i:i + 256], lengths[i:i + 256]) for i in range(0, len(x), 256)]).double()
        mean, var = features.mean(0), features.var(0, unbiased=False)
        self.norm.running_mean.copy_(mean)
        self.norm.running_var.copy_(var)
        if y is not None and 1 < len(x) <= RIDGE_MOST:
            self.ridge_start((features - mean) / torch.sqrt(var + self.norm.eps), y)

    def ridge_start(self, z: torch.Tensor, y: torch.Tensor) -> None:
        """The head := ridge regression of +-1 class targets on the standardised features z (float64) with an
        intercept, alpha from ALPHAS by the smallest leave-one-out squared error (RidgeClassifierCV's rule), in the
        dual form."""
        targets = torch.full((len(y), self.head.out_features), -1.0, dtype=torch.float64, device=z.device)
        targets[torch.arange(len(y)), y] = 1.0
        offset = targets.mean(0)
        eigenvalues, vectors = torch.linalg.eigh(z @ z.T)
        projected = vectors.T @ (targets - offset)
        # The constant direction is the intercept's, fitted exactly (no shrinkage, no leave-one-out term), as in
        # scikit-learn's _RidgeGCV: centring gives it eigenvalue 0, and 1 / alpha there would swamp the errors.
        constant = (vectors.sum(0)).abs().argmax()
        best = None
        for alpha in ALPHAS.to(z.device):
            inverse = 1.0 / (eigenvalues + alpha)
            inverse[constant] = 0.0
            dual = vectors @ (inverse[:, None] * projected)  # (K + alpha I)^-1 (targets - offset)
            error = (dual / (vectors ** 2 @ inverse)[:, None]).pow(2).mean()  # leave-one-out residuals
            if best is None or error < best[0]:
                best = (error, dual, float(alpha))
        self.head.weight.copy_((z.T @ best[1]).T)
        self.head.bias.copy_(offset)
        self.alpha = best[2]  # the chosen alpha, for a reader (not a buffer: the weights already hold it)

    def convolve(self, h: torch.Tensor, i: int) -> torch.Tensor:
        """(B, 84, T): the 84 kernels at dilation i over h = masked(x, lengths), zero padding ('same'), as past each
        sequence's end."""
        dilation = self.dilations[i]
        return F.conv1d(h, self.channels[i][:, :, None] * self.weights[:, None, :], padding=TAPS // 2 * dilation,
                        dilation=dilation)

    @torch.no_grad()
    def transform(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """(B, T, C) -> (B, 84 * width) PPV features at the fitted biases (zero until fit_features)."""
        steps = x.shape[1]
        real = step_mask(lengths, steps)
        h = masked(x, lengths)
        step = torch.arange(steps, device=x.device)
        features, start = [], 0
        for i, (dilation, count) in enumerate(zip(self.dilations, self.counts)):
            size = KERNELS * count
            conv = self.convolve(h, i)
            bias = self.biases[start:start + size].view(KERNELS, count)
            # Kernels alternate between PPV over all real steps and over the 'valid' ones (the edges cut): even
            # kernels at even dilations (odd at odd) take all, the others the valid steps, if a sequence has any.
            edge = TAPS // 2 * dilation
            cut = (lengths > 2 * edge)[:, None]
            valid = torch.where(cut, (step >= edge) & (step < lengths[:, None] - edge), real[:, 0])  # (B, T)
            inside = torch.stack([real[:, 0], valid] if i % 2 == 0 else [valid, real[:, 0]], 1)  # (B, 2, T)
            pairs = conv.reshape(len(x), KERNELS // 2, 2, steps).masked_fill(~inside[:, None], float("-inf"))
            above = count_above(pairs.reshape(len(x), KERNELS, steps), bias)  # (B, 84, n)
            taken = inside.sum(-1, keepdim=True).clamp(min=1).repeat(1, KERNELS // 2, 1)  # (B, 84, 1)
            features.append((above / taken).flatten(1))
            start += size
        return torch.cat(features, 1)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        # Standardised by the training split's statistics (fit_features), in training too: not batch statistics,
        # which move a ridge start and, over sparse PPV features, are noisy on small batches.
        features = F.batch_norm(self.cached(x, lengths), self.norm.running_mean, self.norm.running_var,
                                training=False, eps=self.norm.eps)
        return self.head(self.dropout(features))

    @staticmethod
    def param_count(spec: ModelSpec, input_size: int, num_classes: int, seq_len: int) -> int:
        features = KERNELS * sum(fit_dilations(seq_len, spec.width)[1])
        return features * num_classes + num_classes
