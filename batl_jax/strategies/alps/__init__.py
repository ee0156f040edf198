"""ALPS (Yuan, Lin & Boyd-Graber, EMNLP 2020): k-means on MLM surprisal embeddings.

Each row's surprisal embedding (:mod:`.surprisal`) comes from the *pre-trained*
encoder and MLM head, so ALPS needs no trained model and works from zero labels (cold
start); its :class:`Surprisal` feature is computed once per run and kept in the feature
cache across runs. The
strategy clusters the unlabeled rows into ``k`` clusters (k-means++ seeding, then
scikit-learn ``KMeans``-style restarts and Lloyd steps on the L2-normalised vectors, on
device) and labels
the row nearest each centre (:func:`batl_jax.kernels.kmeans.kmeans_select`).

Score column ``voronoi_size``: the number of unlabeled rows (the pick included)
whose nearest pick, in the normalised surprisal space, is this one (ties → the
earlier pick). The kernel returns picks, not centres, so this is the size of the
pick's share of the pool rather than of its k-means cluster; it says how many
unlabeled sentences each labeled one stands for.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import numpy as np

from batl_jax.kernels.kmeans import kmeans_select
from batl_jax.strategies.alps.mlm_fit import fit_mlm_head
from batl_jax.strategies.alps.surprisal import surprisal_embeddings
from batl_jax.strategies.base import (
    FeatureContext,
    FeatureValue,
    ModelNeeds,
    Selection,
    SelectionInput,
    register,
)

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


@dataclasses.dataclass(frozen=True)
class Surprisal:
    """ALPS's surprisal embedding of every pool row under the pre-trained encoder + MLM head.

    A property of the model and the data only (fixed position seed): computed once per
    run and cached across runs. ``fit_mlm_head`` fits a head when the checkpoint has
    none (a deviation from ALPS, returned with the value and recorded in run_info.json).
    """

    mask_prob: float
    masked: bool
    fit_mlm_head: bool
    fit_steps: int
    name: str = "surprisal"
    static: bool = True
    pass_keys: tuple[str, ...] = ()

    def compute(self, ctx: FeatureContext, fit, have) -> FeatureValue:
        key = "|".join(
            [
                "alps",
                str(self.mask_prob),
                str(self.masked),
                str(self.fit_mlm_head),
                str(self.fit_steps),
            ]
        )
        return ctx.cached("surprisal", key, lambda: self._compute(ctx))

    def _compute(self, ctx: FeatureContext) -> FeatureValue:
        tok, factory, enc = ctx.tokenizer, ctx.factory, ctx.encoded["train"]
        encoder = factory.encoder()
        special = sorted(set(tok.all_special_ids))
        head = factory.mlm_head
        info: dict[str, Any] = {}
        if self.fit_mlm_head and head is None:
            head, info = fit_mlm_head(
                encoder,
                None,
                factory.config,
                enc,
                np.arange(len(enc)),
                special_ids=special,
                mask_token_id=tok.mask_token_id,
                mesh=ctx.mesh,
                steps=self.fit_steps,
                seed=0,
                buckets=ctx.buckets,
            )
        s = surprisal_embeddings(
            encoder,
            head,
            enc,
            special_ids=special,
            mesh=ctx.mesh,
            buckets=ctx.buckets,
            batch_size=ctx.batch_size,
            mask_prob=self.mask_prob,
            masked=self.masked,
            mask_token_id=tok.mask_token_id,
            vocab_size=len(tok),
        )
        return FeatureValue(s, info or None)


def _features(section) -> tuple[Surprisal]:
    return (Surprisal(section.mask_prob, section.masked, section.fit_mlm_head, section.fit_steps),)


def _model(section) -> ModelNeeds:
    return ModelNeeds(mlm_head=True, mlm_head_optional=bool(section.fit_mlm_head))


@register(
    "alps", needs_trained_model=False, features=_features, model=_model, config_section="alps"
)
def select_alps(inp: SelectionInput, k: int) -> Selection:
    """k-means on the surprisal embeddings of the unlabeled rows; the row nearest each centre.

    Seeded by ``inp.seed`` (k-means++ draws); ``alps.n_init`` restarts, at most
    ``alps.max_iter`` Lloyd steps, tolerance ``alps.tol`` (as scikit-learn's ``KMeans``).
    """
    if inp.features is None:
        raise ValueError("alps needs its surprisal feature (declared in features=)")
    x = inp.features["surprisal"]
    candidates = np.zeros(x.shape[0], dtype=bool)
    candidates[inp.unlabeled] = True
    cfg = inp.config
    picks = kmeans_select(
        x,
        candidates,
        k,
        key=jax.random.key(inp.seed),
        n_init=int(cfg.n_init),
        max_iter=int(cfg.max_iter),
        tol=float(cfg.tol),
        mesh=inp.mesh,
    )
    sizes = voronoi_sizes(x, np.asarray(inp.unlabeled, np.int64), picks)
    return Selection(indices=picks, scores={"voronoi_size": sizes})
