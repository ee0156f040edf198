"""Nearest-neighbour reductions over a sharded pool: min distance to a set, cosine kNN.

* :func:`min_sq_dist_to_set` (device side) and :func:`min_distances` (host):
  ``min_{s ∈ S} ‖x − s‖`` for every pool row, used by CORESET's distance to the
  labeled set and by the diversity metric (paper Eq. 7).
* :func:`knn_similarities`: the ``k`` largest cosine similarities of each query
  to the pool, the query itself excluded, used by the density metric (Eq. 9).

Neither holds a ``|U| × |S|`` or ``|U| × |U|`` matrix: they walk the pool in
tiles (:func:`batl_jax.kernels.distances.fold_pool_tiles`), with the pool rows
split over the mesh's ``"data"`` axis (``shard_map``) and the set / queries
replicated. Results come back to the host per row, so the device count changes
nothing but rounding inside a tile.
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
from batl_jax.kernels.collectives import AXIS
from batl_jax.kernels.distances import (
    DEFAULT_PRECISION,
    fold_pool_tiles,
    snap_sq_dist,
    sq_distances,
    sq_norms,
)

DEFAULT_TILE = 1024


# ----------------------------------------------------------------------------- min distance
def min_sq_dist_to_set(x, centre, ref, tile: int, precision=DEFAULT_PRECISION) -> jax.Array:
    """``min_j ‖x_i − ref_j‖²`` for every row ``i`` of ``x``, by ``tile × tile`` blocks.

    Rows are centred on ``centre`` first (per tile, no copy of ``x``): the
    expansion ``‖a‖² + ‖b‖² − 2a·b`` has absolute error ``≈ ε(‖a‖² + ‖b‖²)``,
    so removing the common component keeps small distances meaningful, and
    values under that noise are exactly 0 (:func:`snap_sq_dist`), so a row of
    ``ref`` is at distance 0 from itself. Pure: call it per shard inside
    ``shard_map``. Memory: the ``(n,)`` result, ``ref`` and one ``tile × tile`` block.
    """
    ref = ref - centre
    ref_sq = sq_norms(ref)
    ref_tile = min(tile, ref.shape[0])

    def pool_body(out, rows, ids, fresh):
        (xt,) = rows
        xt = xt - centre
        xt_sq = sq_norms(xt)

        def ref_body(best, ref_rows, _ids, _fresh):
            r, r_sq = ref_rows
            d2 = sq_distances(xt, r, xt_sq, r_sq, precision=precision)
            d2 = snap_sq_dist(d2, xt_sq[:, None] + r_sq[None, :])
            return jnp.minimum(best, jnp.min(d2, axis=1))

        # min is idempotent, so the overlapping last tile needs no masking.
        best = fold_pool_tiles(ref_body, jnp.full_like(xt_sq, jnp.inf), (ref, ref_sq), ref_tile)
        return lax.dynamic_update_slice_in_dim(out, best, ids[0], axis=0)

    init = jnp.full_like(x[:, 0], jnp.inf, dtype=jnp.float32)
    return fold_pool_tiles(pool_body, init, (x,), min(tile, x.shape[0]))


@functools.lru_cache(maxsize=64)
def _min_dist_fn(mesh: Mesh, tile: int, precision):
    fn = jax.shard_map(
        functools.partial(min_sq_dist_to_set, tile=tile, precision=precision),
        mesh=mesh,
        in_specs=(P(AXIS), P(), P()),
        out_specs=P(AXIS),
    )
    return jax.jit(fn)


def min_distances(
    pool, selected, *, mesh: Mesh, tile: int = DEFAULT_TILE, precision=DEFAULT_PRECISION
) -> np.ndarray:
    """``min_{s ∈ selected} ‖x − s‖`` for every row ``x`` of ``pool``: host float32 ``(N,)``.

    Memory per device: its share of the pool, the replicated ``selected`` and one
    ``(tile, tile)`` block. Rows are centred on the pool mean first, which keeps the
    cancellation error of ``‖a‖² + ‖b‖² − 2a·b`` small for features with a large common
    component (mean-pooled sentence vectors have one).
    """
    x = np.asarray(pool, np.float32)
    sel = np.asarray(selected, np.float32)
    if x.ndim != 2 or sel.ndim != 2 or x.shape[1] != sel.shape[1]:
        raise ValueError(f"pool {x.shape} and selected {sel.shape} must be (N, d) and (m, d)")
    if x.shape[0] == 0 or sel.shape[0] == 0:
        raise ValueError("min_distances needs a non-empty pool and selection")
    mu = x.mean(axis=0, dtype=np.float64).astype(np.float32)
    x_dev, _ = sharding.put_rows(x, mesh)
    out = _min_dist_fn(mesh, int(tile), precision)(
        x_dev, sharding.put_replicated(mu, mesh), sharding.put_replicated(sel, mesh)
    )
    return np.sqrt(sharding.to_host(out, x.shape[0]))


# ----------------------------------------------------------------------------- cosine kNN
def _knn_shard(x, ids, q, qids, *, k, tile, precision):
    """One device: the ``k`` largest cosine similarities of each query to local pool rows.

    ``x``/``q`` are L2-normalised. Pool rows with id ``-1`` (padding) and the query's own
    row are excluded, as is the overlap of the last tile (a top-k would count it twice).
    Carry: ``(m, k)`` running top values, merged with each ``(m, tile)`` block.
    """

    def body(top, rows, _, fresh):
        b, bid = rows
        sims = lax.dot_general(
            q,
            b,
            (((1,), (1,)), ((), ())),
            precision=precision,
            preferred_element_type=jnp.float32,
        )
        ok = fresh[None, :] & (bid[None, :] >= 0) & (bid[None, :] != qids[:, None])
        block = jnp.concatenate([top, jnp.where(ok, sims, -jnp.inf)], axis=1)
        return lax.top_k(block, k)[0]

    init = jnp.full((q.shape[0], k), -jnp.inf, jnp.float32)
    # The carry varies across devices (each holds its own top k); say so to shard_map.
    init = lax.pcast(init, (AXIS,), to="varying")
    return fold_pool_tiles(body, init, (x, ids), tile)


@functools.lru_cache(maxsize=64)
def _knn_fn(mesh: Mesh, k: int, tile: int, precision):
    local = jax.shard_map(
        functools.partial(_knn_shard, k=k, tile=tile, precision=precision),
        mesh=mesh,
        in_specs=(P(AXIS), P(AXIS), P(), P()),
        out_specs=P(AXIS),
    )

    def merged(x, ids, q, qids):
        cands = local(x, ids, q, qids)  # (shards · m, k): each device's candidates
        m = q.shape[0]
        per_query = cands.reshape(-1, m, k).transpose(1, 0, 2).reshape(m, -1)
        return lax.top_k(per_query, k)[0]

    return jax.jit(merged)


def _normalize(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def knn_similarities(
    pool,
    pool_ids,
    queries,
    query_ids,
    *,
    k: int,
    mesh: Mesh,
    tile: int = DEFAULT_TILE,
    precision=DEFAULT_PRECISION,
) -> np.ndarray:
    """Cosine similarities of each query to its ``k`` most similar pool rows: ``(m, k)``.

    A pool row whose id equals the query's id (the query itself) is never its neighbour.
    Values are sorted descending; ``-inf`` fills slots beyond the available neighbours.
    Pool rows are split over the mesh; each device keeps its local top ``k`` per query and
    one final ``top_k`` merges them. Memory: ``O(m · (k + tile))`` per device besides the
    features.
    """
    x, q = _normalize(pool), _normalize(queries)
    n, m = x.shape[0], q.shape[0]
    if k < 1 or n == 0 or m == 0:
        raise ValueError(f"knn_similarities needs k >= 1 (got {k}) and non-empty inputs")
    x_dev, _ = sharding.put_rows(x, mesh)
    ids_dev, _ = sharding.put_rows(np.asarray(pool_ids, np.int32), mesh, pad_value=-1)
    t = min(int(tile), x_dev.shape[0] // sharding.num_shards(mesh))
    out = _knn_fn(mesh, int(k), t, precision)(
        x_dev,
        ids_dev,
        sharding.put_replicated(q, mesh),
        sharding.put_replicated(np.asarray(query_ids, np.int32), mesh),
    )
    return sharding.to_host(out)
