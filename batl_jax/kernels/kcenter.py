"""CORESET (Sener & Savarese, 2018): greedy k-center selection, sharded over the pool.

Definitions (README, "Method decisions": CORESET):

* ``min_dist[i] = min_{j ∈ L} ‖x_i − x_j‖`` over the labeled set ``L``, computed by
  tiles of ``tile`` pool rows × ``tile`` labeled rows (never ``N × |L|``).
* ``k`` greedy steps in one ``lax.fori_loop``: pick the available row with the
  largest ``min_dist`` (ties → lowest row id), record ``min_dist`` at pick time
  as its score, then ``min_dist ← min(min_dist, ‖x − x_pick‖)`` (one mat-vec,
  see :func:`sq_dist_to_row`; distances under ~0.3 % of the rows' spread
  round to exactly 0, so duplicates tie and go to the lowest id).
* Available = candidate and not labeled and not picked yet.
* ``L`` empty (cold start, which the paper leaves open): the first pick is the candidate
  farthest from the mean of the candidates, and its score is that distance; afterwards
  ``min_dist`` is the distance to the picked rows only.

Layout: pool rows are split over the mesh's ``"data"`` axis (``shard_map``);
each step reduces a per-shard ``(max, lowest id)`` candidate with ``pmax`` /
``pmin`` and broadcasts the chosen row with a ``psum`` of a masked row, so one
step costs one pass over the local features plus three scalar/row collectives.

The cross-shard steps come from :mod:`batl_jax.kernels.collectives`, the
distance to ``L`` from :mod:`batl_jax.kernels.neighbors`.
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
from batl_jax.kernels.collectives import (
    AXIS,
    check_selection_args,
    fetch_row,
    global_argmax,
    row_ids,
)
from batl_jax.kernels.distances import sq_dist_to_row
from batl_jax.kernels.neighbors import min_sq_dist_to_set


def _kcenter_shard(x, avail, labeled_x, *, k: int, tile: int, has_labeled: bool):
    """Per-shard body: ``x (n/D, d)``, ``avail (n/D,)``, replicated ``labeled_x (|L|, d)``."""
    ids = row_ids(x.shape[0])
    af = avail.astype(jnp.float32)
    count = lax.psum(jnp.sum(af), AXIS)
    mean = lax.psum(jnp.sum(x * af[:, None], axis=0), AXIS) / jnp.maximum(count, 1.0)

    x_sq = jnp.sum((x - mean) ** 2, axis=1)  # one pass, outside the loop
    if has_labeled:
        min_d2 = min_sq_dist_to_set(x, mean, labeled_x, tile)
    else:
        min_d2 = x_sq  # cold start: the distance to the candidates' mean ranks pick 0

    def step(s, carry):
        min_d2, avail, picks, scores = carry
        pick, best = global_argmax(min_d2, avail, ids)
        d2 = sq_dist_to_row(x, x_sq, fetch_row(x, pick), mean)
        upd = jnp.minimum(min_d2, d2)
        if not has_labeled:
            upd = jnp.where(s == 0, d2, upd)  # forget the pool-mean distance after pick 0
        return (
            upd,
            avail & (ids != pick),
            picks.at[s].set(pick),
            scores.at[s].set(jnp.sqrt(jnp.maximum(best, 0.0))),
        )

    init = (min_d2, avail, jnp.zeros((k,), jnp.int32), jnp.zeros((k,), jnp.float32))
    _, _, picks, scores = lax.fori_loop(0, k, step, init)
    return picks, scores


@functools.lru_cache(maxsize=64)
def _kcenter_fn(mesh: Mesh, k: int, tile: int, has_labeled: bool):
    body = functools.partial(_kcenter_shard, k=k, tile=tile, has_labeled=has_labeled)
    return jax.jit(
        jax.shard_map(body, mesh=mesh, in_specs=(P(AXIS), P(AXIS), P()), out_specs=(P(), P()))
    )


def kcenter_greedy(
    features: np.ndarray,
    labeled_mask: np.ndarray,
    candidate_mask: np.ndarray,
    k: int,
    *,
    mesh: Mesh,
    tile: int = 1024,
) -> tuple[np.ndarray, np.ndarray]:
    """Greedy k-center (CORESET) picks among ``candidate_mask & ~labeled_mask``.

    Args:
      features: ``(N, d)`` features of every training row (cast to float32).
      labeled_mask: ``(N,)`` bool, the labeled set ``L`` (may be all False).
      candidate_mask: ``(N,)`` bool, the rows that may be picked.
      k: number of picks, ``1 <= k <= |candidates \\ L|``.
      mesh: 1-D ``("data",)`` mesh; pool rows are sharded over it.
      tile: rows per block for the initial ``min_dist`` to ``L``.

    Returns:
      ``picks`` int64 ``(k,)`` row ids in pick order and ``scores`` float32
      ``(k,)``, the min-distance of each pick to ``L`` ∪ earlier picks at pick
      time (for the first pick of a cold start: its distance to the candidates' mean).

    Memory per device: the ``(N/D, d)`` feature shard, the replicated labeled
    features ``(|L|, d)``, ``O(N/D)`` vectors and one ``tile × tile`` block.
    Time: ``N·|L|·d`` matmul FLOPs plus ``k`` passes over the features.
    """
    x = np.asarray(features, dtype=np.float32)
    n = x.shape[0]
    labeled = np.asarray(labeled_mask, dtype=bool)
    avail = check_selection_args(np.asarray(candidate_mask, bool) & ~labeled, n, k)
    x_dev, _ = sharding.put_rows(x, mesh)
    avail_dev, _ = sharding.put_rows(avail, mesh, pad_value=False)
    has_labeled = bool(labeled.any())
    # A 1-row stand-in keeps the signature fixed when L is empty (never read).
    lab = x[labeled] if has_labeled else np.zeros((1, x.shape[1]), np.float32)
    fn = _kcenter_fn(mesh, int(k), int(tile), has_labeled)
    picks, scores = fn(x_dev, avail_dev, sharding.put_replicated(lab, mesh))
    return np.asarray(picks, dtype=np.int64), np.asarray(scores, dtype=np.float32)
