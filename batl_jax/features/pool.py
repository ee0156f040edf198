"""One pass over the pool per round, plus the features the strategy declares.

:class:`PoolContext` is the run's implementation of the strategies' ``FeatureContext``:
the encoded data, the compiled steps and the feature cache, built once by
``batl_jax.setup``. :func:`static_features` computes the features of the pre-trained
model (once per run); :func:`pool_features` runs the round's model over the pool once
and adds every per-round feature, returning a :class:`PoolFeatures`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from batl_jax import run_files, train
from batl_jax.errors import StateError
from batl_jax.features.passes import FeaturePasses
from batl_jax.strategies.base import Feature, FeatureValue

log = logging.getLogger(__name__)

_BASE_KEYS = ("sentence", "hidden", "logits")


@dataclasses.dataclass(frozen=True)
class PoolFeatures:
    """Host (numpy, float32) features of every training row, row ``i`` = dataset row ``i``.

    Attributes:
      sentence: ``(N, d)`` sentence representation ``s(x)`` of the round's encoder.
      hidden: ``(N, d)`` classifier hidden state ``h_C(x) = tanh(W_1 s + b_1)``.
      logits: ``(N, C)`` classifier logits ``z(x)``.
      extra: the strategy's declared features by name (``features[name]``).
      deviations: notes of features that depart from their reference setting.
    """

    sentence: np.ndarray
    hidden: np.ndarray
    logits: np.ndarray
    extra: Mapping[str, np.ndarray] = dataclasses.field(default_factory=dict)
    deviations: tuple[dict, ...] = ()

    @property
    def num_rows(self) -> int:
        return int(self.logits.shape[0])

    def __getitem__(self, name: str) -> np.ndarray:
        if name not in self.extra:
            raise KeyError(
                f"pool feature {name!r} was not computed: the strategy must declare it "
                "(register(..., features=...))"
            )
        return self.extra[name]

    def __contains__(self, name: str) -> bool:
        return name in self.extra


@dataclasses.dataclass(frozen=True)
class PoolContext:
    """Everything a feature may use (the strategies' ``FeatureContext``), for one run.

    ``encoder_steps`` are the compiled steps of a model *with* the encoder (the
    pre-trained s(x) in head mode, where ``steps`` are the head's); ``model_key`` names
    the frozen model for the disk cache ("" disables it).
    """

    mesh: Any
    head_mode: bool
    tokenizer: Any
    factory: Any
    encoded: Mapping[str, Any]
    buckets: tuple[int, ...]
    passes: FeaturePasses
    steps: train.Steps
    encoder_steps: train.Steps
    model_key: str

    @property
    def batch_size(self) -> int:
        return self.passes.batch_size

    def pretrained_sentence(self, split: str) -> np.ndarray:
        """``s(x)`` of the untrained encoder for ``split`` (kept in memory and on disk)."""
        model = self.factory.classifier(0, with_encoder=True)
        _, params, rest = train.split_model(model)
        return self.passes.pretrained_sentence(split, self.encoder_steps, params, rest)

    def model_input(self, split: str) -> np.ndarray | None:
        """Head mode feeds the cached pre-trained s(x) instead of tokens; None otherwise."""
        return self.pretrained_sentence(split) if self.head_mode else None

    def forward(
        self, fit, keys, *, stochastic=False, sentence=None, rest=None, desc="score"
    ) -> dict[str, Any]:
        """The round model's ``keys`` outputs over the pool (see ``FeatureContext``)."""
        if sentence is None:
            sentence = self.model_input("train")
        return self.passes.run(
            self.steps,
            fit.params,
            fit.rest if rest is None else rest,
            "train",
            tuple(keys),
            stochastic=stochastic,
            sentence=sentence,
            desc=desc,
        )

    def cached(self, kind: str, key: str, compute: Callable[[], FeatureValue]) -> FeatureValue:
        """``compute()`` once per (model, ``key``, token ids): later runs load it from disk."""
        path = self.passes.cache_path("train", f"{self.model_key}|{key}", kind)
        if not self.model_key:
            path = None
        info_path = path.with_suffix(".json") if path is not None else None
        if path is not None and path.is_file() and info_path is not None and info_path.is_file():
            log.info("%s loaded from %s", kind, path)
            info = json.loads(info_path.read_text())
            return FeatureValue(np.load(path, allow_pickle=False), info or None)
        value = compute()
        if path is not None and info_path is not None:
            self.passes.save_cached(path, value.array)
            run_files.atomic_write_text(info_path, json.dumps(value.deviation or {}))
        return value


def _check_finite(name: str, array: np.ndarray) -> None:
    if np.issubdtype(array.dtype, np.floating) and not np.isfinite(array).all():
        bad = int((~np.isfinite(array)).any(axis=tuple(range(1, array.ndim))).sum())
        raise StateError(
            f"pool feature {name!r} holds non-finite values in {bad} rows: the model "
            "diverged; lower --config.train.lr or check the checkpoint"
        )


def static_features(ctx: PoolContext, features: tuple[Feature, ...]) -> dict[str, FeatureValue]:
    """The features of the pre-trained model and the data: computed once per run."""
    out = {}
    for f in features:
        if f.static:
            out[f.name] = f.compute(ctx, None, {})
            _check_finite(f.name, out[f.name].array)
    return out


def pool_features(
    ctx: PoolContext,
    fit,
    features: tuple[Feature, ...],
    static: Mapping[str, FeatureValue] | None = None,
) -> PoolFeatures:
    """One deterministic pass of the round's model over the pool, then every declared
    per-round feature (``static`` ones are computed here unless given)."""
    keys = list(_BASE_KEYS)
    for f in features:
        keys += [k for k in f.pass_keys if k not in keys]
    out = ctx.forward(fit, tuple(keys), desc="score pool")
    have = {k: out[k] for k in keys}
    have["_rest"] = out["_rest"]
    static = dict(static or {})
    values: dict[str, FeatureValue] = {}
    for f in features:
        if f.static:
            values[f.name] = static[f.name] if f.name in static else f.compute(ctx, None, {})
        else:
            values[f.name] = f.compute(ctx, fit, have)
    for name in _BASE_KEYS:
        _check_finite(name, have[name])
    for name, v in values.items():
        _check_finite(name, v.array)
    return PoolFeatures(
        sentence=have["sentence"],
        hidden=have["hidden"],
        logits=have["logits"],
        extra={name: v.array for name, v in values.items()},
        deviations=tuple(v.deviation for v in values.values() if v.deviation),
    )
