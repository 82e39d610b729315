"""Defaults shared by the library and the command lines, defined once."""
from __future__ import annotations

STORAGE = "sqlite:///studies.db"
SEEDS = 3  # seeds per trial during the search: 0, 1, ..., SEEDS - 1 (at most RERANK_SEED_BASE of them)
RERANK_SEED_BASE = 50  # a report re-ranks its top trials on seeds 50, 51, ... (search/rerank.py)
FINAL_SEED_BASE = 100  # final evaluations train on seeds 100, 101, ...: never a search or re-ranking seed
FINAL_SEEDS = 5
# A user's file with more training examples than LARGE_FILE gets fewer final seeds, so that its study and
# report fit their ten minutes (bench/README.md, "A user's file").
LARGE_FILE, LARGE_FILE_SEEDS = 5_000, 3
MAX_FINAL_SEEDS = 50  # --seeds of export and report: each seed is a model trained and held in memory
# A family's best trial that is not among the top trials (so never the recommendation) only compares families:
# fewer final seeds keep the report inside its budget (bench/README.md, "Report time").
FAMILY_SEEDS = 3
# A family none of whose trials completed is represented by its best pruned trial, retrained with its full
# epoch budget on one seed: the pruner judged it not worth finishing, and such stand-ins (often slow recurrent
# models) dominated the report's time on more seeds (bench/README.md, "Report time").
PRUNED_SEEDS = 1
STRATEGY = "racing"  # bench/README.md: racing + hyperband spent the fewest seed-epochs for the same best value
PRUNER = "hyperband"
DEVICE = "auto"
THREADS = 1  # one torch thread per process: faster than two on the shared cores (bench/README.md)
HEARTBEAT = 30  # seconds


def rerank_seeds(count: int = SEEDS) -> list[int]:
    """The seeds a report re-ranks its top trials on, disjoint from the search's and the final ones."""
    return list(range(RERANK_SEED_BASE, RERANK_SEED_BASE + count))


def final_seeds(count: int = FINAL_SEEDS) -> list[int]:
    """The seeds of a final evaluation or export, disjoint from every search seed (0 .. seeds-1)."""
    return list(range(FINAL_SEED_BASE, FINAL_SEED_BASE + count))
