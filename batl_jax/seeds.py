"""Every random draw of a run, derived from ``(config.seed, round, purpose)``.

A resumed run recomputes exactly what an uninterrupted one would because no draw
depends on anything but these three numbers (README, "Resuming").
"""

from __future__ import annotations

import numpy as np

# Purposes of derived seeds, so no two draws of a round share a stream.
INIT, TRAIN, SELECT, MODEL = 1, 2, 3, 4


def derive_seed(seed: int, round_: int, purpose: int) -> int:
    """A 31-bit seed for one purpose of one round, independent of every other."""
    return int(np.random.SeedSequence([seed, round_ + 1, purpose]).generate_state(1)[0] >> 1)


def initial_labeled(num_rows: int, size: int, seed: int) -> np.ndarray:
    """The round-0 labeled set: the same for every strategy under one seed."""
    rng = np.random.default_rng(derive_seed(seed, -1, INIT))
    return np.sort(rng.choice(num_rows, size=size, replace=False)).astype(np.int64)
