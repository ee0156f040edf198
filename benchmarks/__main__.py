"""``python -m benchmarks SUITE [options]``: dispatch to ``benchmarks.SUITE.main``."""

from __future__ import annotations

import importlib
import sys

SUITES = {
    "mining": "BATL triplet mining, global vs minibatch, vs a dense matmul FLOP rate",
    "strategies": "selection time and peak memory of every strategy kernel",
    "encoder": "pool scoring with MiniLM, batl_jax (buckets) vs transformers' PyTorch (padded)",
    "round": "one active-learning round (train, score, ENTROPY, BADGE) vs small-text",
    "dtype": "bfloat16 vs float32 matmul and MiniLM forward, JAX per XLA flag set vs PyTorch",
    "attention": "whole-batch attention vs row chunks (batl_jax's CPU inference form)",
    "peers": "k-center and BADGE vs small-text and scikit-activeml on the same features",
    "all": "every suite above with the same --quick/--smoke, then every ratio",
}


def _usage() -> str:
    lines = ["usage: python -m benchmarks SUITE [options]", "", "suites:"]
    lines += [f"  {name:<12} {doc}" for name, doc in SUITES.items()]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0 if argv else 2
    suite = argv[0]
    if suite not in SUITES:
        print(f"unknown suite {suite!r}\n{_usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(f"benchmarks.{suite}")
    return int(module.main(argv[1:]) or 0)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
