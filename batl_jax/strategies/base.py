"""The contract between the active-learning loop and every acquisition strategy.

One forward pass per round produces a :class:`PoolFeatures` over *all* rows of
the training split (labeled and unlabeled alike, in dataset order). A strategy
receives it in a :class:`SelectionInput`, picks ``k`` rows of
``SelectionInput.unlabeled`` and returns them in a :class:`Selection`.
Strategies never touch the model; kernels never touch config.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np
from jax.sharding import Mesh

from batl_jax.errors import ConfigError


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row softmax of ``(N, C)`` logits, computed in float64 and returned as float32."""
    z = logits.astype(np.float64)
    z = z - z.max(axis=1, keepdims=True)
    p = np.exp(z)
    return (p / p.sum(axis=1, keepdims=True)).astype(np.float32)


@dataclasses.dataclass(frozen=True)
class PoolFeatures:
    """Host (numpy, float32) features of every training row, row ``i`` = dataset row ``i``.

    Attributes:
      sentence: ``(N, d)`` sentence representation ``s(x)`` of the current encoder.
      hidden: ``(N, d)`` classifier hidden state ``h_C(x) = tanh(W_1 s + b_1)``.
      logits: ``(N, C)`` classifier logits ``z(x)``.
      embedding: ``(N, e)`` BATL integrated feature ``e(x)`` (None unless requested).
      mc_logits: ``(K, N, C)`` logits of ``K`` MC-dropout passes (BatchBALD/BALD only).
      surprisal: ``(N, max_len)`` ALPS MLM surprisal vectors (ALPS only).
      pretrained_sentence: ``(N, d)`` ``s(x)`` of the original pre-trained encoder
        (BATL with ``sentence_rep = pretrained``).
    """

    sentence: np.ndarray
    hidden: np.ndarray
    logits: np.ndarray
    embedding: np.ndarray | None = None
    mc_logits: np.ndarray | None = None
    surprisal: np.ndarray | None = None
    pretrained_sentence: np.ndarray | None = None

    @property
    def num_rows(self) -> int:
        return int(self.logits.shape[0])


@dataclasses.dataclass(frozen=True)
class SelectionInput:
    """Everything a strategy may use to choose a batch.

    Attributes:
      features: features of every training row (see :class:`PoolFeatures`).
      unlabeled: sorted int64 row ids of the unlabeled pool ``U``.
      labeled: sorted int64 row ids of the labeled set ``L``.
      labels: ``(N,)`` int labels; only entries at ``labeled`` are meaningful.
      seed: the round's seed (derived from the run seed and the round number).
      mesh: the device mesh kernels shard over.
      config: the strategy's own config section (e.g. ``config.batl``), may be None.
    """

    features: PoolFeatures | None
    unlabeled: np.ndarray
    labeled: np.ndarray
    labels: np.ndarray
    seed: int
    mesh: Mesh
    config: Any = None


@dataclasses.dataclass(frozen=True)
class Selection:
    """A chosen batch: dataset row ids (unique, all in ``U``) and per-row score columns."""

    indices: np.ndarray
    scores: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)

    def validate(self, unlabeled: np.ndarray, k: int) -> None:
        idx = np.asarray(self.indices)
        if idx.shape != (k,):
            raise AssertionError(f"strategy returned {idx.shape[0]} indices, expected {k}")
        if len(np.unique(idx)) != k:
            raise AssertionError("strategy returned duplicate indices")
        if not np.isin(idx, unlabeled).all():
            raise AssertionError("strategy returned rows that are not in the unlabeled pool")
        for name, col in self.scores.items():
            if np.asarray(col).shape[0] != k:
                raise AssertionError(f"score column {name!r} has the wrong length")


@dataclasses.dataclass(frozen=True)
class StrategySpec:
    """A registered strategy and what it needs from the feature pass.

    Attributes:
      name: the registry name (``--config.al.strategy=NAME``).
      select: ``fn(SelectionInput, k) -> Selection``.
      needs_trained_model: refuse ``al.initial_size = 0`` (cold start) when True.
      needs: extra feature kinds for the pool pass: any of ``"embedding"``,
        ``"mc_dropout"``, ``"surprisal"``, ``"pretrained_sentence"``.
      config_section: name of the config section handed over as ``SelectionInput.config``.
    """

    name: str
    select: Callable[[SelectionInput, int], Selection]
    needs_trained_model: bool = True
    needs: frozenset[str] = frozenset()
    config_section: str | None = None


_REGISTRY: dict[str, StrategySpec] = {}


def register(
    name: str,
    *,
    needs_trained_model: bool = True,
    needs: tuple[str, ...] = (),
    config_section: str | None = None,
):
    """Decorator registering ``fn(SelectionInput, k) -> Selection`` under ``name``."""

    def wrap(fn):
        if name in _REGISTRY:
            raise ValueError(f"strategy {name!r} registered twice")
        _REGISTRY[name] = StrategySpec(
            name=name,
            select=fn,
            needs_trained_model=needs_trained_model,
            needs=frozenset(needs),
            config_section=config_section,
        )
        return fn

    return wrap


def get(name: str) -> StrategySpec:
    """The strategy registered under ``name``; a clear error listing the choices otherwise."""
    from batl_jax import strategies  # noqa: F401  (importing the package registers all)

    if name not in _REGISTRY:
        raise ConfigError(
            f"unknown strategy {name!r}: set --config.al.strategy to one of "
            f"{', '.join(sorted(_REGISTRY))}"
        )
    return _REGISTRY[name]


def names() -> list[str]:
    from batl_jax import strategies  # noqa: F401

    return sorted(_REGISTRY)


def top_k_desc(scores: np.ndarray, k: int) -> np.ndarray:
    """Positions of the ``k`` largest scores, ties broken by lower position (stable)."""
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    return order[:k]
