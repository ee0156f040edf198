"""Scaled dot-product attention over a batch, computed a few rows at a time on CPU.

XLA:CPU compiles a batch's attention (two batched dots around the softmax) into one
YNNPACK fusion over the whole ``(B, heads, L, L)`` score tensor. At batch 64 that tensor
outgrows the cache and the fusion runs several times slower than the same arithmetic
over a few rows at a time (2 cores of an AMD EPYC, MiniLM's 12 heads of 32: 19.5 against
4.9 ms at 48 tokens, 103 against 26 ms at 128; ``docs/benchmarks.md``). So on CPU the
batch is cut into chunks of :data:`CPU_ROWS` rows and a ``lax.map`` runs them in turn.

A row's attention never reads another row, so chunks change how the work is scheduled,
not what is computed; whether the sums also round the same depends on the dot forms XLA
picks. For MiniLM, with chunks of 4 rows, they did, bit for bit: its forward at every
bucket shape of an AG News pass, float32 and bfloat16, both poolings, against the
previous commit's whole-batch code (so the committed studies' features are unchanged);
so do the shapes in ``tests/test_attention.py``. Other shapes may round a sum one ulp
differently (the 2-layer random BERT of the benchmarks' smoke runs: 2e-7), and so do a
chunk of one row and a single query position (the [CLS]-only last layer) even for
MiniLM: a batch is chunked only into 4-row chunks, only when 4 divides it, and never
for one query position. Either way the result is deterministic. Other backends (GPU,
TPU) take the whole batch: their fused attention kernels want it.

Only inference is chunked. A training step (batch 32, dropout on the probabilities) was
no faster chunked (521–523 ms against 496–533 whole at 48 tokens, 1,175–1,177 against
1,180–1,246 at 96), and its backward pass, chunked, rounds differently from the whole
batch's: training keeps the whole-batch attention, so its trajectories are those of
earlier commits, bit for bit.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

# Rows per chunk on CPU: 4 was the fastest of 2, 4, 8 and 16 at most lengths from 24 to
# 128 tokens in the measurement above (8 within 25 % of it).
CPU_ROWS = 4


def default_rows() -> int:
    """Rows per attention chunk for the default backend: :data:`CPU_ROWS` on CPU, else 0
    (the whole batch at once)."""
    return CPU_ROWS if jax.default_backend() == "cpu" else 0


def chunk_rows(batch: int, rows: int) -> int:
    """The rows per chunk for a batch of ``batch``: ``rows`` when it divides the batch into
    more than two chunks, else ``batch`` itself (no chunking; also when ``rows`` is 0)."""
    return rows if rows > 0 and batch > 2 * rows and batch % rows == 0 else batch


def attend(q, k, v, bias, *, dtype, dropout: Callable[[jax.Array], jax.Array] | None = None):
    """softmax(q·kᵀ / √d + bias) · v over the rows given, all at once (float32 result);
    ``dropout``, when given, is applied to the probabilities (in the compute dtype)."""
    f32 = jnp.float32
    # The softmax runs in float32 whatever the compute dtype: bfloat16 logits plus a
    # -3e38 mask lose the small differences the softmax depends on.
    scores = jnp.einsum("bqnd,bknd->bnqk", q, k, preferred_element_type=f32)
    scores = scores / jnp.sqrt(f32(q.shape[-1])) + bias
    probs = jax.nn.softmax(scores, axis=-1).astype(dtype)
    if dropout is not None:
        probs = dropout(probs)
    return jnp.einsum("bnqk,bknd->bqnd", probs, v, preferred_element_type=f32)


def attention(q: jax.Array, k: jax.Array, v: jax.Array, bias: jax.Array, *, dtype, rows: int):
    """Inference attention ``(B, Lq, N, D)`` (float32) of queries ``q`` ``(B, Lq, N, D)``
    over keys and values ``(B, Lk, N, D)`` in the compute ``dtype``, ``rows`` rows at a
    time (:func:`chunk_rows`; 0: the whole batch at once). ``bias`` ``(B, 1, 1, Lk)`` is
    added to the scaled scores (0 on real keys, the float32 minimum on padding).
    """
    b = q.shape[0]
    c = chunk_rows(b, rows) if q.shape[1] > 1 else b
    if c == b:
        return attend(q, k, v, bias, dtype=dtype)
    m = b // c

    # Chunk i takes rows i, i + m, i + 2m, ...: a batch sharded in contiguous blocks over
    # the devices then gives every device its share of each chunk.
    def split(t):
        return jnp.moveaxis(t.reshape(c, m, *t.shape[1:]), 1, 0)

    out = jax.lax.map(
        lambda xs: attend(*xs, dtype=dtype), (split(q), split(k), split(v), split(bias))
    )
    return jnp.moveaxis(out, 0, 1).reshape(b, *out.shape[2:])
