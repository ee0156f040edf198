"""Run a strategy on your own arrays: ``batl_jax.select(...)`` (README, "Python API").

No model, dataset or workdir: the strategies' kernels on the probabilities and
embeddings you already have. Rows are your pool; ``labeled`` marks the rows you have
labels for; the ``k`` picks come from the others.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from batl_jax import sharding, strategies
from batl_jax.config import get_base_config
from batl_jax.errors import ConfigError
from batl_jax.features import PoolFeatures

# What each strategy reads, as arguments of :func:`select`.
NEEDS = {
    "rand": (),
    "conf": ("probs",),
    "entropy": ("probs",),
    "coreset": ("embeddings",),
    "dal": ("embeddings",),
    "badge": ("probs", "embeddings"),
    "bald": ("mc_probs",),
    "batchbald": ("mc_probs",),
    "batl": ("probs", "embeddings"),
    "alps": ("embeddings",),
}


def _log(p: np.ndarray) -> np.ndarray:
    return np.log(np.clip(np.asarray(p, np.float64), 1e-30, None)).astype(np.float32)


def _features(n: int, probs, embeddings, mc_probs) -> PoolFeatures:
    emb = np.zeros((n, 1), np.float32) if embeddings is None else np.asarray(embeddings, np.float32)
    logits = np.zeros((n, 1), np.float32) if probs is None else _log(probs)
    extra = {"embedding": emb, "surprisal": emb}
    if mc_probs is not None:
        extra["mc_logits"] = _log(mc_probs)
    return PoolFeatures(sentence=emb, hidden=emb, logits=logits, extra=extra)


def _check(name: str, n: int, given: dict[str, Any]) -> None:
    missing = [a for a in NEEDS[name] if given[a] is None]
    if missing:
        raise ConfigError(f"strategy {name!r} needs {', '.join(missing)}: pass them to select()")
    for arg, value in given.items():
        if value is None:
            continue
        rows = np.shape(value)[1] if arg == "mc_probs" else np.shape(value)[0]
        if rows != n or not np.isfinite(value).all():
            shape = np.shape(value)
            raise ConfigError(
                f"{arg} must hold {n} rows of finite values (got shape {shape}); one per pool row"
            )


def select(
    strategy: str,
    k: int,
    *,
    probs=None,
    embeddings=None,
    mc_probs=None,
    labeled=None,
    num_rows: int | None = None,
    labels=None,
    seed: int = 0,
    mesh=None,
    **options,
) -> strategies.Selection:
    """Pick ``k`` rows of a pool with ``strategy``.

    Args:
      strategy: one of :data:`NEEDS` (``batl_jax.strategies.names()``).
      k: rows to pick.
      probs: ``(N, C)`` class probabilities (CONF, ENTROPY, BADGE, BATL).
      embeddings: ``(N, d)`` row embeddings: ``s(x)`` for CORESET and D-AL, ``h_C(x)`` for
        BADGE's gradient embedding, ``e(x)`` for BATL, surprisal vectors for ALPS.
      mc_probs: ``(K, N, C)`` probabilities of K MC-dropout passes (BALD, BatchBALD).
      labeled: ``(N,)`` bool mask of rows already labeled (default: none).
      num_rows: the pool size when no array gives it (RAND).
      labels: ``(N,)`` int labels of the labeled rows (-1 elsewhere); no strategy needs them.
      seed: seeds every random draw.
      mesh: a ``jax.sharding.Mesh`` (default: all local devices).
      **options: the strategy's config section fields, e.g. ``lambda_=0.5`` for BATL.

    Returns:
      A :class:`batl_jax.strategies.Selection`: ``indices`` (row ids) and ``scores``.
    """
    spec = strategies.get(strategy)
    given = {"probs": probs, "embeddings": embeddings, "mc_probs": mc_probs}
    sizes = [np.shape(v)[1 if a == "mc_probs" else 0] for a, v in given.items() if v is not None]
    n = num_rows if num_rows is not None else (sizes[0] if sizes else None)
    if n is None:
        raise ConfigError("select() needs num_rows or an array with one row per pool row")
    _check(spec.name, n, given)
    mask = np.zeros(n, bool) if labeled is None else np.asarray(labeled, bool)
    section = None
    if spec.config_section:
        section = get_base_config()[spec.config_section]
        for key, value in options.items():
            if key not in section:
                raise ConfigError(f"{key!r} is not a {spec.config_section}.* setting")
            section[key] = value
    inp = strategies.SelectionInput(
        features=_features(n, probs, embeddings, mc_probs),
        unlabeled=np.flatnonzero(~mask).astype(np.int64),
        labeled=np.flatnonzero(mask).astype(np.int64),
        labels=np.full(n, -1, np.int64) if labels is None else np.asarray(labels),
        seed=seed,
        mesh=mesh if mesh is not None else sharding.make_mesh(),
        config=section,
    )
    selection = spec.select(inp, min(k, len(inp.unlabeled)))
    selection.validate(inp.unlabeled, min(k, len(inp.unlabeled)))
    return selection
