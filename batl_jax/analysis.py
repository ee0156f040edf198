"""The paper's analysis metrics of a selected batch (Section "Analysis", Eqs. 7–9).

For the pool ``U`` (the unlabeled rows at selection time, the batch ``S`` included) and
features ``x = [s(x); h_C(x)]`` of the round's model:

* diversity (Eq. 7, Zhdanov 2019): ``(mean_{x∈U} min_{s∈S} ‖x − s‖)^{-1}``;
* uncertainty (Eq. 8, as in ALPS): mean entropy (nats) over ``S`` of a *reference*
  classifier trained once on the full training split, the same for every strategy, seed
  and round (:mod:`batl_jax.reference`, cached on disk);
* density (Eq. 9, Zhu et al. 2008): mean over ``S`` of the mean cosine similarity of each
  selected sample to its ``k`` most similar other rows of ``U``.

Distances and similarities come from the sharded pool kernels of
:mod:`batl_jax.kernels.neighbors` (never a ``|U| × |S|`` or ``|U| × |U|`` matrix); their
per-row results are averaged here on the host in float64, so the device count changes
nothing but rounding inside a tile.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np
from jax.sharding import Mesh

from batl_jax.kernels.neighbors import DEFAULT_TILE, knn_similarities, min_distances

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------- features
def analysis_features(s: np.ndarray, h: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``[s(x); h_C(x)]`` of ``rows`` as one float32 ``(len(rows), 2d)`` array (one copy)."""
    out = np.empty((len(rows), s.shape[1] + h.shape[1]), np.float32)
    out[:, : s.shape[1]] = s[rows]
    out[:, s.shape[1] :] = h[rows]
    return out


def entropy(logits: np.ndarray) -> np.ndarray:
    """Predictive entropy ``-Σ p ln p`` (nats) of ``softmax(logits)`` per row, float64."""
    z = np.asarray(logits, np.float64)
    z = z - z.max(axis=1, keepdims=True)
    log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return -(np.exp(log_p) * log_p).sum(axis=1)


# ----------------------------------------------------------------------------- diversity
def diversity(pool, selected, *, mesh: Mesh, tile: int = DEFAULT_TILE) -> float | None:
    """Eq. 7: the inverse mean distance of pool rows to their nearest selected row.

    None when that mean is 0 (every pool row is selected or duplicates one), where the
    inverse is infinite and JSON has no number for it.
    """
    mean = float(np.mean(min_distances(pool, selected, mesh=mesh, tile=tile), dtype=np.float64))
    return 1.0 / mean if mean > 0 else None


# ----------------------------------------------------------------------------- density
def knn_density(
    pool, pool_ids, queries, query_ids, *, k: int = 10, mesh: Mesh, tile: int = DEFAULT_TILE
) -> float | None:
    """Eq. 9 averaged over the queries: mean cosine similarity to their ``k`` nearest rows.

    ``k`` is capped at the number of other pool rows; None when there are none.
    """
    k = min(k, len(pool_ids) - 1)
    if k < 1:
        return None
    sims = knn_similarities(pool, pool_ids, queries, query_ids, k=k, mesh=mesh, tile=tile)
    sims = sims.astype(np.float64)
    # A query outside the pool has k candidates more than needed, never fewer.
    return float(np.mean(np.where(np.isfinite(sims), sims, np.nan).mean(axis=1)))


# ----------------------------------------------------------------------------- per round
def batch_metrics(
    sentence: np.ndarray,
    hidden: np.ndarray,
    selected,
    unlabeled,
    *,
    mesh: Mesh,
    density_k: int,
    reference_entropy: Callable[[], np.ndarray] | None,
) -> dict[str, float | None]:
    """Eqs. 7-9 of one selected batch on ``[s(x); h_C(x)]`` of the pool ``unlabeled``.

    ``reference_entropy()`` gives the reference classifier's entropy per training row
    (Eq. 8); None when the run cannot train one (people label the pool, so the labels
    of the whole split are unknown): uncertainty is then null.
    """
    selected = np.asarray(selected, np.int64)
    unlabeled = np.asarray(unlabeled, np.int64)
    pos = np.searchsorted(unlabeled, selected)  # unlabeled is sorted (np.setdiff1d)
    if not np.array_equal(unlabeled[np.minimum(pos, len(unlabeled) - 1)], selected):
        raise ValueError("selected rows must be rows of the (sorted) unlabeled pool")
    x = analysis_features(sentence, hidden, unlabeled)
    uncertainty = None
    if reference_entropy is not None:
        uncertainty = float(np.mean(reference_entropy()[selected]))
    return {
        "diversity": diversity(x, x[pos], mesh=mesh),
        "uncertainty": uncertainty,
        "density": knn_density(x, unlabeled, x[pos], selected, k=density_k, mesh=mesh),
    }
