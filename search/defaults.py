"""Defaults shared by the library and the command lines, defined once."""
from __future__ import annotations

STORAGE = "sqlite:///studies.db"
# What a study maximises on validation. names: the harmonic mean of accuracy and balanced accuracy, so
# the recommendation must be good on both (balanced accuracy alone chose accuracy 0.62 models).
METRIC = {"har": "accuracy", "names": "acc_bal_hmean"}
SEEDS = 3  # seeds per trial during the search: 0, 1, ..., SEEDS - 1 (at most RERANK_SEED_BASE of them)
RERANK_SEED_BASE = 50  # a report re-ranks its top trials on seeds 50, 51, ... (search/rerank.py)
FINAL_SEED_BASE = 100  # final evaluations train on seeds 100, 101, ...: never a search or re-ranking seed
FINAL_SEEDS = 5
MAX_FINAL_SEEDS = 50  # --seeds of export and report: each seed is a model trained and held in memory
# A family's best trial that is not among the top trials (so never the recommendation) is evaluated on the
# first 3 final seeds: its row compares families, and 2 seeds fewer kept the HAR report inside its 30-min
# budget (its 20-epoch GRU took 4 min per seed; README, "Results").
FAMILY_SEEDS = 3
# A family none of whose trials completed is represented by its best pruned trial, retrained with its full
# epoch budget on the first final seed only: the pruner judged it not worth finishing, and on 3 seeds the
# two recurrent stand-ins (20-epoch bidirectional GRU and LSTM, 6-7 min per seed) were 45 % of the HAR
# report's 92 worker-minutes, which then took 46 min against its 30-min budget (README, "Results").
PRUNED_SEEDS = 1
STRATEGY = "racing"  # bench/README.md: racing + hyperband spent the fewest seed-epochs for the same best value
PRUNER = "hyperband"
DEVICE = "auto"
THREADS = 1  # one torch thread per process: faster than two on the shared cores (bench/README.md)
HEARTBEAT = 30  # seconds
# A sampled study stops starting trials after this many seconds (the default --timeout; 0: no limit), so
# that it ends inside its budget on 2 cores (45 min HAR, 30 min names) whichever path the sampler takes:
# the budget less the longest trial of the space (HAR: a 20-epoch conv1d, about 5 min; names: a
# bidirectional GRU 2x96 at batch 32, about 4 min). Without it, names with sampler seed 1 took 105 min
# (TPE settled on such GRUs; bench/README.md, "Run-to-run spread"). A grid has no default limit.
TIME_LIMIT = {"har": 40 * 60, "names": 26 * 60}


def rerank_seeds(count: int = SEEDS) -> list[int]:
    """The seeds a report re-ranks its top trials on, disjoint from the search's and the final ones."""
    return list(range(RERANK_SEED_BASE, RERANK_SEED_BASE + count))


def final_seeds(count: int = FINAL_SEEDS) -> list[int]:
    """The seeds of a final evaluation or export, disjoint from every search seed (0 .. seeds-1)."""
    return list(range(FINAL_SEED_BASE, FINAL_SEED_BASE + count))
