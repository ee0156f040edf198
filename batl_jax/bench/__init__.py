"""Benchmarks: ``python -m batl_jax.bench {mining,strategies,...}``.

Every figure is measured in one process run, side by side with its reference,
after warm-up, as the median of repeated runs.
"""
