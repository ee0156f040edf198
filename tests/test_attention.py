"""Attention in row chunks (batl_jax.model.attention): the values of a NumPy reference,
the whole batch's values bit for bit, on one device and on eight."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from batl_jax.model import attention
from batl_jax.model.bert import BertConfig, BertEncoder

NEG = np.finfo(np.float32).min


def _inputs(b, lq, lk, seed=0, n=3, d=8, dtype=jnp.float32):
    rng = np.random.default_rng(seed)
    q, k, v = (rng.normal(size=(b, ln, n, d)).astype(np.float32) for ln in (lq, lk, lk))
    lengths = rng.integers(1, lk + 1, size=b)
    bias = np.where(np.arange(lk)[None, :] < lengths[:, None], 0.0, NEG).astype(np.float32)
    bias = bias[:, None, None, :]
    return tuple(jnp.asarray(a, dtype) for a in (q, k, v)) + (jnp.asarray(bias),)


def _reference(q, k, v, bias):
    q, k, v = (np.asarray(a, np.float64) for a in (q, k, v))
    s = np.einsum("bqnd,bknd->bnqk", q, k) / np.sqrt(q.shape[-1]) + np.asarray(bias, np.float64)
    p = np.exp(s - s.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    return np.einsum("bnqk,bknd->bqnd", p, v)


def _chunked(rows, dtype=jnp.float32):
    return jax.jit(lambda q, k, v, bias: attention.attention(q, k, v, bias, dtype=dtype, rows=rows))


def _whole(dtype=jnp.float32):
    return jax.jit(lambda q, k, v, bias: attention.attend(q, k, v, bias, dtype=dtype))


@pytest.mark.parametrize(
    "batch,rows,want",
    [
        (64, 4, 4),
        (32, 4, 4),
        (12, 4, 4),
        (10, 4, 10),
        (18, 4, 18),
        (8, 4, 8),
        (3, 4, 3),
        (64, 0, 64),
    ],
)
def test_chunk_rows(batch, rows, want):
    assert attention.chunk_rows(batch, rows) == want


def test_default_rows_chunk_on_cpu_only():
    assert jax.default_backend() == "cpu" and attention.default_rows() == attention.CPU_ROWS


@pytest.mark.parametrize("b,lq,lk", [(13, 33, 33), (12, 40, 40), (20, 1, 35)])
def test_matches_numpy_reference(b, lq, lk):
    args = _inputs(b, lq, lk, seed=b)
    np.testing.assert_allclose(_chunked(4)(*args), _reference(*args), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("b,length", [(12, 32), (20, 40), (64, 48), (36, 33)])
def test_chunks_give_the_whole_batch_bit_for_bit(b, length):
    args = _inputs(b, length, length, seed=length)
    chunked = _chunked(4)
    # The chunked form is really chunked (a loop over chunks), not the whole batch again.
    assert "scan" in str(jax.make_jaxpr(chunked)(*args))
    np.testing.assert_array_equal(chunked(*args), _whole()(*args))


@pytest.mark.parametrize(
    "dtype,b,lq,lk",
    [(jnp.bfloat16, 64, 48, 48), (jnp.float32, 64, 24, 24), (jnp.float32, 64, 1, 48)],
)
def test_bfloat16_short_batches_and_one_query_take_the_whole_batch(dtype, b, lq, lk):
    args = _inputs(b, lq, lk, dtype=dtype)
    assert "scan" not in str(jax.make_jaxpr(_chunked(4, dtype))(*args))


def test_sharded_over_eight_devices_gives_the_one_device_values(mesh8):
    args = _inputs(24, 32, 32, seed=3)  # 3 rows per device, chunks of 4 rows
    spec = NamedSharding(mesh8, P("data"))
    sharded = jax.jit(
        lambda q, k, v, bias: attention.attention(q, k, v, bias, dtype=jnp.float32, rows=4),
        in_shardings=spec,
        out_shardings=spec,
    )(*(jax.device_put(a, spec) for a in args))
    assert len(sharded.sharding.device_set) == 8
    np.testing.assert_allclose(sharded, _reference(*args), rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(sharded, _chunked(4)(*(np.asarray(a) for a in args)))


def _encoder(rows):
    cfg = BertConfig(
        vocab_size=60, hidden_size=24, num_hidden_layers=2, num_attention_heads=3,
        intermediate_size=48, max_position_embeddings=64,
    )  # fmt: skip
    return BertEncoder(cfg, rngs=nnx.Rngs(0), attention_rows=rows)


def test_encoder_chunks_inference_only():
    """Inference takes the chunks (the same values as the whole batch, bit for bit);
    training, with dropout, takes the whole batch as before."""
    rng = np.random.default_rng(0)
    ids = jnp.asarray(rng.integers(1, 60, (16, 40)))
    mask = jnp.asarray(np.arange(40)[None, :] < rng.integers(3, 41, (16, 1)), jnp.int32)
    chunked, whole = _encoder(None), _encoder(0)
    assert chunked.layers[0].attention.attention_rows == attention.CPU_ROWS

    def jaxpr(enc, deterministic):
        graphdef, state = nnx.split(enc)  # dropout's RNG counter is state, not a constant

        def run(state, i, m):
            return nnx.merge(graphdef, state)(i, m, deterministic=deterministic)

        return str(jax.make_jaxpr(run)(state, ids, mask))

    assert "scan" in jaxpr(chunked, True) and "scan" not in jaxpr(whole, True)
    assert "scan" not in jaxpr(chunked, False)
    np.testing.assert_array_equal(
        nnx.jit(lambda e: e(ids, mask))(chunked), nnx.jit(lambda e: e(ids, mask))(whole)
    )
