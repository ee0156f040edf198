"""Top-k with a minimum spacing: greedy selection in score order that keeps picks apart.

Given a ranking of the pool (``rank[i]`` = position of row ``i`` in descending score
order, 0 = best) and features ``x`` (N, E), pick ``k`` rows one at a time:

* a row is *spaced* when its distance to every earlier pick is at least ``radius``;
* each step takes the best-ranked spaced row;
* when no row is spaced any more, it takes the row farthest from the picks so far
  (ties: lowest row id), so duplicates of a pick (distance 0) come last of all.

With ``radius = 0`` every row is spaced and the picks are the plain top-k. This is BATL's
``batch_mode = spaced`` (README, "Method decisions": BATL).

Layout and cost as :mod:`batl_jax.kernels.kcenter`: rows are split over the mesh's
``"data"`` axis; each of the ``k`` steps is one mat-vec over the local rows
(:func:`sq_dist_to_row`, which snaps rounding noise to 0 so duplicates are exactly
0 apart) plus scalar and one-row collectives. Memory ``O(N·E / D)`` per device, never
``N × N``; no randomness, so the result depends on the inputs only.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P

from batl_jax import sharding
from batl_jax.kernels.collectives import AXIS, fetch_row, global_argmax, row_ids
from batl_jax.kernels.distances import sq_dist_to_row


def _spaced_shard(x, neg_rank, avail, mean, r2, *, k: int):
    """Per-shard body: ``x (n/D, E)``, ``neg_rank (n/D,)`` (−rank, larger is better)."""
    ids = row_ids(x.shape[0])
    x_sq = jnp.sum((x - mean) ** 2, axis=1)

    def step(s, carry):
        min_d2, avail, picks, gaps = carry
        spaced = avail & (min_d2 >= r2)
        best_pick, best = global_argmax(neg_rank, spaced, ids)
        far_pick, far = global_argmax(min_d2, avail, ids)
        any_spaced = best > -jnp.inf
        pick = jnp.where(any_spaced, best_pick, far_pick)
        gap2 = lax.pmax(jnp.max(jnp.where(ids == pick, min_d2, -jnp.inf)), AXIS)
        d2 = sq_dist_to_row(x, x_sq, fetch_row(x, pick), mean)
        return (
            jnp.minimum(min_d2, d2),
            avail & (ids != pick),
            picks.at[s].set(pick),
            gaps.at[s].set(jnp.sqrt(gap2)),
        )

    init = (
        jnp.full_like(x_sq, jnp.inf),
        avail,
        jnp.zeros((k,), jnp.int32),
        jnp.zeros((k,), jnp.float32),
    )
    _, _, picks, gaps = lax.fori_loop(0, k, step, init)
    return picks, gaps


@functools.lru_cache(maxsize=64)
def _spaced_fn(mesh: Mesh, k: int):
    rows, rep = P(AXIS), P()
    return jax.jit(
        jax.shard_map(
            functools.partial(_spaced_shard, k=k),
            mesh=mesh,
            in_specs=(rows, rows, rows, rep, rep),
            out_specs=(rep, rep),
        )
    )


def spaced_top_k(
    features, rank, k: int, radius: float, *, mesh: Mesh
) -> tuple[np.ndarray, np.ndarray]:
    """``k`` rows picked best-rank-first at least ``radius`` apart (see the module doc).

    Args:
      features: ``(N, E)`` features (cast to float32).
      rank: ``(N,)`` distinct integers, the rows' positions in score order (0 = best),
        e.g. the inverse of a stable descending argsort.
      k: number of picks, ``1 <= k <= N``.
      radius: minimum Euclidean distance between picks while rows that far remain.
      mesh: 1-D ``("data",)`` mesh; rows are sharded over it.

    Returns:
      ``picks`` int64 ``(k,)`` row positions in pick order, and ``gaps`` float32 ``(k,)``:
      each pick's distance to the nearest earlier pick (``inf`` for the first).
    """
    x = np.asarray(features, dtype=np.float32)
    n = x.shape[0]
    r = np.asarray(rank).reshape(-1)
    if r.shape != (n,) or np.unique(r).size != n:
        raise ValueError(f"rank must hold {n} distinct integers, one per row")
    if not 1 <= k <= n:
        raise ValueError(f"k={k} must be in [1, {n}]")
    if n >= 2**24:
        raise ValueError(f"{n} rows: ranks above 2^24 are not exact in float32")
    if not radius >= 0:
        raise ValueError(f"radius={radius} must be >= 0")
    mean = x.mean(axis=0, dtype=np.float64).astype(np.float32)  # host: device-count invariant
    x_dev, avail_dev = sharding.put_rows(x, mesh)  # padding rows are never available
    rank_dev, _ = sharding.put_rows(-r.astype(np.float32), mesh)
    picks, gaps = _spaced_fn(mesh, int(k))(
        x_dev,
        rank_dev,
        avail_dev,
        sharding.put_replicated(mean, mesh),
        sharding.put_replicated(np.float32(radius) ** 2, mesh),
    )
    return np.asarray(picks, np.int64), np.asarray(gaps, np.float32)
