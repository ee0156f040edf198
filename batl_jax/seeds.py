"""Every random draw of a run, derived from ``(config.seed, round, purpose)``.

A resumed run recomputes exactly what an uninterrupted one would because no draw
depends on anything but these three numbers (README, "Resuming").
"""

from __future__ import annotations

import numpy as np

# Purposes of derived seeds, so no two draws of a round share a stream.
INIT, TRAIN, SELECT, MODEL, EVAL = 1, 2, 3, 4, 5


def derive_seed(seed: int, round_: int, purpose: int) -> int:
    """A 31-bit seed for one purpose of one round, independent of every other."""
    return int(np.random.SeedSequence([seed, round_ + 1, purpose]).generate_state(1)[0] >> 1)


def initial_labeled(num_rows: int, size: int, seed: int) -> np.ndarray:
    """The round-0 labeled set: the same for every strategy under one seed."""
    rng = np.random.default_rng(derive_seed(seed, -1, INIT))
    return np.sort(rng.choice(num_rows, size=size, replace=False)).astype(np.int64)


def evaluation_rows(labels: np.ndarray, size: int, seed: int) -> np.ndarray:
    """``al.test_size``'s evaluation set: ``size`` seeded random pool rows, kept out of the
    pool, that people label first (README, "Your own project").

    Drawn from the rows without a label when the pool has any (labels a file already
    carries are the starting set, not test rows), else from every row. Sorted; empty when
    ``size`` is 0, so runs without the setting draw exactly what they drew before.
    """
    labels = np.asarray(labels)
    if size <= 0:
        return np.zeros(0, np.int64)
    unlabeled = np.flatnonzero(labels < 0)
    candidates = unlabeled if len(unlabeled) else np.arange(len(labels))
    rng = np.random.default_rng(derive_seed(seed, -1, EVAL))
    picks = rng.choice(len(candidates), size=min(size, len(candidates)), replace=False)
    return np.sort(candidates[picks]).astype(np.int64)
