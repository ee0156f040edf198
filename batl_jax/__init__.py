"""batl_jax: active learning for pre-trained language models in JAX/Flax NNX.

Implements BATL (Batch Acquisition with Triplet Loss, AAAI 2022) and its eight
baselines over a Flax NNX BERT that loads Hugging Face checkpoints.
"""

__version__ = "0.1.0"
