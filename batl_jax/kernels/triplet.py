"""BATL triplet mining over the pool, the training triplet loss, and a sharded top-k.

For integrated features ``e(x)`` (N, E) and predicted labels ``ŷ`` (N,), with
``D`` the Euclidean distance:

* hardest positive ``d_p(a) = max {D(a,p) : ŷ(p) = ŷ(a), p ≠ a}``, 0 when ``a``
  is alone in its class;
* semi-hard negative ``d_n(a) = min {D(a,n) : ŷ(n) ≠ ŷ(a), D(a,n) > d_p(a)}``,
  falling back to ``max {D(a,n) : ŷ(n) ≠ ŷ(a)}`` when no negative is farther
  than ``d_p(a)``, and to ``d_p(a) + m`` when the batch has no negative at all;
* score ``L_triplet(a) = m + d_p(a) − d_n(a)`` (``max(0, ·)`` with ``hinge``).

Two mining modes: :func:`mine_global` (the pool is one batch, exact, tiled,
memory ``O(N·E + tile²)``) and :func:`mine_minibatch` (the shuffled pool is cut
into ``ceil(N / chunk_size)`` chunks of near-equal size, mined densely within each
chunk). :func:`has_triplet` says which anchors have both a positive and a negative
in their batch, i.e. for which the fallbacks above were not used. Selections compare *squared*
distances and take the ``sqrt`` of the selected values only: ``sqrt`` is
monotone, so this selects what comparing distances would, without an ``N × N``
``sqrt``. Rows are centred on the pool mean before the expansion
``‖a‖² + ‖b‖² − 2a·b`` to keep its cancellation error small.
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
from batl_jax.kernels.distances import (
    fold_pool_tiles,
    round_up,
    safe_sqrt,
    sq_distances,
    sq_norms,
)

DEFAULT_MARGIN = 0.2
# Tuned on a 2-core AVX-512 CPU at N = 100k, E = 512 (see batl_jax/bench/mining.py).
DEFAULT_ANCHOR_TILE = 2048
DEFAULT_POOL_TILE = 2048
DEFAULT_CHUNK = 1024

_NO_LABEL = -1  # label of padding rows; real labels are remapped to 0..C-1


# ----------------------------------------------------------------------------- tile rules
def _hardest_positive(d2, same, not_self):
    """Row max of ``d2`` over same-label, non-self columns (0 if none): ``(m,)``."""
    return jnp.max(jnp.where(same & not_self, d2, 0.0), axis=1)


def _negatives(d2, neg, dp2):
    """Row min of ``d2`` over negatives farther than ``dp2`` (inf if none) and row max
    over all negatives (-1 if none): two ``(m,)`` arrays."""
    semi = neg & (d2 > dp2[:, None])
    return (
        jnp.min(jnp.where(semi, d2, jnp.inf), axis=1),
        jnp.max(jnp.where(neg, d2, -1.0), axis=1),
    )


def _finish(dp2, semi2, negmax2, margin):
    """Squared mining results -> ``(d_p, d_n)`` with the two fallbacks of the definition."""
    dp = jnp.sqrt(dp2)
    dn = jnp.sqrt(jnp.where(jnp.isfinite(semi2), semi2, jnp.maximum(negmax2, 0.0)))
    return dp, jnp.where(negmax2 >= 0, dn, dp + margin)


def _prepare(embeddings, labels):
    """Host float32 rows, labels remapped to 0..C-1 (int32) and the float32 pool mean."""
    x = np.asarray(embeddings, dtype=np.float32)
    if x.ndim != 2:
        raise ValueError(f"embeddings must be (N, E), got shape {x.shape}")
    y = np.asarray(labels).reshape(-1)
    if y.shape[0] != x.shape[0]:
        raise ValueError(f"{x.shape[0]} embeddings but {y.shape[0]} labels")
    _, y = np.unique(y, return_inverse=True)
    mu = x.mean(axis=0, dtype=np.float64).astype(np.float32)
    return x, y.astype(np.int32).reshape(-1), mu


# ----------------------------------------------------------------------------- global mining
def _mine_shard(anchors, a_lab, a_ids, pool, p_lab, mu, *, anchor_tile, pool_tile, precision):
    """One device: its anchors (A_loc, E) against the whole replicated pool (N, E).

    Anchors are processed ``anchor_tile`` at a time (``lax.map``); for each tile
    the pool is walked twice with :func:`fold_pool_tiles`. Only one
    ``(anchor_tile, pool_tile)`` block is alive at a time.
    """
    n_at = anchors.shape[0] // anchor_tile
    e = anchors.shape[1]
    p_sq = sq_norms(pool - mu)  # one fused reduction, no (N, E) temporary

    def one_anchor_tile(args):
        a, la, ia = args
        a = a - mu
        a_sq = sq_norms(a)

        def block(rows):
            b, lb = rows[0], rows[1]
            return sq_distances(a, b - mu, a_sq, rows[2], precision=precision), lb

        def pass1(dp2, rows, ids, fresh):
            d2, lb = block(rows)
            same = la[:, None] == lb[None, :]
            return jnp.maximum(dp2, _hardest_positive(d2, same, ia[:, None] != ids[None, :]))

        pool_arrays = (pool, p_lab, p_sq)
        dp2 = fold_pool_tiles(pass1, jnp.full_like(a_sq, 0.0), pool_arrays, pool_tile)

        def pass2(carry, rows, ids, fresh):
            semi2, negmax2 = carry
            d2, lb = block(rows)
            s, m = _negatives(d2, la[:, None] != lb[None, :], dp2)
            return jnp.minimum(semi2, s), jnp.maximum(negmax2, m)

        init = (jnp.full_like(a_sq, jnp.inf), jnp.full_like(a_sq, -1.0))
        semi2, negmax2 = fold_pool_tiles(pass2, init, pool_arrays, pool_tile)
        return dp2, semi2, negmax2

    tiles = (
        anchors.reshape(n_at, anchor_tile, e),
        a_lab.reshape(n_at, anchor_tile),
        a_ids.reshape(n_at, anchor_tile),
    )
    return tuple(r.reshape(-1) for r in lax.map(one_anchor_tile, tiles))


@functools.partial(jax.jit, static_argnames=("mesh", "anchor_tile", "pool_tile", "precision"))
def _mine_global_jit(
    anchors, a_lab, a_ids, pool, p_lab, mu, margin, *, mesh, anchor_tile, pool_tile, precision
):
    rows, rep = P(sharding.DATA_AXIS), P()
    fn = jax.shard_map(
        functools.partial(
            _mine_shard, anchor_tile=anchor_tile, pool_tile=pool_tile, precision=precision
        ),
        mesh=mesh,
        in_specs=(rows, rows, rows, rep, rep, rep),
        out_specs=(rows, rows, rows),
    )
    return _finish(*fn(anchors, a_lab, a_ids, pool, p_lab, mu), margin)


def mine_global(
    embeddings,
    labels,
    *,
    mesh: Mesh,
    margin: float = DEFAULT_MARGIN,
    anchor_tile: int = DEFAULT_ANCHOR_TILE,
    pool_tile: int = DEFAULT_POOL_TILE,
    anchor_rows=None,
    precision=lax.Precision.HIGHEST,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact triplet mining with the whole pool as one batch: host float32 ``(d_p, d_n)``.

    Args:
      embeddings: ``(N, E)`` integrated features (host or device array).
      labels: ``(N,)`` predicted labels (any integers).
      mesh: 1-D ``("data",)`` mesh; anchors are split across it, the pool is replicated.
      margin: ``m``, used only for anchors without any negative (``d_n = d_p + m``).
      anchor_tile, pool_tile: block sizes (rows); clipped to the problem size.
      anchor_rows: optional int array of pool rows to mine as anchors (all by
        default); they are still mined against the full pool. The results then
        have ``len(anchor_rows)`` entries, in that order.

    Memory per device: the replicated pool ``N·E`` floats, the anchors ``A·E``,
    and ``O(anchor_tile · pool_tile)`` for the current block: never ``N × N``.
    Time: ``4·A·N·E`` FLOPs (two passes of matmuls).

    Results do not depend on the number of devices (bitwise): the tile sizes
    depend on the problem size only, and each anchor's value is computed by the
    same sequence of blocks on any mesh.
    """
    x, y, mu = _prepare(embeddings, labels)
    n = x.shape[0]
    ids = np.arange(n) if anchor_rows is None else np.asarray(anchor_rows, dtype=np.int64)
    if ids.ndim != 1 or (ids.size and (ids.min() < 0 or ids.max() >= n)):
        raise ValueError("anchor_rows must be a 1-D array of row numbers in [0, N)")
    a = ids.shape[0]
    if a == 0:
        return np.zeros(0, np.float32), np.zeros(0, np.float32)
    at = min(anchor_tile, round_up(a, 8))
    pt = min(pool_tile, n)
    size = round_up(a, sharding.num_shards(mesh) * at)
    anchors = sharding.pad_rows(x if anchor_rows is None else x[ids], size)
    a_lab = sharding.pad_rows(y[ids], size, _NO_LABEL)
    a_ids = sharding.pad_rows(ids.astype(np.int32), size, -1)
    put = lambda v: sharding.put_global(v, sharding.row_sharded(mesh))
    dp, dn = _mine_global_jit(
        put(anchors),
        put(a_lab),
        put(a_ids),
        sharding.put_replicated(x, mesh),
        sharding.put_replicated(y, mesh),
        sharding.put_replicated(mu, mesh),
        np.float32(margin),
        mesh=mesh,
        anchor_tile=at,
        pool_tile=pt,
        precision=precision,
    )
    return sharding.to_host(dp, a), sharding.to_host(dn, a)


# ----------------------------------------------------------------------------- minibatch mining
def _mine_chunks(chunks, labs, mu, *, precision):
    """One device: dense mining inside each of its chunks ``(n_loc, c, E)``, one at a time."""

    def one_chunk(args):
        xc, lc = args
        xc = xc - mu
        d2 = sq_distances(xc, xc, precision=precision)
        idx = jnp.arange(xc.shape[0])
        same = lc[:, None] == lc[None, :]
        dp2 = _hardest_positive(d2, same, idx[:, None] != idx[None, :])
        neg = ~same & (lc[None, :] != _NO_LABEL)
        return (dp2, *_negatives(d2, neg, dp2))

    return lax.map(one_chunk, (chunks, labs))


@functools.partial(jax.jit, static_argnames=("mesh", "precision"))
def _mine_minibatch_jit(chunks, labs, mu, margin, *, mesh, precision):
    rows = P(sharding.DATA_AXIS)
    fn = jax.shard_map(
        functools.partial(_mine_chunks, precision=precision),
        mesh=mesh,
        in_specs=(rows, rows, P()),
        out_specs=(rows, rows, rows),
    )
    return _finish(*fn(chunks, labs, mu), margin)


def chunk_sizes(n: int, chunk_size: int) -> np.ndarray:
    """Sizes of the ``ceil(n / chunk_size)`` chunks of ``n`` rows, differing by at most 1.

    Balanced rather than full chunks plus a remainder: a short last chunk would give
    its anchors fewer candidates for a positive (README, "Method decisions": BATL).
    """
    if n < 1 or chunk_size < 1:
        raise ValueError(f"need n >= 1 and chunk_size >= 1, got n={n}, chunk_size={chunk_size}")
    count = -(-n // chunk_size)
    sizes = np.full(count, n // count, np.int64)
    sizes[: n % count] += 1
    return sizes


def chunk_ids(n: int, chunk_size: int, seed: int) -> np.ndarray:
    """The chunk of every pool row in :func:`mine_minibatch` with the same arguments."""
    sizes = chunk_sizes(n, chunk_size)
    out = np.empty(n, np.int64)
    out[np.random.default_rng(seed).permutation(n)] = np.repeat(np.arange(sizes.size), sizes)
    return out


def has_triplet(labels, groups=None) -> np.ndarray:
    """Bool ``(N,)``: the anchor has another row of its label (a positive) and a row of
    another label (a negative) in its batch; ``groups`` are batch ids (None: one batch)."""
    y = np.asarray(labels).reshape(-1)
    g = np.zeros(y.shape[0], np.int64) if groups is None else np.asarray(groups).reshape(-1)
    _, pair, pair_n = np.unique(np.stack([g, y]), axis=1, return_inverse=True, return_counts=True)
    _, grp, grp_n = np.unique(g, return_inverse=True, return_counts=True)
    same = pair_n[pair.reshape(-1)]
    return (same >= 2) & (grp_n[grp.reshape(-1)] > same)


def mine_minibatch(
    embeddings,
    labels,
    *,
    mesh: Mesh,
    chunk_size: int = DEFAULT_CHUNK,
    seed: int,
    margin: float = DEFAULT_MARGIN,
    precision=lax.Precision.HIGHEST,
) -> tuple[np.ndarray, np.ndarray]:
    """Triplet mining within chunks of the shuffled pool: host float32 ``(d_p, d_n)``.

    The pool is permuted with ``np.random.default_rng(seed).permutation(N)`` and
    cut into ``ceil(N / chunk_size)`` consecutive chunks whose sizes differ by at
    most 1 (:func:`chunk_sizes`); every chunk is mined as one batch. Results are in
    the original pool order.

    Chunks are padded to the largest one, split across the mesh and mined one at a
    time per device: memory ``O(N·E)`` for the permuted copy plus
    ``O(chunk_size²)``. Time ``2·N·chunk_size·E`` FLOPs.
    """
    x, y, mu = _prepare(embeddings, labels)
    n = x.shape[0]
    perm = np.random.default_rng(seed).permutation(n)
    sizes = chunk_sizes(n, chunk_size)
    c = int(sizes[0])
    n_chunks = round_up(sizes.size, sharding.num_shards(mesh))
    chunks = np.zeros((n_chunks, c, x.shape[1]), np.float32)
    labs = np.full((n_chunks, c), _NO_LABEL, np.int32)
    # Where each permuted row sits in the padded (n_chunks, c) layout.
    starts = np.cumsum(sizes) - sizes
    slot = np.repeat(np.arange(sizes.size) * c - starts, sizes) + np.arange(n)
    for i, (start, size) in enumerate(zip(starts, sizes, strict=True)):
        rows = perm[start : start + size]
        np.take(x, rows, axis=0, out=chunks[i, :size])  # no second full copy of the pool
        labs[i, :size] = y[rows]
    put = lambda v: sharding.put_global(v, sharding.row_sharded(mesh))
    dp, dn = _mine_minibatch_jit(
        put(chunks),
        put(labs),
        sharding.put_replicated(mu, mesh),
        np.float32(margin),
        mesh=mesh,
        precision=precision,
    )
    out_p = np.empty(n, np.float32)
    out_n = np.empty(n, np.float32)
    out_p[perm] = sharding.to_host(dp).reshape(-1)[slot]
    out_n[perm] = sharding.to_host(dn).reshape(-1)[slot]
    return out_p, out_n


def triplet_scores(d_p, d_n, margin: float = DEFAULT_MARGIN, hinge: bool = False) -> np.ndarray:
    """``m + d_p − d_n`` per anchor (float32 numpy), clipped at 0 with ``hinge``."""
    s = np.float32(margin) + np.asarray(d_p, np.float32) - np.asarray(d_n, np.float32)
    return np.maximum(s, np.float32(0)) if hinge else s


# ----------------------------------------------------------------------------- training loss
@jax.jit
def batch_triplet_loss(embeddings, labels, valid, margin=DEFAULT_MARGIN) -> jax.Array:
    """Differentiable triplet loss of one training batch with true labels: a scalar.

    Same mining rules as the pool (hardest positive, semi-hard negative with the
    farthest-negative fallback), chosen under ``stop_gradient``; the loss is
    ``max(0, m + d_p − d_n)`` averaged over valid anchors with at least one
    valid positive and one valid negative (0 when there are none). Dense
    ``B × B``: memory ``O(B² + B·E)``. Distances use a ``sqrt`` with a zero
    gradient at 0, so duplicated points give finite gradients.
    """
    x = embeddings.astype(jnp.float32)
    b = x.shape[0]
    d2 = sq_distances(x, x)
    d2s = lax.stop_gradient(d2)
    same = labels[:, None] == labels[None, :]
    both = valid[:, None] & valid[None, :]
    pos = same & both & ~jnp.eye(b, dtype=bool)
    neg = ~same & both
    dp2 = jnp.max(jnp.where(pos, d2s, 0.0), axis=1)
    semi = neg & (d2s > dp2[:, None])
    p_idx = jnp.argmax(jnp.where(pos, d2s, -1.0), axis=1)
    n_idx = jnp.where(
        semi.any(axis=1),
        jnp.argmin(jnp.where(semi, d2s, jnp.inf), axis=1),
        jnp.argmax(jnp.where(neg, d2s, -1.0), axis=1),
    )
    d = safe_sqrt(d2)
    d_p = jnp.take_along_axis(d, p_idx[:, None], axis=1)[:, 0]
    d_n = jnp.take_along_axis(d, n_idx[:, None], axis=1)[:, 0]
    use = valid & pos.any(axis=1) & neg.any(axis=1)
    per = jnp.where(use, jnp.maximum(margin + d_p - d_n, 0.0), 0.0)
    return per.sum() / jnp.maximum(use.sum(), 1).astype(jnp.float32)


# ----------------------------------------------------------------------------- top-k
def _order_keys(scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two uint32 keys whose lexicographic ascending order is descending ``scores``.

    Works on the float64 bit pattern, so float64 scores keep their full order
    with jax's 32-bit default; ``-0.0`` equals ``0.0`` and NaN ranks last, as in
    ``np.argsort(-scores, kind="stable")``.
    """
    s = np.asarray(scores, dtype=np.float64).reshape(-1) + 0.0  # -0.0 -> 0.0
    bits = s.view(np.uint64)
    neg = (bits >> np.uint64(63)).astype(bool)
    # Order-preserving map float -> unsigned int, then complemented for "descending".
    key = ~np.where(neg, ~bits, bits | np.uint64(1 << 63))
    key[np.isnan(s)] = np.uint64(2**64 - 2)  # after every number, before padding
    return (key >> np.uint64(32)).astype(np.uint32), (key & np.uint64(0xFFFFFFFF)).astype(np.uint32)


def _sorted_prefix(hi, lo, idx, k):
    hi, lo, idx = lax.sort((hi, lo, idx), num_keys=3)
    return hi[:k], lo[:k], idx[:k]


@functools.partial(jax.jit, static_argnames=("mesh", "k"))
def _top_k_jit(hi, lo, idx, *, mesh, k):
    shard = hi.shape[0] // sharding.num_shards(mesh)
    rows = P(sharding.DATA_AXIS)
    local = jax.shard_map(
        functools.partial(_sorted_prefix, k=min(k, shard)),
        mesh=mesh,
        in_specs=(rows, rows, rows),
        out_specs=(rows, rows, rows),
    )
    return _sorted_prefix(*local(hi, lo, idx), k)[2]  # merge the per-shard candidates


def top_k(scores, k: int, *, mesh: Mesh | None = None) -> np.ndarray:
    """Positions (int64) of the ``k`` largest ``scores``, ties broken by lower position.

    Equals ``np.argsort(-scores, kind="stable")[:k]`` (NaN ranks last). Each
    device sorts its shard and keeps its best ``min(k, shard)``; one final sort
    merges those candidates. Memory ``O(N)``.
    """
    hi, lo = _order_keys(scores)
    n = hi.shape[0]
    if not 0 <= k <= n:
        raise ValueError(f"k={k} must be in [0, {n}]")
    if k == 0:
        return np.zeros(0, np.int64)
    mesh = sharding.make_mesh(1) if mesh is None else mesh
    size = sharding.padded_size(n, sharding.num_shards(mesh))
    pad_key = np.uint32(0xFFFFFFFF)  # padding sorts after every real row (NaN included)
    put = lambda v, fill: sharding.put_global(
        sharding.pad_rows(v, size, fill), sharding.row_sharded(mesh)
    )
    idx = np.arange(n, dtype=np.uint32)
    out = _top_k_jit(put(hi, pad_key), put(lo, pad_key), put(idx, pad_key), mesh=mesh, k=k)
    return sharding.to_host(out).astype(np.int64)
