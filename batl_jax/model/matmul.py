"""The encoder's matmul in a low-precision compute dtype: bfloat16 operands, float32 result.

XLA:CPU runs a bfloat16 dot on the CPU's bfloat16 units (AVX512-BF16, AMX) only when
the dot returns float32 (``preferred_element_type``); asked for a bfloat16 result, it
converts both operands to float32 first and multiplies at the float32 rate
(``python -m benchmarks dtype`` shows both forms; docs/benchmarks.md has the figures).
Autodiff's own transpose of such a dot multiplies the float32 cotangent with a
bfloat16 operand, which XLA again upcasts: :func:`matmul` therefore has its own
backward pass, which rounds the cotangent to the compute dtype first, so training's
backward matmuls run on the same units. This is the usual mixed-precision recipe
(bfloat16 operands, float32 accumulation) and applies to ``model.dtype = bfloat16``
only: float32 layers keep ``lax.dot_general`` and its autodiff, unchanged.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def _forward(x: jax.Array, w: jax.Array) -> jax.Array:
    return jax.lax.dot_general(
        x, w, (((x.ndim - 1,), (0,)), ((), ())), preferred_element_type=jnp.float32
    )


@jax.custom_vjp
def matmul(x: jax.Array, w: jax.Array) -> jax.Array:
    """``x @ w`` for ``x (..., n)`` and ``w (n, m)`` in the compute dtype; float32 result."""
    return _forward(x, w)


def _matmul_fwd(x, w):
    return _forward(x, w), (x, w)


def _matmul_bwd(res, g):
    x, w = res
    g = g.astype(x.dtype)  # the cotangent in the compute dtype: both dots stay bfloat16
    dx = jax.lax.dot_general(
        g, w, (((g.ndim - 1,), (1,)), ((), ())), preferred_element_type=jnp.float32
    )
    x2, g2 = x.reshape(-1, x.shape[-1]), g.reshape(-1, g.shape[-1])
    dw = jax.lax.dot_general(x2, g2, (((0,), (0,)), ((), ())), preferred_element_type=jnp.float32)
    return dx.astype(x.dtype), dw.astype(w.dtype)


matmul.defvjp(_matmul_fwd, _matmul_bwd)


def dot_general(
    lhs, rhs, dimension_numbers, precision=None, preferred_element_type=None, out_sharding=None
):
    """``nnx.Linear``'s ``dot_general`` for a low-precision compute dtype: :func:`matmul`.

    Accepts exactly the call ``nnx.Linear`` makes (contract ``lhs``'s last axis with the
    kernel's first, no batch axes, no output sharding); the result is float32 whatever
    ``preferred_element_type`` says.
    """
    if dimension_numbers != (((lhs.ndim - 1,), (0,)), ((), ())) or out_sharding is not None:
        raise ValueError(
            f"matmul.dot_general takes nnx.Linear's contraction only, got "
            f"{dimension_numbers} with out_sharding={out_sharding}"
        )
    return matmul(lhs, rhs)
