"""How close to the hardware: the encoder's FLOPs and the machine's dense-matmul rate.

An encoder figure in sentences/s says nothing about how much of the CPU it used. Here
the work is counted from the model's shape (a BERT layer's matmuls over a batch of
padded length ``L``: ``8·L·h² + 4·L·h·i`` for the projections and the feed-forward
block, ``4·L²·h`` for the attention scores and their weighted sum, all as 2 FLOPs per
multiply-add; embeddings, LayerNorm, softmax and the classifier head are not counted),
once over the padded batches (what the hardware computed) and once over the real,
unpadded lengths (what the task needed). Each side is counted for what it computes:
batl_jax's [CLS]-pooled encoder computes its last layer for position 0 alone
(``EncoderShape.first_only_last``: keys and values over every token, the rest for one),
the PyTorch models every position. Training counts 3× the forward (the backward
pass is about twice the forward's matmuls). Both are divided by the time and compared
with the rate of a square dense matmul measured in the same process, in float32 and
bfloat16, with JAX and with PyTorch: the share of the machine's best matmul rate the
encoder reached. ``docs/benchmarks.md`` ("How close to the limit") reads these shares.
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np

# The square matmul whose rate is the reference (large enough to be compute bound).
MATMUL_SIZE = 2048
SMOKE_MATMUL_SIZE = 256


@dataclasses.dataclass(frozen=True)
class EncoderShape:
    """The dimensions that set a BERT encoder's matmul work."""

    layers: int
    hidden: int
    intermediate: int
    first_only_last: bool = False  # the last layer computes position 0 only

    @classmethod
    def of(cls, config, first_only_last: bool = False) -> EncoderShape:
        """From a transformers ``BertConfig`` or batl_jax's encoder config."""
        return cls(
            int(config.num_hidden_layers),
            int(config.hidden_size),
            int(config.intermediate_size),
            first_only_last,
        )

    def _per_row(self, n):
        """Forward FLOPs of one sequence of ``n`` tokens (``n`` may be an array)."""
        h, i = self.hidden, self.intermediate
        full = 8.0 * n * h * h + 4.0 * n * h * i + 4.0 * n * n * h
        if not self.first_only_last:
            return self.layers * full
        # keys and values of n tokens; query, output and feed-forward of one; 1 x n scores
        last = 4.0 * n * h * h + 4.0 * h * h + 4.0 * h * i + 4.0 * n * h
        return (self.layers - 1) * full + last

    def forward_flops(self, rows: int, length: int) -> float:
        """Forward FLOPs of ``rows`` sequences of ``length`` tokens each."""
        return float(rows) * float(self._per_row(float(length)))

    def forward_flops_batches(self, shapes) -> float:
        """Forward FLOPs of padded batches, ``shapes`` = ``(rows, length)`` pairs."""
        return sum(self.forward_flops(r, n) for r, n in shapes)

    def forward_flops_real(self, lengths) -> float:
        """Forward FLOPs of every sequence at its own (unpadded) length."""
        return float(self._per_row(np.asarray(lengths, np.float64)).sum())


TRAIN_FACTOR = 3.0  # forward + backward ~ 3x the forward's matmuls


def _jax_rate(size: int, dtype: str, reps: int, out: str = "float32") -> float:
    """A ``size``² matmul's GFLOP/s with ``dtype`` operands and an ``out`` result.

    bfloat16 operands with a float32 result is the form batl_jax's encoder uses
    (``preferred_element_type``): XLA:CPU runs it on the CPU's bfloat16 units, where a
    bfloat16 result makes it convert both operands to float32 first.
    """
    import jax
    import jax.numpy as jnp

    dt = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
    a = jax.random.normal(jax.random.key(0), (size, size), jnp.float32).astype(dt[dtype])
    b = jax.random.normal(jax.random.key(1), (size, size), jnp.float32).astype(dt[dtype])
    f = jax.jit(lambda x, y: jnp.matmul(x, y, preferred_element_type=dt[out]))
    f(a, b).block_until_ready()
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        f(a, b).block_until_ready()
        times.append(time.perf_counter() - t)
    return 2.0 * size**3 / float(np.median(times)) / 1e9


def _torch_rate(torch, size: int, dtype: str, reps: int) -> float:
    dt = {"float32": torch.float32, "bfloat16": torch.bfloat16}[dtype]
    g = torch.Generator().manual_seed(0)
    a = torch.randn(size, size, generator=g).to(dt)
    b = torch.randn(size, size, generator=g).to(dt)
    with torch.inference_mode():
        a @ b
        times = []
        for _ in range(reps):
            t = time.perf_counter()
            a @ b
            times.append(time.perf_counter() - t)
    return 2.0 * size**3 / float(np.median(times)) / 1e9


def matmul_rates(size: int = MATMUL_SIZE, reps: int = 5, torch=None) -> dict[str, float]:
    """GFLOP/s (median of ``reps``) of a ``size``² matmul: JAX's default precision on
    this backend, and PyTorch's when ``torch`` (the module) is given; float32 and bfloat16
    (JAX's bfloat16: float32 result, the form batl_jax's encoder uses)."""
    rates = {f"jax {dt}": _jax_rate(size, dt, reps) for dt in ("float32", "bfloat16")}
    if torch is not None:
        for dt in ("float32", "bfloat16"):
            rates[f"torch {dt}"] = _torch_rate(torch, size, dt, reps)
    return rates


def shares(gflops: float, rates: dict[str, float]) -> dict[str, float]:
    """``gflops`` as a share of each reference rate."""
    return {name: gflops / rate for name, rate in rates.items() if rate > 0}


def utilisation(flops: float, seconds: float, rates: dict[str, float]) -> dict:
    """Achieved GFLOP/s of ``flops`` in ``seconds`` and its share of each matmul rate."""
    g = flops / seconds / 1e9 if seconds > 0 else float("nan")
    return {"flops": flops, "gflops": g, "share": shares(g, rates)}


def print_rates(rates: dict[str, float], size: int) -> None:
    print(
        f"dense matmul {size}x{size}x{size}: "
        + ", ".join(f"{k} {v:.0f} GFLOP/s" for k, v in rates.items())
    )


def utilisation_lines(label: str, figures: dict[str, dict]) -> list[str]:
    """One line per FLOP count (``padded``, ``real``) of ``label``: its rate and shares."""
    lines = []
    for kind, u in figures.items():
        parts = ", ".join(f"{100 * s:.0f}% of {name}" for name, s in u["share"].items())
        lines.append(f"{label} ({kind} tokens): {u['gflops']:.1f} GFLOP/s = {parts}")
    return lines
