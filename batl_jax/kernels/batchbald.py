"""BALD and BatchBALD (Kirsch et al., 2019) over MC-dropout probabilities, sharded.

Inputs are ``mc_probs (K, N, C)``: class probabilities of ``K`` dropout passes.

* BALD: ``I(y; ω) = H[mean_k p_k] − mean_k H[p_k]`` per row; :func:`bald_select`
  takes the top ``k`` (ties → lowest row id).
* BatchBALD: greedy. With batch ``b_1 … b_{n−1}`` chosen, candidate ``x`` scores
  ``H(y_{b_1}, …, y_{b_{n−1}}, y_x) − Σ_{i ∈ batch ∪ {x}} E_k H(y_i | ω_k)``
  (the conditional term is additive); step 1 is BALD. The best available
  candidate is picked (ties → lowest id) and its score recorded.

Joint entropy of a candidate, from a table ``T (R, K)`` of per-``ω_k``
probabilities of ``R`` configurations of the batch::

    m[r, c] = 1/K Σ_k T[r, k] p_x[k, c]         # a (R, K) @ (K, tile·C) matmul
    H ≈ Σ_r w_r Σ_c −m[r, c] log m[r, c] + h0

* Exact (while ``R·C = C^n ≤ max_configs``): ``T`` holds all ``C^{n−1}``
  configurations (``T[r·C + c, k] = T_prev[r, k] p_b[k, c]``, host float64),
  ``w = 1``, ``h0 = 0``. Default ``max_configs = 2**14``: the largest table is
  ``K × 2**14/C`` floats (≤ 1.3 MB at K = 20) and a candidate costs ``2·K·2**14``
  FLOPs, a few ms per 100 candidates on one CPU core.
* Sampled (beyond): BatchBALD's ``SampledJointEntropy``. ``M = ⌊S/K⌋·K``
  configurations (``S = num_samples``) are drawn, ``M/K`` from each ``ω_k``
  (the mixture, stratified), with fresh draws every step from
  ``fold_in(key, step)``. ``T[s, k] = Π_i p_{b_i}[k, y_i^s]`` and
  ``H ≈ 1/M Σ_s Σ_c −m[s, c] log m[s, c] / q_s``, ``q_s = mean_k T[s, k]``
  (importance weights). Rows of ``T`` are kept in log space and rescaled to a
  row max of 1 (``T' = T / α_s``): the ratio ``m/q`` is unchanged, and the
  ``log α_s`` it takes out of ``log m`` comes back as ``h0 = −mean_s log α_s``
  (``Σ_c m[s, c] = q_s``), so long batches do not underflow float32.

Memory per device: the ``(N/D, K, C)`` probability shard, the table, and one
``R × tile·C`` block (``tile`` chosen so it has ≤ 4M elements unless given).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.scipy.special import entr
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P

from batl_jax import sharding
from batl_jax.kernels.collectives import AXIS, check_selection_args, global_argmax, row_ids
from batl_jax.kernels.distances import fold_pool_tiles

DEFAULT_MAX_CONFIGS = 2**14
DEFAULT_NUM_SAMPLES = 1000
# Elements of one (R, tile·C) block of joint probabilities (16 MB of float32).
_BLOCK_ELEMS = 1 << 22


@jax.jit
def _bald(mc_probs):
    p = mc_probs.astype(jnp.float32)
    predictive = jnp.sum(entr(jnp.mean(p, axis=0)), axis=-1)
    expected = jnp.mean(jnp.sum(entr(p), axis=-1), axis=0)
    return predictive - expected


def bald_scores(mc_probs: np.ndarray, *, chunk: int = 16384) -> np.ndarray:
    """BALD mutual information ``(N,)`` float32 of ``mc_probs (K, N, C)``.

    Rows go to the device ``chunk`` at a time (at most two compiled shapes), so
    the extra memory is ``O(K·chunk·C + N)`` rather than copies of the whole
    ``(K, N, C)`` input (2.5 GB extra at 200k × 20 × 53 when done in one call).
    """
    mc = np.asarray(mc_probs)
    n = mc.shape[1]
    parts = [
        np.asarray(_bald(jnp.asarray(mc[:, i : i + chunk], jnp.float32)))
        for i in range(0, n, chunk)
    ]
    return np.concatenate(parts) if parts else np.zeros(0, np.float32)


def bald_select(
    mc_probs: np.ndarray, candidate_mask: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` BALD candidates (ties → lowest id): ``(picks int64 (k,), scores float32 (k,))``."""
    cand = check_selection_args(candidate_mask, mc_probs.shape[1], k)
    s = jnp.where(jnp.asarray(cand), bald_scores(mc_probs), -jnp.inf)
    scores, picks = lax.top_k(s, k)  # lax.top_k puts the lower index first on ties
    return np.asarray(picks, np.int64), np.asarray(scores, np.float32)


# --------------------------------------------------------------------------------------
# Device pieces.
# --------------------------------------------------------------------------------------
@jax.jit
def _conditional_entropy(probs_nkc):
    """``E_k H(y | ω_k)`` per row of ``(N, K, C)`` probabilities."""
    return jnp.mean(jnp.sum(entr(probs_nkc), axis=-1), axis=-1)


def _score_shard(probs, cond, avail, table, weight, offset, *, tile: int):
    """Best available candidate ``(row id, score)`` of this step, replicated."""
    num_k, num_c = probs.shape[1], probs.shape[2]

    def body(out, rows, ids, _fresh):
        (pt,) = rows  # (tile, K, C)
        pm = jnp.transpose(pt, (1, 0, 2)).reshape(num_k, -1)  # (K, tile·C)
        m = jnp.dot(table, pm, precision=lax.Precision.HIGHEST) / num_k  # (R, tile·C)
        h = jnp.sum(entr(m) * weight[:, None], axis=0).reshape(-1, num_c).sum(axis=1)
        return lax.dynamic_update_slice_in_dim(out, h, ids[0], axis=0)

    joint = fold_pool_tiles(body, jnp.full_like(cond, 0.0), (probs,), tile)
    return global_argmax(joint + offset - cond, avail, row_ids(probs.shape[0]))


@functools.lru_cache(maxsize=64)
def _scorer(mesh: Mesh, tile: int):
    body = functools.partial(_score_shard, tile=tile)
    specs = (P(AXIS), P(AXIS), P(AXIS), P(), P(), P())
    return jax.jit(jax.shard_map(body, mesh=mesh, in_specs=specs, out_specs=(P(), P())))


@functools.partial(jax.jit, static_argnames=("per_k",))
def _sampled_table(batch_probs, n_valid, key, *, per_k: int):
    """Sampled configurations of the first ``n_valid`` rows of ``batch_probs (k, K, C)``.

    Returns ``(table (M, K), weight (M,), h0)`` with ``M = per_k·K``: rescaled
    per-``ω`` probabilities of each sampled configuration, importance weights
    ``1/(M q_s)`` and the rescaling correction (module doc). Padded to ``k``
    rows so one compilation serves every step.
    """
    kmax, num_k, _ = batch_probs.shape
    omega = jnp.repeat(jnp.arange(num_k), per_k)  # sample s is drawn under ω_{s // per_k}
    logp = jnp.log(batch_probs)
    y = jax.random.categorical(key, logp[:, omega, :], axis=-1)  # (kmax, M)
    # log p_{b_i}[k', y_i^s] for every ω_k': (kmax, M, K)
    logp_y = jnp.take_along_axis(logp[:, None, :, :], y[:, :, None, None], axis=-1)[..., 0]
    valid = (jnp.arange(kmax) < n_valid)[:, None, None]
    log_t = jnp.sum(jnp.where(valid, logp_y, 0.0), axis=0)  # (M, K)
    log_alpha = jnp.max(log_t, axis=1)  # finite: ω_{s // per_k} drew y^s, so p > 0
    table = jnp.exp(log_t - log_alpha[:, None])
    m = table.shape[0]
    weight = 1.0 / (m * jnp.mean(table, axis=1))
    return table, weight, -jnp.mean(log_alpha)


# --------------------------------------------------------------------------------------
# Host greedy loop.
# --------------------------------------------------------------------------------------
def batchbald_select(
    mc_probs: np.ndarray,
    candidate_mask: np.ndarray,
    k: int,
    *,
    key: jax.Array,
    max_configs: int = DEFAULT_MAX_CONFIGS,
    num_samples: int = DEFAULT_NUM_SAMPLES,
    mesh: Mesh,
    candidate_tile: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Greedy BatchBALD batch of ``k`` candidates.

    Args:
      mc_probs: ``(K, N, C)`` MC-dropout probabilities.
      candidate_mask: ``(N,)`` bool, rows that may be picked.
      k: batch size, ``1 <= k <= #candidates``.
      key: JAX PRNG key of the sampled estimator (step ``n`` uses ``fold_in(key, n)``).
      max_configs: exact joint entropy while ``C^n`` (batch configurations
        including the candidate's) is at most this.
      num_samples: sampled configurations per step beyond (rounded down to a
        multiple of ``K``, at least ``K``).
      mesh: 1-D ``("data",)`` mesh; candidates are sharded over it.
      candidate_tile: candidates per block (default: the block has ≤ 4M elements).

    Returns:
      ``picks`` int64 ``(k,)`` in pick order, ``scores`` float32 ``(k,)``: the
      batch's joint mutual information (exact or estimated) when each was added.

    The loop over ``k`` runs on the host, one sharded scoring call per step;
    the scorer compiles once per distinct table size (``≤ log_C(max_configs) + 2``).
    """
    mc = np.asarray(mc_probs, dtype=np.float32)
    num_k, n, num_c = mc.shape
    avail = check_selection_args(candidate_mask, n, k).copy()
    probs_nkc = np.ascontiguousarray(mc.transpose(1, 0, 2))
    probs_dev, _ = sharding.put_rows(probs_nkc, mesh)
    n_local = probs_dev.shape[0] // sharding.num_shards(mesh)
    cond_dev = _conditional_entropy(probs_dev)
    cond = np.asarray(cond_dev, dtype=np.float64)[:n]
    per_k = max(1, num_samples // num_k)
    # Padding rows for the sampler: one certain class under every ω, a factor of 1.
    batch_probs = np.zeros((k, num_k, num_c), np.float32)
    batch_probs[:, :, 0] = 1.0

    # The exact table over the (empty) batch's configurations; None once sampled.
    table: np.ndarray | None = np.ones((1, num_k))
    picks: list[int] = []
    scores: list[float] = []
    for step in range(k):
        if table is not None and table.shape[0] * num_c <= max_configs:
            weight, h0 = np.ones(table.shape[0], np.float32), 0.0
            t_dev = table.astype(np.float32)
        else:
            table = None
            t_dev, weight, h0 = _sampled_table(
                jnp.asarray(batch_probs), step, jax.random.fold_in(key, step), per_k=per_k
            )
        rows = t_dev.shape[0]
        tile = candidate_tile or max(1, _BLOCK_ELEMS // (rows * num_c))
        tile = max(1, min(tile, n_local))
        offset = np.float32(h0 - cond[picks].sum())
        avail_dev, _ = sharding.put_rows(avail, mesh, pad_value=False)
        put = functools.partial(sharding.put_replicated, mesh=mesh)
        pick, score = _scorer(mesh, tile)(
            probs_dev, cond_dev, avail_dev, put(t_dev), put(weight), put(offset)
        )
        pick = int(pick)
        picks.append(pick)
        scores.append(float(score))
        avail[pick] = False
        batch_probs[step] = mc[:, pick, :]
        if table is not None and table.shape[0] * num_c * num_c <= max_configs:
            # T[r·C + c, k] = T_prev[r, k] · p_pick[k, c]
            table = (table[:, None, :] * mc[:, pick, :].T[None, :, :]).reshape(-1, num_k)
        else:
            table = None
    return np.asarray(picks, np.int64), np.asarray(scores, np.float32)
