"""batl_jax: active learning for pre-trained language models in JAX/Flax NNX.

Implements BATL (Batch Acquisition with Triplet Loss, AAAI 2022) and its eight
baselines over a Flax NNX BERT that loads Hugging Face checkpoints.
"""

__version__ = "0.1.0"


def __getattr__(name: str):
    # ``batl_jax.select`` without importing JAX on ``import batl_jax``.
    if name == "select":
        from batl_jax.api import select

        return select
    raise AttributeError(f"module 'batl_jax' has no attribute {name!r}")
