"""k-means++ seeding (BADGE, plain Euclidean) and Lloyd k-means selection (ALPS), sharded.

One k-means++ loop (:func:`_kmeanspp_shard`) serves both metrics; the metric is a
``d2_to(pool, centre) -> (n_local,)`` function of the local pool arrays:

* Euclidean (:func:`kmeans_pp`, :func:`kmeans_select`): ``pool = (x, ‖x − μ‖²)``,
  ``‖x_i − c‖²`` by one centred mat-vec (:func:`distances.sq_dist_to_row`).
* BADGE (:func:`badge_kmeans_pp`): the gradient embedding
  ``g_i = (p_i − e_i) ⊗ h_i`` (``e_i`` one-hot of ``argmax p_i``) is never formed
  (``N·C·d`` floats: 33 GB at 200k × 53 × 768). ``pool = (a, h, n2)`` with
  ``a = p − e``, ``n2 = ‖a‖²‖h‖² = ‖g‖²`` and
  ``‖g_i − g_c‖² = n2_i + n2_c − 2 (a_i·a_c)(h_i·h_c)``: two mat-vecs per centre,
  memory ``O(N·(C + d))``. No normalisation.

Expanded distances under ``REL_ZERO`` (1e-5) of ``‖a‖² + ‖b‖²`` are rounding
noise and are set to exactly 0 (:func:`distances.snap_sq_dist`), so duplicates of
a chosen centre get zero weight, as in the dense reference.

k-means++ mechanics (the team SPEC), for steps ``s = 0 … k−1``:

* ``u_s = jax.random.uniform(jax.random.fold_in(key, s))`` (float32, shape ``()``);
  :func:`kmeanspp_uniforms` returns them, and a reference that re-derives them
  the same way draws identical numbers.
* Step 0: BADGE takes the candidate with the largest ``‖g‖`` (BADGE's reference
  code: ``ind = argmax norm``; ``u_0`` unused); Euclidean samples it uniformly
  (weights 1 on candidates).
* Step ``s ≥ 1`` samples ∝ ``D²`` (squared distance to the nearest chosen
  centre, a running min updated with each new centre): the first row, in pool
  order, whose cumulative weight exceeds ``u_s · Σ D²``. Shards add the
  exclusive prefix of the other shards' totals, so the order is global.
* Only available rows (candidates, not chosen yet) have weight; if all weights
  are 0 (duplicates) the lowest-id available row is taken.

ALPS (:func:`kmeans_select`): rows are L2-normalised, seeded with Euclidean
k-means++, refined by ``num_iters`` Lloyd steps (assignment by tiled
``tile × k`` distance blocks, update by ``segment_sum`` + ``psum``; an empty
cluster keeps its centre), then each centre in order takes its nearest
available row (ties → lowest id).
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
    NO_ROW,
    check_selection_args,
    fetch_row,
    fetch_rows,
    global_argmax,
    global_argmin,
    row_ids,
)
from batl_jax.kernels.distances import fold_pool_tiles, snap_sq_dist, sq_dist_to_row, sq_norms

# Elements of one (tile, k) assignment block in the Lloyd step (16 MB of float32).
_BLOCK_ELEMS = 1 << 22


def kmeanspp_uniforms(key: jax.Array, k: int) -> np.ndarray:
    """The draws ``u_s = uniform(fold_in(key, s))``, ``s = 0 … k−1``, float32 ``(k,)``."""
    steps = jnp.arange(k, dtype=jnp.uint32)
    return np.asarray(jax.vmap(lambda s: jax.random.uniform(jax.random.fold_in(key, s)))(steps))


# --------------------------------------------------------------------------------------
# Shared k-means++ loop (inside shard_map).
# --------------------------------------------------------------------------------------
def _sample_inverse_cdf(w, u, ids, avail):
    """Global row id drawn ∝ ``w`` by inverse CDF over the pool order (see module doc)."""
    cum = jnp.cumsum(w)
    local_total = cum[-1]
    totals = lax.all_gather(local_total, AXIS)
    before = jnp.arange(totals.shape[0]) < lax.axis_index(AXIS)
    offset = jnp.sum(jnp.where(before, totals, 0.0))
    total = lax.psum(local_total, AXIS)
    hit = (w > 0) & (offset + cum > u * total)
    i = jnp.argmax(hit)
    pick = lax.pmin(jnp.where(hit[i], ids[i], NO_ROW), AXIS)
    # u·total can round up to total: then the last weighted row is the answer.
    last = lax.pmax(jnp.max(jnp.where(w > 0, ids, -1)), AXIS)
    first_avail = lax.pmin(jnp.min(jnp.where(avail, ids, NO_ROW)), AXIS)
    return jnp.where(total > 0, jnp.where(pick == NO_ROW, last, pick), first_avail)


def _kmeanspp_shard(pool, avail, us, *, k: int, d2_to, first_w, first_greedy: bool):
    """k-means++ over the local rows of the arrays in ``pool``; picks ``(k,)`` replicated.

    ``d2_to(pool, centre)``: squared distance of every local row to ``centre``
    (a tuple of one fetched row per pool array). ``first_w``: step-0 weights;
    ``first_greedy``: take their argmax (BADGE) instead of sampling.
    """
    ids = row_ids(pool[0].shape[0])

    def take(pick, avail, picks, s):
        centre = tuple(fetch_row(a, pick) for a in pool)
        return d2_to(pool, centre), avail & (ids != pick), picks.at[s].set(pick)

    if first_greedy:
        pick0, _ = global_argmax(first_w, avail, ids)
    else:
        pick0 = _sample_inverse_cdf(jnp.where(avail, first_w, 0.0), us[0], ids, avail)
    d2, avail, picks = take(pick0, avail, jnp.zeros((k,), jnp.int32), 0)

    def step(s, carry):
        d2, avail, picks = carry
        pick = _sample_inverse_cdf(jnp.where(avail, d2, 0.0), us[s], ids, avail)
        new_d2, avail, picks = take(pick, avail, picks, s)
        return jnp.minimum(d2, new_d2), avail, picks

    return lax.fori_loop(1, k, step, (d2, avail, picks))[2]


def _euclid_pool(x, avail):
    """Pool ``(x, ‖x − μ‖²)`` and its distance function, centred on the candidates' mean μ."""
    af = avail.astype(x.dtype)
    mean = lax.psum(jnp.sum(x * af[:, None], axis=0), AXIS)
    mean = mean / jnp.maximum(lax.psum(jnp.sum(af), AXIS), 1.0)
    pool = (x, jnp.sum((x - mean) ** 2, axis=1))
    return pool, lambda pool, centre: sq_dist_to_row(pool[0], pool[1], centre[0], mean)


def _badge_d2(pool, centre):
    a, h, n2 = pool
    a_c, h_c, n2_c = centre
    hi = lax.Precision.HIGHEST
    d2 = n2 + n2_c - 2.0 * jnp.dot(a, a_c, precision=hi) * jnp.dot(h, h_c, precision=hi)
    return snap_sq_dist(d2, n2 + n2_c)


def _normalise(x):
    # Zero rows stay zero instead of becoming NaN.
    return x / jnp.maximum(jnp.sqrt(sq_norms(x)), 1e-12)[:, None]


def _badge_shard(probs, hidden, avail, us, *, k: int):
    a = probs - jax.nn.one_hot(jnp.argmax(probs, axis=1), probs.shape[1], dtype=probs.dtype)
    n2 = sq_norms(a) * sq_norms(hidden)
    pool = (a, hidden, n2)
    return _kmeanspp_shard(pool, avail, us, k=k, d2_to=_badge_d2, first_w=n2, first_greedy=True)


def _kmeanspp_euclid_shard(x, avail, us, *, k: int):
    pool, d2_to = _euclid_pool(x, avail)
    ones = jnp.full_like(x[:, 0], 1.0)
    return _kmeanspp_shard(pool, avail, us, k=k, d2_to=d2_to, first_w=ones, first_greedy=False)


# --------------------------------------------------------------------------------------
# Lloyd k-means (ALPS).
# --------------------------------------------------------------------------------------
def _assign(x, centres, tile: int):
    """Index of the nearest centre of every local row, by ``(tile, k)`` blocks; ties → lowest."""
    c_sq = sq_norms(centres)

    def body(out, rows, ids, _fresh):
        (xt,) = rows
        # ‖x‖² is constant along a row, so the argmin needs only ‖c‖² − 2x·c.
        score = c_sq[None, :] - 2.0 * jnp.dot(xt, centres.T, precision=lax.Precision.HIGHEST)
        best = jnp.argmin(score, axis=1).astype(jnp.int32)
        return lax.dynamic_update_slice_in_dim(out, best, ids[0], axis=0)

    init = jnp.full_like(x[:, 0], 0, dtype=jnp.int32)
    return fold_pool_tiles(body, init, (x,), tile)


def _kmeans_select_shard(x, avail, us, *, k: int, num_iters: int):
    x = _normalise(x)
    n_local = x.shape[0]
    tile = max(1, min(n_local, _BLOCK_ELEMS // k))
    seeds = _kmeanspp_euclid_shard(x, avail, us, k=k)
    xm = jnp.where(avail[:, None], x, 0.0)  # only candidates are clustered
    am = avail.astype(jnp.float32)

    def lloyd(_, centres):
        assign = _assign(x, centres, tile)
        sums = lax.psum(jax.ops.segment_sum(xm, assign, num_segments=k), AXIS)
        counts = lax.psum(jax.ops.segment_sum(am, assign, num_segments=k), AXIS)
        return jnp.where(counts[:, None] > 0, sums / jnp.maximum(counts, 1.0)[:, None], centres)

    centres = lax.fori_loop(0, num_iters, lloyd, fetch_rows(x, seeds))
    ids = row_ids(n_local)
    x_sq = sq_norms(x)

    def nearest(j, carry):
        avail, picks = carry
        # ‖x − c‖² − ‖c‖² as a mat-vec (see distances.sq_dist_to_row for why not Σ(x − c)²)
        d2 = x_sq - 2.0 * jnp.dot(x, centres[j], precision=lax.Precision.HIGHEST)
        pick, _ = global_argmin(d2, avail, ids)
        return avail & (ids != pick), picks.at[j].set(pick)

    return lax.fori_loop(0, k, nearest, (avail, jnp.zeros((k,), jnp.int32)))[1]


# --------------------------------------------------------------------------------------
# Host entry points.
# --------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=64)
def _compiled(kind: str, mesh: Mesh, k: int, num_iters: int = 0):
    if kind == "badge":
        body, n_rows = functools.partial(_badge_shard, k=k), 3
    elif kind == "kmeans_pp":
        body, n_rows = functools.partial(_kmeanspp_euclid_shard, k=k), 2
    else:
        body, n_rows = functools.partial(_kmeans_select_shard, k=k, num_iters=num_iters), 2
    in_specs = (P(AXIS),) * n_rows + (P(),)
    return jax.jit(jax.shard_map(body, mesh=mesh, in_specs=in_specs, out_specs=P()))


def _run(kind, arrays, candidate_mask, k, key, mesh, **static):
    n = arrays[0].shape[0]
    cand = check_selection_args(candidate_mask, n, k)
    placed = [sharding.put_rows(np.asarray(a, np.float32), mesh)[0] for a in arrays]
    avail, _ = sharding.put_rows(cand, mesh, pad_value=False)
    us = sharding.put_replicated(kmeanspp_uniforms(key, k), mesh)
    picks = _compiled(kind, mesh, int(k), **static)(*placed, avail, us)
    return np.asarray(picks, dtype=np.int64)


def badge_kmeans_pp(
    probs: np.ndarray,
    hidden: np.ndarray,
    candidate_mask: np.ndarray,
    k: int,
    *,
    key: jax.Array,
    mesh: Mesh,
) -> np.ndarray:
    """BADGE: k-means++ seeding on gradient embeddings, without forming them.

    Args:
      probs: ``(N, C)`` class probabilities; ``hidden``: ``(N, d)`` hidden states.
      candidate_mask: ``(N,)`` bool, rows that may be picked (unlabeled pool).
      k: number of picks; key: JAX PRNG key (draws as in the module doc).

    Returns ``(k,)`` int64 row ids in pick order. Memory per device
    ``O(N/D · (C + d))``; time ``k`` passes over ``probs`` and ``hidden``.
    """
    return _run("badge", (probs, hidden), candidate_mask, k, key, mesh)


def kmeans_pp(
    x: np.ndarray, candidate_mask: np.ndarray, k: int, *, key: jax.Array, mesh: Mesh
) -> np.ndarray:
    """Plain Euclidean k-means++ seeding of ``x (N, e)`` over the candidates: ``(k,)`` row ids.

    Memory per device ``O(N/D · e)``; time ``k`` passes over ``x``.
    """
    return _run("kmeans_pp", (x,), candidate_mask, k, key, mesh)


def kmeans_select(
    x: np.ndarray,
    candidate_mask: np.ndarray,
    k: int,
    *,
    key: jax.Array,
    num_iters: int,
    mesh: Mesh,
) -> np.ndarray:
    """ALPS: k-means on the L2-normalised candidate rows of ``x (N, e)``, nearest row per centre.

    Returns ``k`` unique row ids (one per centre, in centre order). Memory per
    device: a normalised copy of the shard ``O(N/D · e)``, the ``(k, e)``
    centres and one ``(tile, k)`` block (≤ 16 MB). Time: ``k`` passes for the
    seeding, ``num_iters · N·k·e`` matmul FLOPs, ``k`` passes for the picks.
    """
    return _run("kmeans", (x,), candidate_mask, k, key, mesh, num_iters=int(num_iters))
