"""Pool features: forward passes in length buckets, the round's one pool pass and the
features strategies declare (see ``batl_jax.strategies.base.Feature``)."""

from batl_jax.features.passes import FeaturePasses, default_cache_dir
from batl_jax.features.pool import PoolContext, PoolFeatures, pool_features, static_features

__all__ = [
    "FeaturePasses",
    "PoolContext",
    "PoolFeatures",
    "default_cache_dir",
    "pool_features",
    "static_features",
]
