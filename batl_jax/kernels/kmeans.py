"""k-means++ seeding (BADGE) and k-means as scikit-learn's ``KMeans`` runs it (ALPS), sharded.

**BADGE** (:func:`badge_kmeans_pp`, Ash et al. 2020): k-means++ seeding on the
gradient embedding ``g_i = (p_i − e_i) ⊗ h_i`` (``e_i`` one-hot of
``argmax p_i``), which is never formed (``N·C·d`` floats: 33 GB at
200k × 53 × 768). With ``a = p − e`` and ``n2 = ‖a‖²‖h‖² = ‖g‖²``,
``‖g_i − g_c‖² = n2_i + n2_c − 2 (a_i·a_c)(h_i·h_c)``: two mat-vecs per centre,
memory ``O(N·(C + d))``. Expanded distances under ``REL_ZERO`` (1e-5) of
``‖a‖² + ‖b‖²`` are rounding noise and are set to exactly 0
(:func:`distances.snap_sq_dist`), so duplicates of a chosen centre get zero
weight, as in the dense reference. For steps ``s = 0 … k−1``:

* ``u_s = jax.random.uniform(jax.random.fold_in(key, s))`` (float32, shape ``()``);
  :func:`kmeanspp_uniforms` returns them, and a reference that re-derives them
  the same way draws identical numbers.
* Step 0 takes the candidate with the largest ``‖g‖`` (BADGE's reference code:
  ``ind = argmax norm``; ``u_0`` unused).
* Step ``s ≥ 1`` samples ∝ ``D²`` (squared distance to the nearest chosen
  centre, a running min updated with each new centre): the first row, in pool
  order, whose cumulative weight exceeds ``u_s · Σ D²``. Shards add the
  exclusive prefix of the other shards' totals, so the order is global.
* Only available rows (candidates, not chosen yet) have weight; if all weights
  are 0 (duplicates) the lowest-id available row is taken.

**k-means** (:func:`kmeans`, :func:`kmeans_select`): the algorithm of
scikit-learn's ``KMeans(init="k-means++", algorithm="lloyd")``, which ALPS's
reference code calls with its defaults of the time (``n_init=10``,
``max_iter=300``, ``tol=1e-4``), on the candidate rows only:

* Rows are centred on the candidates' mean (as scikit-learn does), which keeps
  the expansion's rounding small.
* Greedy k-means++ seeding (Arthur & Vassilvitskii 2007; scikit-learn's
  ``_kmeans_plusplus``): the first centre uniformly among the candidates, then
  per step ``L = 2 + ⌊ln k⌋`` candidates drawn ∝ ``D²``, keeping the one whose
  addition gives the lowest potential ``Σ min D²``. Draws of restart ``r``,
  step ``s``: ``uniform(fold_in(fold_in(key, r), s), (L,))``.
* Lloyd iterations, at most ``max_iter``: assign each row to its nearest centre
  (``(tile, k)`` blocks, ties → lowest centre), move each centre to the mean of
  its rows. Stop when no label changes (strict convergence) or when the total
  squared centre shift ``Σ_j ‖c_j' − c_j‖²`` is at most
  ``tol · mean_f var(x_f)`` (the variance of the candidates per feature). Without
  strict convergence the labels are recomputed once for the final centres.
* An empty cluster takes the row farthest from its assigned centre (the ``i``-th
  empty cluster in id order the ``i``-th farthest row, ties → lowest id), which
  leaves its old cluster (scikit-learn's ``_relocate_empty_clusters``).
* ``n_init`` restarts; the one with the lowest inertia ``Σ ‖x − c_label‖²``
  wins (the first on ties).

All of it runs in one ``shard_map`` (pool rows over ``"data"``, centres
replicated; never ``N × N``). ALPS (:func:`kmeans_select`) clusters the
L2-normalised rows and gives each centre in order its nearest available row
(ties → lowest id): where the reference fills a repeated nearest row at
random, a repeat here moves to the centre's next-nearest row.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

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
# scikit-learn's KMeans defaults when ALPS's reference code ran (n_init became "auto" in 1.4).
DEFAULT_N_INIT = 10
DEFAULT_MAX_ITER = 300
DEFAULT_TOL = 1e-4


def kmeanspp_uniforms(key: jax.Array, k: int) -> np.ndarray:
    """The draws ``u_s = uniform(fold_in(key, s))``, ``s = 0 … k−1``, float32 ``(k,)``."""
    steps = jnp.arange(k, dtype=jnp.uint32)
    return np.asarray(jax.vmap(lambda s: jax.random.uniform(jax.random.fold_in(key, s)))(steps))


# --------------------------------------------------------------------------------------
# k-means++ seeding by D² sampling (BADGE; inside shard_map).
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


def _kmeanspp_shard(pool, avail, us, *, k: int, d2_to, first_w):
    """k-means++ over the local rows of the arrays in ``pool``; picks ``(k,)`` replicated.

    ``d2_to(pool, centre)``: squared distance of every local row to ``centre``
    (a tuple of one fetched row per pool array). Step 0 takes the argmax of
    ``first_w`` (BADGE's largest gradient norm).
    """
    ids = row_ids(pool[0].shape[0])

    def take(pick, avail, picks, s):
        centre = tuple(fetch_row(a, pick) for a in pool)
        return d2_to(pool, centre), avail & (ids != pick), picks.at[s].set(pick)

    pick0, _ = global_argmax(first_w, avail, ids)
    d2, avail, picks = take(pick0, avail, jnp.zeros((k,), jnp.int32), 0)

    def step(s, carry):
        d2, avail, picks = carry
        pick = _sample_inverse_cdf(jnp.where(avail, d2, 0.0), us[s], ids, avail)
        new_d2, avail, picks = take(pick, avail, picks, s)
        return jnp.minimum(d2, new_d2), avail, picks

    return lax.fori_loop(1, k, step, (d2, avail, picks))[2]


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
    return _kmeanspp_shard(pool, avail, us, k=k, d2_to=_badge_d2, first_w=n2)


# --------------------------------------------------------------------------------------
# k-means as scikit-learn's KMeans (ALPS; inside shard_map).
# --------------------------------------------------------------------------------------
def n_local_trials(k: int) -> int:
    """Candidates per greedy k-means++ step: scikit-learn's ``2 + int(ln k)``."""
    return 2 + int(np.log(k))


def _greedy_kmeanspp(x, x_sq, w, ids, key, *, k: int):
    """Greedy k-means++ seeds (row ids ``(k,)``) of the centred local rows ``x``, weights ``w``."""
    trials = n_local_trials(k)
    zero = jnp.zeros_like(x[0])
    avail = w > 0
    d2_to = jax.vmap(lambda c: sq_dist_to_row(x, x_sq, c, zero))  # (L, d) → (L, n_local)

    u0 = jax.random.uniform(jax.random.fold_in(key, 0), (trials,))[0]
    first = _sample_inverse_cdf(w, u0, ids, avail)
    closest = d2_to(fetch_rows(x, first[None]))[0]

    def step(s, carry):
        closest, picks = carry
        us = jax.random.uniform(jax.random.fold_in(key, s), (trials,))
        cand = jax.vmap(lambda u: _sample_inverse_cdf(w * closest, u, ids, avail))(us)
        d2 = jnp.minimum(closest[None, :], d2_to(fetch_rows(x, cand)))
        # The candidate that leaves the lowest potential Σ min D²; ties → the first drawn.
        best = jnp.argmin(lax.psum(jnp.sum(d2 * w[None, :], axis=1), AXIS))
        return d2[best], picks.at[s].set(cand[best])

    picks = jnp.zeros((k,), jnp.int32).at[0].set(first)
    return lax.fori_loop(1, k, step, (closest, picks))[1]


def _assign(x, centres, tile: int):
    """Nearest centre (ties → lowest) of every local row and its squared distance."""
    c_sq = sq_norms(centres)

    def body(out, rows, ids, _fresh):
        (xt,) = rows
        # ‖x‖² is constant along a row, so the argmin needs only ‖c‖² − 2x·c.
        score = c_sq[None, :] - 2.0 * jnp.dot(xt, centres.T, precision=lax.Precision.HIGHEST)
        best = jnp.argmin(score, axis=1).astype(jnp.int32)
        d2 = jnp.maximum(sq_norms(xt) + jnp.min(score, axis=1), 0.0)
        put = functools.partial(lax.dynamic_update_slice_in_dim, start_index=ids[0], axis=0)
        return put(out[0], best), put(out[1], d2)

    init = (jnp.zeros_like(x[:, 0], dtype=jnp.int32), jnp.zeros_like(x[:, 0]))
    return fold_pool_tiles(body, init, (x,), tile)


def _relocate_empty(x, w, ids, labels, d2, sums, counts):
    """scikit-learn's empty-cluster rule on the cluster sums and counts (module doc)."""
    k = counts.shape[0]
    empty = counts == 0
    order = jnp.argsort(jnp.where(empty, jnp.arange(k), k))  # empty ids first, ascending

    def body(carry):
        i, far, sums, counts = carry
        pick, _ = global_argmax(far, w > 0, ids)
        row, old, new = fetch_row(x, pick), fetch_row(labels, pick), order[i]
        sums = sums.at[old].add(-row).at[new].set(row)
        counts = counts.at[old].add(-1.0).at[new].set(1.0)
        return i + 1, jnp.where(ids == pick, -jnp.inf, far), sums, counts

    init = (jnp.zeros((), jnp.int32), d2, sums, counts)
    return lax.while_loop(lambda c: c[0] < jnp.sum(empty), body, init)[2:]


def _lloyd(x, w, ids, centres, tol, *, max_iter: int, tile: int):
    """Lloyd iterations from ``centres`` until convergence: ``(centres, labels, n_iter)``."""
    k = centres.shape[0]

    def body(carry):
        centres, labels_old, i, _, _ = carry
        labels, d2 = _assign(x, centres, tile)
        # x is zero off the candidates, so only candidates add to the sums.
        sums = lax.psum(jax.ops.segment_sum(x, labels, num_segments=k), AXIS)
        counts = lax.psum(jax.ops.segment_sum(w, labels, num_segments=k), AXIS)
        sums, counts = _relocate_empty(x, w, ids, labels, d2, sums, counts)
        # A cluster emptied by a relocation keeps its (zero) sum, as scikit-learn does.
        new = jnp.where(counts[:, None] > 0, sums / jnp.maximum(counts, 1.0)[:, None], sums)
        strict = lax.psum(jnp.sum((labels != labels_old) & (w > 0)), AXIS) == 0
        done = strict | (jnp.sum((new - centres) ** 2) <= tol)
        return new, labels, i + 1, done, strict

    def running(carry):
        return (carry[2] < max_iter) & ~carry[3]

    init = (centres, jnp.full_like(ids, -1), jnp.zeros((), jnp.int32), False, False)
    centres, labels, n_iter, _, strict = lax.while_loop(running, body, init)
    # Labels of the final centres, unless they are already (strict convergence).
    return centres, jnp.where(strict, labels, _assign(x, centres, tile)[0]), n_iter


def _inertia(x, w, centres, labels, tile: int):
    """``Σ_i w_i ‖x_i − c_{label_i}‖²`` over all shards, one ``(tile, d)`` block at a time."""

    def body(total, rows, _ids, fresh):
        xt, wt, lt = rows
        return total + jnp.sum(jnp.where(fresh, wt, 0.0) * sq_norms(xt - centres[lt]))

    return lax.psum(fold_pool_tiles(body, jnp.zeros_like(w[0]), (x, w, labels), tile), AXIS)


def _kmeans_shard(x, w, key, init, *, k: int, n_init: int, max_iter: int, tol: float):
    """Best of ``n_init`` restarts on centred ``x`` (zero off the candidates, ``w`` 1 on them).

    ``init``: centred ``(k, d)`` starting centres, or None for k-means++ seeding.
    Returns ``(inertia, centres, labels, n_iter)`` of the restart with the lowest inertia.
    """
    n_local, d = x.shape
    ids = row_ids(n_local)
    tile = max(1, min(n_local, _BLOCK_ELEMS // max(k, d)))
    x_sq = sq_norms(x)
    # scikit-learn's tolerance: tol times the mean over features of the candidates' variance.
    tol_abs = tol * lax.psum(jnp.sum(x_sq), AXIS) / (lax.psum(jnp.sum(w), AXIS) * d)

    def restart(r, best):
        start = init
        if start is None:
            seeds = _greedy_kmeanspp(x, x_sq, w, ids, jax.random.fold_in(key, r), k=k)
            start = fetch_rows(x, seeds)
        centres, labels, n_iter = _lloyd(x, w, ids, start, tol_abs, max_iter=max_iter, tile=tile)
        run = (_inertia(x, w, centres, labels, tile), centres, labels, n_iter)
        better = run[0] < best[0]
        return jax.tree.map(lambda new, old: jnp.where(better, new, old), run, best)

    none = (jnp.float32(jnp.inf), jnp.zeros((k, d), x.dtype), jnp.zeros_like(ids), 0)
    return lax.fori_loop(0, n_init, restart, none)


def _centred(x, avail):
    """``x`` centred on the candidates' mean and zero elsewhere, the weights, the mean."""
    w = avail.astype(x.dtype)
    mean = lax.psum(jnp.sum(x * w[:, None], axis=0), AXIS) / lax.psum(jnp.sum(w), AXIS)
    return jnp.where(avail[:, None], x - mean, 0.0), w, mean


def _kmeans_fit_shard(x, avail, key_data, init, *, has_init: bool, **static):
    xc, w, mean = _centred(x, avail)
    key = jax.random.wrap_key_data(key_data)
    init = init - mean if has_init else None
    inertia, centres, labels, n_iter = _kmeans_shard(xc, w, key, init, **static)
    return centres + mean, jnp.where(avail, labels, -1), inertia, n_iter


def _kmeans_select_shard(x, avail, key_data, **static):
    xc, w, _ = _centred(_normalise(x), avail)
    _, centres, _, _ = _kmeans_shard(xc, w, jax.random.wrap_key_data(key_data), None, **static)
    ids = row_ids(x.shape[0])
    x_sq = sq_norms(xc)

    def nearest(j, carry):
        avail, picks = carry
        # ‖x − c‖² − ‖c‖² as a mat-vec (see distances.sq_dist_to_row for why not Σ(x − c)²)
        d2 = x_sq - 2.0 * jnp.dot(xc, centres[j], precision=lax.Precision.HIGHEST)
        pick, _ = global_argmin(d2, avail, ids)
        return avail & (ids != pick), picks.at[j].set(pick)

    k = centres.shape[0]
    return lax.fori_loop(0, k, nearest, (avail, jnp.zeros((k,), jnp.int32)))[1]


# --------------------------------------------------------------------------------------
# Host entry points.
# --------------------------------------------------------------------------------------
_SHARD_FNS: dict[str, Any] = {"kmeans": _kmeans_fit_shard, "kmeans_select": _kmeans_select_shard}


@functools.lru_cache(maxsize=64)
def _compiled(kind: str, mesh: Mesh, k: int, **static):
    if kind != "badge":
        body = functools.partial(_SHARD_FNS[kind], k=k, **static)
        fit = kind == "kmeans"
        in_specs = (P(AXIS), P(AXIS), P()) + ((P(),) if fit else ())
        out_specs = (P(), P(AXIS), P(), P()) if fit else P()
    else:
        body = functools.partial(_badge_shard, k=k)
        in_specs, out_specs = (P(AXIS),) * 3 + (P(),), P()
    return jax.jit(jax.shard_map(body, mesh=mesh, in_specs=in_specs, out_specs=out_specs))


def _run(kind, arrays, candidate_mask, k, replicated, mesh, **static):
    """Place row arrays sharded and ``replicated`` (a tuple of arrays) on every device; run."""
    n = arrays[0].shape[0]
    cand = check_selection_args(candidate_mask, n, k)
    placed = [sharding.put_rows(np.asarray(a, np.float32), mesh)[0] for a in arrays]
    avail, _ = sharding.put_rows(cand, mesh, pad_value=False)
    rep = [sharding.put_replicated(np.asarray(a), mesh) for a in replicated]
    return _compiled(kind, mesh, int(k), **static)(*placed, avail, *rep)


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
    us = (kmeanspp_uniforms(key, k),)
    picks = _run("badge", (probs, hidden), candidate_mask, k, us, mesh)
    return np.asarray(picks, dtype=np.int64)


class KMeansResult(NamedTuple):
    """The kept restart of :func:`kmeans`."""

    centres: np.ndarray  # (k, d) float32
    labels: np.ndarray  # (N,) int64 cluster of each row; -1 off the candidates
    inertia: float  # Σ ‖x − c_label‖² over the candidates
    n_iter: int  # Lloyd iterations it ran


def _kmeans_static(n_init: int, max_iter: int, tol: float) -> dict:
    if n_init < 1 or max_iter < 1 or not tol >= 0:
        raise ValueError(f"k-means needs n_init, max_iter >= 1, tol >= 0: {n_init, max_iter, tol}")
    return dict(n_init=int(n_init), max_iter=int(max_iter), tol=float(tol))


def kmeans(
    x: np.ndarray,
    candidate_mask: np.ndarray,
    k: int,
    *,
    key: jax.Array,
    mesh: Mesh,
    n_init: int = DEFAULT_N_INIT,
    max_iter: int = DEFAULT_MAX_ITER,
    tol: float = DEFAULT_TOL,
    init: np.ndarray | None = None,
) -> KMeansResult:
    """k-means of the candidate rows of ``x (N, e)`` as scikit-learn's ``KMeans`` (module doc).

    ``key``: a ``jax.random.key`` (default implementation); restart ``r`` draws from
    ``fold_in(key, r)``. ``init``: ``(k, e)`` starting centres instead of k-means++
    (then ``n_init`` must be 1), as scikit-learn's ``init=`` array.

    Memory per device: a centred copy of the shard, the ``(k, e)`` centres and one
    ``(tile, max(k, e))`` block (≤ 16 MB). Time per restart: ``k``
    seeding steps of ``2 + ln k`` mat-vecs, and ``N·k·e`` matmul FLOPs per Lloyd iteration.
    """
    static = _kmeans_static(n_init, max_iter, tol)
    x = np.asarray(x, np.float32)
    if init is not None and (n_init != 1 or np.shape(init) != (k, x.shape[1])):
        raise ValueError(f"init must be ({k}, {x.shape[1]}) centres with n_init=1")
    has_init = init is not None
    start = np.zeros((k, x.shape[1])) if init is None else init  # unread without init
    rep = (jax.random.key_data(key), np.asarray(start, np.float32))
    out = _run("kmeans", (x,), candidate_mask, k, rep, mesh, has_init=has_init, **static)
    centres, labels, inertia, n_iter = out
    return KMeansResult(
        np.asarray(centres, np.float32),
        sharding.to_host(labels, x.shape[0]).astype(np.int64),
        float(inertia),
        int(n_iter),
    )


def kmeans_select(
    x: np.ndarray,
    candidate_mask: np.ndarray,
    k: int,
    *,
    key: jax.Array,
    mesh: Mesh,
    n_init: int = DEFAULT_N_INIT,
    max_iter: int = DEFAULT_MAX_ITER,
    tol: float = DEFAULT_TOL,
) -> np.ndarray:
    """ALPS: :func:`kmeans` of the L2-normalised candidate rows, then each centre's nearest row.

    Returns ``k`` distinct row ids (one per centre, in centre order); cost as
    :func:`kmeans` plus ``k`` passes for the picks.
    """
    static = _kmeans_static(n_init, max_iter, tol)
    picks = _run(
        "kmeans_select", (x,), candidate_mask, k, (jax.random.key_data(key),), mesh, **static
    )
    return np.asarray(picks, dtype=np.int64)
