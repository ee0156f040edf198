"""Benchmarks of batl_jax: ``python -m benchmarks {encoder,round,peers,mining,strategies,all}``.

Run from the repository root; they sit beside the package, not in it, and call only
its public names. Every figure is measured in one process run, side by side with its
reference, after warm-up, as the median of repeated runs (``docs/benchmarks.md``).
"""
