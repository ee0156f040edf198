"""BATL: select the k samples with the largest ``L_final = L_target + λ · L_triplet``.

``L_target(x) = -log p(x)_ŷ`` with the predicted label ŷ; ``L_triplet`` is the
batch-hard (hardest positive, semi-hard negative) triplet term of each unlabeled
anchor on the integrated features ``e(x)``, mined with predicted labels within
shuffled chunks of the pool (``batl.mining = minibatch``, the paper's) or over the
whole pool (``global``, exact). See the paper's Eq. 5 and Algorithm 1, and README,
"Method decisions" (triplet mining, triplet term at selection, s(x) in BATL scoring).
"""

from __future__ import annotations

import dataclasses

import jax
import numpy as np
from flax import nnx

from batl_jax.errors import ConfigError
from batl_jax.kernels import triplet
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


def batl_scores(embedding, logits, cfg, *, mesh, seed: int) -> dict[str, np.ndarray]:
    """Every BATL score column for the given pool rows (features already restricted to U)."""
    pred = np.asarray(logits).argmax(axis=1)
    if cfg.mining == "global":
        d_p, d_n = triplet.mine_global(embedding, pred, mesh=mesh, margin=cfg.margin)
    elif cfg.mining == "minibatch":
        if cfg.mining_batch < 2:
            raise ConfigError(f"batl.mining_batch={cfg.mining_batch}: need at least 2")
        d_p, d_n = triplet.mine_minibatch(
            embedding, pred, mesh=mesh, chunk_size=cfg.mining_batch, seed=seed, margin=cfg.margin
        )
    else:
        raise ConfigError(f"batl.mining={cfg.mining!r}: use 'minibatch' or 'global'")
    trip = triplet.triplet_scores(d_p, d_n, cfg.margin, cfg.hinge).astype(np.float64)
    target = target_loss(logits)
    return {
        "final": target + cfg.lambda_ * trip,
        "target": target,
        "triplet": trip,
        "d_p": d_p,
        "d_n": d_n,
    }


def integrate_on_host(params, sentence: np.ndarray, hidden: np.ndarray, normalize: bool):
    """e(x) of the trained integration layer applied to ``[sentence; h_C]`` on the host."""
    layer = jax.device_get(nnx.State(params).to_pure_dict())["integrate"]
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
    return ModelNeeds(
        embed_dim=int(section.embed_dim),
        normalize=bool(section.normalize),
        triplet_weight=float(section.train_triplet_weight),
        margin=float(section.margin),
    )


@register("batl", features=_features, model=_model, config_section="batl")
def select_batl(inp: SelectionInput, k: int) -> Selection:
    """BATL's acquisition (Algorithm 1): anchors are all of the unlabeled pool."""
    feats, u = inp.features, inp.unlabeled
    if feats is None:
        raise ValueError("BATL needs the integrated feature e(x) (declared in features=)")
    cols = batl_scores(
        feats["embedding"][u], feats.logits[u], inp.config, mesh=inp.mesh, seed=inp.seed
    )
    # U is sorted, so "lower pool position" is "lower dataset row" for ties.
    pos = triplet.top_k(cols["final"], k, mesh=inp.mesh)
    return Selection(indices=u[pos], scores={name: col[pos] for name, col in cols.items()})
