"""BATL: select k samples by ``L_final = L_target + λ · L_triplet``.

``L_target(x) = -log p(x)_ŷ`` with the predicted label ŷ; ``L_triplet`` is the
batch-hard (hardest positive, semi-hard negative) triplet term of each unlabeled
anchor on the integrated features ``e(x)``, mined with predicted labels within
shuffled, balanced chunks of the pool (``batl.mining = minibatch``, the paper's) or
over the whole pool (``global``, exact). See SPEC.md, "BATL scoring".

Decisions beyond the paper (README, "Method decisions": BATL):

* ``batl.lone_anchor = mean``: an anchor with no positive or no negative in its
  batch has no triplet; its term is the mean term of the anchors that have one
  (0 when none has), so a rare predicted class is neither rewarded nor punished.
  ``paper`` keeps the raw fallbacks (``d_p = 0``; ``d_n = d_p + m``).
* ``batl.batch_mode = spaced``: rows are taken in ``L_final`` order but at least
  ``batl.spacing`` apart in ``e(x)`` (:mod:`batl_jax.kernels.spaced`); ``topk`` is
  Algorithm 1's top-k.
* ``batl.triplet_grad``: how far the training-time triplet loss back-propagates
  (``all``, or ``embedding_only``: the integration layer alone).
"""

from __future__ import annotations

import dataclasses

import jax
import numpy as np
from flax import nnx

from batl_jax.errors import ConfigError
from batl_jax.kernels import spaced, triplet
from batl_jax.strategies.base import (
    FeatureContext,
    FeatureValue,
    ModelNeeds,
    Selection,
    SelectionInput,
    register,
)


def target_loss(logits: np.ndarray) -> np.ndarray:
    """``-log softmax(z)_{argmax z}`` = logsumexp(z) − max(z), in float64 for accuracy."""
    z = np.asarray(logits, np.float64)
    m = z.max(axis=1)
    return (m + np.log(np.exp(z - m[:, None]).sum(axis=1))) - m


LONE_ANCHOR_RULES = ("mean", "paper")
BATCH_MODES = ("topk", "spaced")
TRIPLET_GRADS = ("all", "embedding_only")


def _choice(cfg, key: str, choices: tuple[str, ...]) -> str:
    value = cfg[key]
    if value not in choices:
        raise ConfigError(f"batl.{key}={value!r}: use one of {', '.join(map(repr, choices))}")
    return value


def neutral_fill(trip: np.ndarray, informed: np.ndarray) -> np.ndarray:
    """``trip`` with every anchor outside ``informed`` set to the mean over ``informed``
    (0 when it is empty): float64."""
    out = np.asarray(trip, np.float64).copy()
    out[~informed] = out[informed].mean() if informed.any() else 0.0
    return out


def _mine(embedding, pred, cfg, *, mesh, seed: int):
    """``(d_p, d_n, informed)``: the mined distances and which anchors have a triplet."""
    if cfg.mining == "global":
        d_p, d_n = triplet.mine_global(embedding, pred, mesh=mesh, margin=cfg.margin)
        return d_p, d_n, triplet.has_triplet(pred)
    if cfg.mining == "minibatch":
        if cfg.mining_batch < 2:
            raise ConfigError(f"batl.mining_batch={cfg.mining_batch}: need at least 2")
        d_p, d_n = triplet.mine_minibatch(
            embedding, pred, mesh=mesh, chunk_size=cfg.mining_batch, seed=seed, margin=cfg.margin
        )
        chunks = triplet.chunk_ids(len(pred), cfg.mining_batch, seed)
        return d_p, d_n, triplet.has_triplet(pred, chunks)
    raise ConfigError(f"batl.mining={cfg.mining!r}: use 'minibatch' or 'global'")


def batl_scores(embedding, logits, cfg, *, mesh, seed: int) -> dict[str, np.ndarray]:
    """Every BATL score column for the given pool rows (features already restricted to U)."""
    rule = _choice(cfg, "lone_anchor", LONE_ANCHOR_RULES)
    pred = np.asarray(logits).argmax(axis=1)
    d_p, d_n, informed = _mine(embedding, pred, cfg, mesh=mesh, seed=seed)
    trip = triplet.triplet_scores(d_p, d_n, cfg.margin, cfg.hinge).astype(np.float64)
    if rule == "mean":
        trip = neutral_fill(trip, informed)
    target = target_loss(logits)
    return {
        "final": target + cfg.lambda_ * trip,
        "target": target,
        "triplet": trip,
        "d_p": d_p,
        "d_n": d_n,
        "has_triplet": informed.astype(np.float64),
    }


def select_rows(final: np.ndarray, embedding, k: int, cfg, *, mesh) -> np.ndarray:
    """Positions of the ``k`` rows BATL takes: top-k of ``final``, or spaced in ``e(x)``."""
    mode = _choice(cfg, "batch_mode", BATCH_MODES)
    if mode == "topk":
        # U is sorted, so "lower pool position" is "lower dataset row" for ties.
        return triplet.top_k(final, k, mesh=mesh)
    if not cfg.spacing >= 0:
        raise ConfigError(f"batl.spacing={cfg.spacing}: need a distance >= 0")
    order = triplet.top_k(final, len(final), mesh=mesh)
    rank = np.empty(len(final), np.int64)
    rank[order] = np.arange(len(final))
    picks, _ = spaced.spaced_top_k(embedding, rank, k, float(cfg.spacing), mesh=mesh)
    return picks


def nearest_pick(embedding: np.ndarray) -> np.ndarray:
    """Each picked row's distance to the nearest other pick in ``e(x)`` (k × k, float64;
    0 for k = 1): twins in a batch show as 0."""
    e = np.asarray(embedding, np.float64)
    if len(e) < 2:
        return np.zeros(len(e))
    d = np.sqrt(np.maximum(((e[:, None, :] - e[None, :, :]) ** 2).sum(-1), 0.0))
    np.fill_diagonal(d, np.inf)
    return d.min(axis=1)


def integrate_on_host(params, sentence: np.ndarray, hidden: np.ndarray, normalize: bool):
    """e(x) of the trained integration layer applied to ``[sentence; h_C]`` on the host."""
    layer = jax.device_get(nnx.to_pure_dict(params))["integrate"]
    e = np.concatenate([sentence, hidden], axis=1) @ np.asarray(layer["kernel"]) + np.asarray(
        layer["bias"]
    )
    if normalize:
        e = e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)
    return e.astype(np.float32)


@dataclasses.dataclass(frozen=True)
class Embedding:
    """BATL's integrated feature ``e(x) = normalize(W_e [s(x); h_C(x)] + b_e)``.

    ``sentence_rep = finetuned`` (Algorithm 1) takes e(x) from the round's pool pass.
    ``pretrained`` feeds the pre-trained encoder's s(x) to the trained integration layer
    instead; in head mode the model's s(x) *is* the pre-trained one, so both coincide.
    """

    sentence_rep: str
    normalize: bool
    name: str = "embedding"
    static: bool = False
    pass_keys: tuple[str, ...] = ("embedding",)

    def compute(self, ctx: FeatureContext, fit, have) -> FeatureValue:
        if self.sentence_rep == "pretrained" and not ctx.head_mode:
            s = ctx.pretrained_sentence("train")
            return FeatureValue(integrate_on_host(fit.params, s, have["hidden"], self.normalize))
        return FeatureValue(have["embedding"])


def _features(section) -> tuple[Embedding]:
    return (Embedding(section.sentence_rep, bool(section.normalize)),)


def _model(section) -> ModelNeeds:
    _choice(section, "triplet_grad", TRIPLET_GRADS)
    return ModelNeeds(
        embed_dim=int(section.embed_dim),
        normalize=bool(section.normalize),
        triplet_weight=float(section.train_triplet_weight),
        margin=float(section.margin),
        triplet_grad=str(section.triplet_grad),
    )


@register("batl", features=_features, model=_model, config_section="batl")
def select_batl(inp: SelectionInput, k: int) -> Selection:
    """BATL's acquisition (Algorithm 1): anchors are all of the unlabeled pool."""
    feats, u = inp.features, inp.unlabeled
    if feats is None:
        raise ValueError("BATL needs the integrated feature e(x) (declared in features=)")
    emb = feats["embedding"][u]
    cols = batl_scores(emb, feats.logits[u], inp.config, mesh=inp.mesh, seed=inp.seed)
    pos = select_rows(cols["final"], emb, k, inp.config, mesh=inp.mesh)
    scores = {name: col[pos] for name, col in cols.items()}
    scores["nearest_pick"] = nearest_pick(emb[pos])
    return Selection(indices=u[pos], scores=scores)
