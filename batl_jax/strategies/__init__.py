"""Acquisition strategies. Importing this package registers every strategy."""

from batl_jax.strategies import alps, batl, bayesian, dal, diversity, uncertainty  # noqa: F401
from batl_jax.strategies.base import (  # noqa: F401
    PoolFeatures,
    Selection,
    SelectionInput,
    StrategySpec,
    get,
    names,
    register,
)
