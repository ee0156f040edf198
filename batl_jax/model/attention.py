"""Scaled dot-product attention over a batch, in float32 a few rows at a time on CPU.

XLA:CPU compiles a batch's attention (two batched dots around the softmax) into one
YNNPACK fusion over the whole ``(B, heads, L, L)`` score tensor. In float32, at batch 64,
that fusion runs slower than the same arithmetic over a few rows at a time, the more so
the longer the batch: MiniLM's forward was 0.98–1.06× as fast chunked at 32 to 96
tokens and 1.5× at 128, and the whole 10k AG News pool pass 1.16× (38.2 against 44.5 s, one
process, interleaved; 2 cores of an AMD EPYC; ``python -m benchmarks attention`` and
``docs/benchmarks.md``). So on CPU a float32 batch of 32 tokens or more is cut into
chunks of :data:`CPU_ROWS` consecutive rows, and a ``lax.map`` runs them in turn.

bfloat16 is not chunked: its whole-batch forward was the faster at every length
(chunked: 0.79–0.95×). Nor are shorter batches (0.96–0.98× at 24 tokens), a batch that
4 does not divide into more than two chunks, or a single query position (the
[CLS]-only last layer): see below.

A row's attention never reads another row, so chunks change how the work is scheduled,
not what is computed; whether the sums also round the same depends on the dot forms XLA
picks. For MiniLM they did, bit for bit: its forward at every bucket shape of an AG News
pass, both poolings, against the previous commit's whole-batch code (so the committed
studies' features are unchanged), and so do the shapes in ``tests/test_attention.py``.
Other shapes may round a sum one ulp differently (the 2-layer random BERT of the
benchmarks' smoke runs: 2e-7), and so do a chunk of one row and, even for MiniLM, a
single query position. Either way the result is deterministic. Other backends (GPU,
TPU) take the whole batch: their fused attention kernels want it. On a mesh of several
CPU devices (the tests' 8 fake ones) the chunks are correct but not tuned.

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

# Rows per chunk on CPU. In the attention alone (float32, batch 64, 12 heads of 32), of
# 2, 4, 8 and 16 rows, 2 was the fastest at 24, 96 and 128 tokens and 4 at 48 (1.2-2.7x
# the whole batch where chunks paid); 4 takes half as many loop steps as 2.
CPU_ROWS = 4
# Shorter batches (a score tensor of B x heads x 24² floats or less) are not chunked.
MIN_LENGTH = 32


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


def chunked(q, k, v, bias, *, dtype, rows: int) -> jax.Array:
    """:func:`attend` ``rows`` consecutive rows at a time (:func:`chunk_rows`), whatever
    the dtype and length: the form :func:`attention` takes where it pays."""
    b = q.shape[0]
    c = chunk_rows(b, rows)
    if c == b:
        return attend(q, k, v, bias, dtype=dtype)
    m = b // c

    def split(t):  # consecutive rows: a reshape, no copy
        return t.reshape(m, c, *t.shape[1:])

    out = jax.lax.map(
        lambda xs: attend(*xs, dtype=dtype), (split(q), split(k), split(v), split(bias))
    )
    return out.reshape(b, *out.shape[2:])


def pays(dtype, query_len: int, key_len: int) -> bool:
    """Whether inference chunks a batch: float32, more than one query, and at least
    :data:`MIN_LENGTH` keys (see the module docstring for the measurements)."""
    return jnp.dtype(dtype) == jnp.float32 and query_len > 1 and key_len >= MIN_LENGTH


def attention(q: jax.Array, k: jax.Array, v: jax.Array, bias: jax.Array, *, dtype, rows: int):
    """Inference attention ``(B, Lq, N, D)`` (float32) of queries ``q`` ``(B, Lq, N, D)``
    over keys and values ``(B, Lk, N, D)`` in the compute ``dtype``: :func:`chunked`
    where :func:`pays`, else the whole batch at once (as :func:`chunked` itself does when
    ``rows`` is 0). ``bias`` ``(B, 1, 1, Lk)`` is added to the scaled scores (0 on real
    keys, the float32 minimum on padding).
    """
    if pays(dtype, q.shape[1], k.shape[1]):
        return chunked(q, k, v, bias, dtype=dtype, rows=rows)
    return attend(q, k, v, bias, dtype=dtype)
