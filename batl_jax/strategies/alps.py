"""ALPS (Yuan, Lin & Boyd-Graber, EMNLP 2020): k-means on MLM surprisal embeddings.

Each row's surprisal embedding (:mod:`batl_jax.surprisal`) comes from the
*pre-trained* encoder and MLM head, so ALPS needs no trained model and works from
zero labels (cold start); the loop computes the surprisal matrix once per run. The
strategy clusters the unlabeled rows into ``k`` clusters (k-means++ seeding, then
``alps.kmeans_iters`` Lloyd steps on the L2-normalised vectors, on device) and labels
the row nearest each centre (:func:`batl_jax.kernels.kmeans.kmeans_select`).

Score column ``voronoi_size``: the number of unlabeled rows (the pick included)
whose nearest pick, in the normalised surprisal space, is this one (ties → the
earlier pick). The kernel returns picks, not centres, so this is the size of the
pick's share of the pool rather than of its k-means cluster; it says how many
unlabeled sentences each labeled one stands for.
"""

from __future__ import annotations

import jax
import numpy as np

from batl_jax.kernels.kmeans import kmeans_select
from batl_jax.strategies.base import Selection, SelectionInput, register

# Pool rows per block when counting Voronoi sizes: (block, k) float32 distances at a time.
_BLOCK_ROWS = 8192


def _normalise(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def voronoi_sizes(x: np.ndarray, rows: np.ndarray, picks: np.ndarray) -> np.ndarray:
    """For each pick, how many of ``rows`` have it as their nearest pick: ``(k,)`` int64.

    ``x`` is normalised here as in the kernel; blocks of rows keep host memory at
    ``_BLOCK_ROWS × k`` floats.
    """
    centres = _normalise(x[picks])
    c_sq = np.sum(centres * centres, axis=1)
    counts = np.zeros(len(picks), np.int64)
    for start in range(0, len(rows), _BLOCK_ROWS):
        xb = _normalise(x[rows[start : start + _BLOCK_ROWS]])
        # ‖x‖² is constant per row: the argmin needs only ‖c‖² − 2 x·c.
        nearest = np.argmin(c_sq[None, :] - 2.0 * (xb @ centres.T), axis=1)
        counts += np.bincount(nearest, minlength=len(picks))
    return counts


@register("alps", needs_trained_model=False, needs=("surprisal",), config_section="alps")
def select_alps(inp: SelectionInput, k: int) -> Selection:
    """k-means on the surprisal embeddings of the unlabeled rows; the row nearest each centre.

    Seeded by ``inp.seed`` (k-means++ draws); ``alps.kmeans_iters`` Lloyd steps.
    """
    feats = inp.features
    if feats is None or feats.surprisal is None:
        raise ValueError(
            "alps needs PoolFeatures.surprisal (the strategy declares needs=('surprisal',)); "
            "the feature pass did not provide it"
        )
    x = feats.surprisal
    candidates = np.zeros(x.shape[0], dtype=bool)
    candidates[inp.unlabeled] = True
    num_iters = int(inp.config.kmeans_iters) if inp.config is not None else 20
    picks = kmeans_select(
        x,
        candidates,
        k,
        key=jax.random.key(inp.seed),
        num_iters=num_iters,
        mesh=inp.mesh,
    )
    sizes = voronoi_sizes(x, np.asarray(inp.unlabeled, np.int64), picks)
    return Selection(indices=picks, scores={"voronoi_size": sizes})
