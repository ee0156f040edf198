"""Acquisition strategies. Importing this package registers every strategy."""

from batl_jax.errors import ConfigError
from batl_jax.strategies import alps, batl, bayesian, dal, diversity, uncertainty
from batl_jax.strategies.base import (
    REGISTRY,
    Feature,
    FeatureContext,
    FeatureValue,
    FeatureView,
    ModelNeeds,
    Selection,
    SelectionInput,
    StrategySpec,
    register,
)

__all__ = [
    "Feature",
    "FeatureContext",
    "FeatureValue",
    "FeatureView",
    "ModelNeeds",
    "Selection",
    "SelectionInput",
    "StrategySpec",
    "alps",
    "batl",
    "bayesian",
    "dal",
    "diversity",
    "get",
    "names",
    "register",
    "uncertainty",
]


def get(name: str) -> StrategySpec:
    """The strategy registered under ``name``; a clear error listing the choices otherwise."""
    if name not in REGISTRY:
        raise ConfigError(
            f"unknown strategy {name!r}: set --config.al.strategy to one of {', '.join(names())}"
        )
    return REGISTRY[name]


def names() -> list[str]:
    """Every registered strategy name, sorted."""
    return sorted(REGISTRY)
