"""Strategies that need no kernel beyond a top-k: RAND, CONF (least confidence), ENTROPY."""

from __future__ import annotations

import numpy as np

from batl_jax.strategies.base import Selection, SelectionInput, register, top_k_desc


def _probs(logits: np.ndarray) -> np.ndarray:
    z = logits.astype(np.float64)
    z = z - z.max(axis=1, keepdims=True)
    p = np.exp(z)
    return p / p.sum(axis=1, keepdims=True)


@register("rand", needs_trained_model=False)
def select_random(inp: SelectionInput, k: int) -> Selection:
    """Uniformly random, without replacement, seeded by the round's seed."""
    rng = np.random.default_rng(inp.seed)
    chosen = rng.choice(inp.unlabeled, size=k, replace=False)
    return Selection(indices=np.asarray(chosen, dtype=np.int64))


@register("conf")
def select_least_confident(inp: SelectionInput, k: int) -> Selection:
    """Largest ``1 - max_c p(x)_c``."""
    p = _probs(inp.pool.logits[inp.unlabeled])
    score = 1.0 - p.max(axis=1)
    pos = top_k_desc(score, k)
    return Selection(indices=inp.unlabeled[pos], scores={"least_confidence": score[pos]})


@register("entropy")
def select_entropy(inp: SelectionInput, k: int) -> Selection:
    """Largest predictive entropy ``-sum_c p log p``."""
    p = _probs(inp.pool.logits[inp.unlabeled])
    score = -(p * np.log(np.clip(p, 1e-30, None))).sum(axis=1)
    pos = top_k_desc(score, k)
    return Selection(indices=inp.unlabeled[pos], scores={"entropy": score[pos]})
