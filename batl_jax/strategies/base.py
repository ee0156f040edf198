"""The contract between the active-learning loop and every acquisition strategy.

One forward pass per round produces a :class:`PoolFeatures` over *all* rows of
the training split (labeled and unlabeled alike, in dataset order). A strategy
receives it in a :class:`SelectionInput`, picks ``k`` rows of
``SelectionInput.unlabeled`` and returns them in a :class:`Selection`.
Strategies never touch the model; kernels never touch config.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import numpy as np
from jax.sharding import Mesh


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row softmax of ``(N, C)`` logits, computed in float64 and returned as float32."""
    z = logits.astype(np.float64)
    z = z - z.max(axis=1, keepdims=True)
    p = np.exp(z)
    return (p / p.sum(axis=1, keepdims=True)).astype(np.float32)


class FeatureView(Protocol):
    """The pool features a strategy reads (made by :mod:`batl_jax.features`).

    Every array is indexed by dataset row. ``sentence`` ``(N, d)`` is ``s(x)`` of the
    round's encoder, ``hidden`` ``(N, d)`` is ``h_C(x)``, ``logits`` ``(N, C)`` is ``z(x)``;
    ``view[name]`` is the feature a strategy declared under ``name`` (see :class:`Feature`).
    """

    @property
    def sentence(self) -> np.ndarray: ...

    @property
    def hidden(self) -> np.ndarray: ...

    @property
    def logits(self) -> np.ndarray: ...

    @property
    def num_rows(self) -> int: ...

    def __getitem__(self, name: str) -> np.ndarray: ...


class FeatureContext(Protocol):
    """What a feature may use to compute itself; built once per run (``batl_jax.setup``).

    ``forward`` runs the round's model over the pool (the training split) in length
    buckets and returns the requested outputs by dataset row (``"_rest"``: the model's
    RNG state after the pass, for the next stochastic pass). ``pretrained_sentence``
    is ``s(x)`` of the untrained encoder for a split (cached across runs). ``cached``
    keeps a frozen-model feature on disk under ``kind``/``key`` plus the token ids.
    """

    # Read-only (properties), so a frozen dataclass satisfies the protocol.
    @property
    def mesh(self) -> Mesh: ...
    @property
    def head_mode(self) -> bool: ...
    @property
    def tokenizer(self) -> Any: ...
    @property
    def factory(self) -> Any: ...
    @property
    def encoded(self) -> Mapping[str, Any]: ...
    @property
    def buckets(self) -> tuple[int, ...]: ...
    @property
    def batch_size(self) -> int: ...

    def forward(
        self,
        fit: Any,
        keys: tuple[str, ...],
        *,
        stochastic: bool = False,
        sentence: np.ndarray | None = None,
        rest: Any = None,
        desc: str = "score",
    ) -> dict[str, Any]: ...

    def pretrained_sentence(self, split: str) -> np.ndarray: ...

    def cached(self, kind: str, key: str, compute: Callable[[], FeatureValue]) -> FeatureValue: ...


@dataclasses.dataclass(frozen=True)
class FeatureValue:
    """A computed feature and, when it departs from the reference setting, a note saying how
    (written to the run's ``run_info.json``)."""

    array: np.ndarray
    deviation: dict | None = None


class Feature(Protocol):
    """A pool feature a strategy declares; it knows how to compute itself.

    Attributes:
      name: the key strategies read it under (``features[name]``).
      static: True when it depends on the pre-trained model and the data only (computed
        once per run, before round 0); False for a feature of the round's model.
      pass_keys: outputs of the round's one deterministic pool pass it reads (``have``).
    """

    @property
    def name(self) -> str: ...
    @property
    def static(self) -> bool: ...
    @property
    def pass_keys(self) -> tuple[str, ...]: ...

    def compute(
        self, ctx: FeatureContext, fit: Any, have: Mapping[str, np.ndarray]
    ) -> FeatureValue: ...


@dataclasses.dataclass(frozen=True)
class ModelNeeds:
    """What a strategy asks of the round's model and its training.

    Attributes:
      embed_dim: width of BATL's integration layer e(x) (0 = none).
      normalize: L2-normalise e(x).
      triplet_weight: weight of the training-time triplet loss on e(x).
      margin: that loss's margin.
      mlm_head: load the checkpoint's MLM head (ALPS).
      mlm_head_optional: a checkpoint without one is accepted (the feature fits one).
      triplet_grad: ``all`` or ``embedding_only`` (the triplet loss stops before [s; h_C]).
    """

    embed_dim: int = 0
    normalize: bool = True
    triplet_weight: float = 0.0
    margin: float = 0.2
    mlm_head: bool = False
    mlm_head_optional: bool = False
    triplet_grad: str = "all"


@dataclasses.dataclass(frozen=True)
class SelectionInput:
    """Everything a strategy may use to choose a batch.

    Attributes:
      features: features of every training row (see :class:`FeatureView`).
      unlabeled: sorted int64 row ids of the unlabeled pool ``U``.
      labeled: sorted int64 row ids of the labeled set ``L``.
      labels: ``(N,)`` int labels; only entries at ``labeled`` are meaningful.
      seed: the round's seed (derived from the run seed and the round number).
      mesh: the device mesh kernels shard over.
      config: the strategy's own config section (e.g. ``config.batl``), may be None.
    """

    features: FeatureView | None
    unlabeled: np.ndarray
    labeled: np.ndarray
    labels: np.ndarray
    seed: int
    mesh: Mesh
    config: Any = None

    @property
    def pool(self) -> FeatureView:
        """``features`` for a strategy that reads them (all but ``random``)."""
        if self.features is None:
            raise ValueError("this strategy reads pool features, but the round computed none")
        return self.features


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


def _no_features(section: Any) -> tuple[Feature, ...]:
    return ()


def _no_model_needs(section: Any) -> ModelNeeds:
    return ModelNeeds()


@dataclasses.dataclass(frozen=True)
class StrategySpec:
    """A registered strategy and what it needs.

    Attributes:
      name: the registry name (``--config.al.strategy=NAME``).
      select: ``fn(SelectionInput, k) -> Selection``.
      needs_trained_model: refuse ``al.initial_size = 0`` (cold start) when True.
      features: ``fn(section) -> (Feature, ...)``: the pool features beyond ``s``, ``h_C``
        and logits that the strategy reads, built from its config section.
      model: ``fn(section) -> ModelNeeds``: what it asks of the model and its training.
      config_section: name of the config section handed over as ``SelectionInput.config``.
    """

    name: str
    select: Callable[[SelectionInput, int], Selection]
    needs_trained_model: bool = True
    features: Callable[[Any], tuple[Feature, ...]] = _no_features
    model: Callable[[Any], ModelNeeds] = _no_model_needs
    config_section: str | None = None


REGISTRY: dict[str, StrategySpec] = {}


def register(
    name: str,
    *,
    needs_trained_model: bool = True,
    features: Callable[[Any], tuple[Feature, ...]] = _no_features,
    model: Callable[[Any], ModelNeeds] = _no_model_needs,
    config_section: str | None = None,
):
    """Decorator registering ``fn(SelectionInput, k) -> Selection`` under ``name``."""

    def wrap(fn):
        if name in REGISTRY:
            raise ValueError(f"strategy {name!r} registered twice")
        REGISTRY[name] = StrategySpec(
            name=name,
            select=fn,
            needs_trained_model=needs_trained_model,
            features=features,
            model=model,
            config_section=config_section,
        )
        return fn

    return wrap


def top_k_desc(scores: np.ndarray, k: int) -> np.ndarray:
    """Positions of the ``k`` largest scores, ties broken by lower position (stable)."""
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    return order[:k]
