"""CORESET (greedy k-center) and BADGE (k-means++ on gradient embeddings).

Both call device kernels that never form an N×N distance matrix, and BADGE never
forms its N×(C·d) gradient embedding (README, "Method decisions": CORESET, BADGE).
"""

from __future__ import annotations

import jax
import numpy as np

from batl_jax.errors import ConfigError
from batl_jax.kernels.kcenter import kcenter_greedy
from batl_jax.kernels.kmeans import badge_kmeans_pp
from batl_jax.strategies.base import Selection, SelectionInput, register, softmax


def _mask(n: int, rows: np.ndarray) -> np.ndarray:
    m = np.zeros(n, dtype=bool)
    m[rows] = True
    return m


@register("coreset", config_section="coreset")
def select_coreset(inp: SelectionInput, k: int) -> Selection:
    """Greedy k-center on s(x) (``coreset.features = sentence``) or [s; h_C] (``concat``):
    each pick is the unlabeled row farthest from the labeled set and earlier picks."""
    feats = inp.pool
    n = feats.num_rows
    which = inp.config.features if inp.config is not None else "sentence"
    if which == "sentence":
        x = feats.sentence
    elif which == "concat":
        x = np.concatenate([feats.sentence, feats.hidden], axis=1)
    else:
        raise ConfigError(f"coreset.features={which!r}: use 'sentence' or 'concat'")
    picks, dist = kcenter_greedy(
        x, _mask(n, inp.labeled), _mask(n, inp.unlabeled), k, mesh=inp.mesh
    )
    return Selection(indices=picks, scores={"min_distance": dist})


@register("badge")
def select_badge(inp: SelectionInput, k: int) -> Selection:
    """k-means++ seeding on ``g(x) = (p − onehot(ŷ)) ⊗ h_C(x)`` in factored form."""
    feats = inp.pool
    n = feats.num_rows
    probs = softmax(feats.logits)
    picks = badge_kmeans_pp(
        probs, feats.hidden, _mask(n, inp.unlabeled), k, key=jax.random.key(inp.seed), mesh=inp.mesh
    )
    # ‖g‖ = ‖p − e_ŷ‖ · ‖h‖: the gradient-embedding norm of each pick (its uncertainty).
    p = probs[picks].astype(np.float64)
    p[np.arange(len(picks)), p.argmax(1)] -= 1.0
    g_norm = np.linalg.norm(p, axis=1) * np.linalg.norm(feats.hidden[picks], axis=1)
    return Selection(indices=picks, scores={"grad_embedding_norm": g_norm})
