"""Cross-shard building blocks of the pool kernels, for use inside ``shard_map``.

The pool's rows are split over the mesh's ``"data"`` axis in consecutive
blocks (:func:`batl_jax.sharding.put_rows` pads the last one). The greedy
selection loops (k-center, k-means++, BatchBALD) need, at every step, the
pool-wide best row and that row's features on every device; these functions
give both with scalar or one-row collectives. All but
:func:`check_selection_args` (host side) must run inside ``shard_map`` over
:data:`AXIS`.

Ties always go to the lowest global row id, so a result does not depend on the
number of devices.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from batl_jax import sharding

AXIS = sharding.DATA_AXIS
# Larger than any row id; loses every ``pmin`` over ids.
NO_ROW = np.iinfo(np.int32).max


def row_ids(n_local: int) -> jax.Array:
    """Global row ids ``(n_local,)`` int32 of this shard's rows (shards hold consecutive rows)."""
    return lax.axis_index(AXIS) * n_local + jnp.arange(n_local, dtype=jnp.int32)


def global_argmax(score: jax.Array, avail: jax.Array, ids: jax.Array):
    """``(row id, value)`` of the largest ``score`` over available rows of all shards.

    Ties go to the lowest global row id: ``jnp.argmax`` takes the first local
    maximum and ``pmin`` the lowest id among shards that reach the global
    maximum. Both results are device-invariant (``pmax``/``pmin``), so they can
    live in loop carries with replicated outputs. ``-inf`` everywhere (nothing
    available) returns the lowest-id shard's first row; callers validate ``k``.
    """
    s = jnp.where(avail, score, -jnp.inf)
    i = jnp.argmax(s)
    best = lax.pmax(s[i], AXIS)
    pick = lax.pmin(jnp.where(s[i] == best, ids[i], NO_ROW), AXIS)
    return pick, best


def global_argmin(score: jax.Array, avail: jax.Array, ids: jax.Array):
    """``(row id, value)`` of the smallest available ``score``; ties → lowest row id."""
    pick, best = global_argmax(-score, avail, ids)
    return pick, -best


def fetch_row(x: jax.Array, row: jax.Array) -> jax.Array:
    """Row ``row`` (a global id) of the row-sharded ``x``, replicated on every shard.

    The owner contributes the row, every other shard zeros, and a ``psum`` adds
    them up: one ``x.shape[1:]``-sized collective, exact (adding zeros).
    """
    n = x.shape[0]
    mine = lax.axis_index(AXIS) == row // n
    local = lax.dynamic_index_in_dim(x, jnp.clip(row % n, 0, n - 1), keepdims=False)
    return lax.psum(jnp.where(mine, local, jnp.zeros_like(local)), AXIS)


def fetch_rows(x: jax.Array, rows: jax.Array) -> jax.Array:
    """Rows ``rows (k,)`` (global ids) of the row-sharded ``x``, replicated: ``(k, d)``."""
    n = x.shape[0]
    mine = lax.axis_index(AXIS) == rows // n
    local = x[jnp.clip(rows % n, 0, n - 1)]
    return lax.psum(jnp.where(mine[:, None], local, 0.0), AXIS)


def check_selection_args(candidate_mask: np.ndarray, n: int, k: int) -> np.ndarray:
    """Validate ``k`` against the number of candidates; return the mask as a bool array."""
    cand = np.asarray(candidate_mask, dtype=bool)
    if cand.shape != (n,):
        raise ValueError(f"candidate_mask has shape {cand.shape}, expected ({n},)")
    if not 1 <= k <= int(cand.sum()):
        raise ValueError(f"k={k} must be in [1, {int(cand.sum())}] (the number of candidates)")
    return cand
