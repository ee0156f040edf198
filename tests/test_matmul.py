"""bfloat16 matmuls: float32 results, a backward pass in bfloat16, and what XLA compiles.

The NumPy references round the operands (and, backward, the cotangent) to bfloat16
and multiply in float64: the kernel may differ from them only by float32 accumulation
and the final rounding of its bfloat16 gradients.
"""

import re
from pathlib import Path

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest

from batl_jax import main as batl_main
from batl_jax.model import matmul
from batl_jax.model.bert import BertConfig, BertEncoder
from tests.run_helpers import DATA_DIR, tiny_config
from tests.tiny_bert import save_tiny_bert

BF16 = jnp.bfloat16


def _bf16(a) -> np.ndarray:
    """``a`` rounded to bfloat16, as float64."""
    return np.asarray(a, np.float32).astype(ml_dtypes.bfloat16).astype(np.float64)


def _inputs(seed=0, rows=(3, 5), n=7, m=4):
    rng = np.random.default_rng(seed)
    x = jnp.asarray(rng.normal(size=(*rows, n)), BF16)
    w = jnp.asarray(rng.normal(size=(n, m)), BF16)
    g = rng.normal(size=(*rows, m)).astype(np.float32)
    return x, w, g


def test_forward_is_the_bf16_product_with_a_float32_result():
    x, w, _ = _inputs()
    out = matmul.matmul(x, w)
    assert out.dtype == jnp.float32 and out.shape == (3, 5, 4)
    ref = _bf16(x) @ _bf16(w)
    np.testing.assert_allclose(np.asarray(out), ref, rtol=1e-6, atol=1e-6)


def test_backward_rounds_the_cotangent_and_returns_the_operand_dtypes():
    x, w, g = _inputs(seed=1)
    _, vjp = jax.vjp(matmul.matmul, x, w)
    dx, dw = vjp(jnp.asarray(g))
    assert dx.dtype == BF16 and dw.dtype == BF16
    gb = _bf16(g)
    ref_dx = gb @ _bf16(w).T
    ref_dw = _bf16(x).reshape(-1, 7).T @ gb.reshape(-1, 4)
    # One bfloat16 rounding of the float32 result: within 2^-8 of the exact value.
    for got, ref in ((dx, ref_dx), (dw, ref_dw)):
        got = np.asarray(got, np.float64)
        assert np.all(np.abs(got - ref) <= 2.0**-8 * np.abs(ref) + 1e-6)
    # The float32 cotangent itself would give other values: the rounding is real.
    assert not np.allclose(np.asarray(dx, np.float64), g @ _bf16(w).T, rtol=0, atol=1e-7)


def test_float32_operands_match_lax_and_its_autodiff_exactly():
    rng = np.random.default_rng(2)
    x = jnp.asarray(rng.normal(size=(4, 6)), jnp.float32)
    w = jnp.asarray(rng.normal(size=(6, 3)), jnp.float32)

    def ref(x, w):
        return jax.lax.dot_general(x, w, (((1,), (0,)), ((), ())))

    np.testing.assert_allclose(matmul.matmul(x, w), ref(x, w), rtol=1e-6)
    g1 = jax.grad(lambda x, w: (matmul.matmul(x, w) ** 2).sum(), argnums=(0, 1))(x, w)
    g2 = jax.grad(lambda x, w: (ref(x, w) ** 2).sum(), argnums=(0, 1))(x, w)
    for a, b in zip(g1, g2, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_dot_general_takes_only_linears_contraction():
    x, w, _ = _inputs()
    with pytest.raises(ValueError, match="nnx.Linear's contraction"):
        matmul.dot_general(x, w, (((0,), (0,)), ((), ())))


def _library_dot_operand_types(hlo: str) -> list[str]:
    """Element types of the operands of every dot XLA:CPU hands to a library (the
    YNNPACK/XNNPACK fusions): ``f32`` where it widened a bfloat16 operand first."""
    types = dict(re.findall(r"(\w[\w.]*): (\w+)\[", hlo.split("ENTRY", 1)[1].split("\n")[0]))
    types |= dict(re.findall(r"%([\w.]+) = (\w+)\[", hlo))
    out = []
    for args in re.findall(r"%[xy]nn_fusion[\w.]* = \w+\[[^\]]*\]\S* fusion\(([^)]*)\)", hlo):
        out += [types[a.strip().lstrip("%")] for a in args.split(",")]
    return out


def test_compiled_forward_and_input_gradient_multiply_in_bfloat16():
    """The forward dot and the backward dot for the input both reach XLA:CPU's library
    dot with bfloat16 operands; autodiff's own transpose hands it a float32 cotangent
    and a widened kernel instead (the reason for the custom vjp). (The kernel's gradient
    contracts over the rows, which XLA:CPU computes in float32 either way.)"""
    x, w, g = _inputs(rows=(64,), n=32, m=16)

    def plain(x, w):
        return jax.lax.dot_general(
            x, w, (((1,), (0,)), ((), ())), preferred_element_type=jnp.float32
        )

    def compiled(f):
        def fwd_and_bwd(x, w, g):
            out, vjp = jax.vjp(f, x, w)
            return out, vjp(g)

        return jax.jit(fwd_and_bwd).lower(x, w, jnp.asarray(g)).compile().as_text()

    ours = _library_dot_operand_types(compiled(matmul.matmul))
    assert len(ours) == 4 and set(ours) == {"bf16"}
    assert "f32" in _library_dot_operand_types(compiled(plain))


def test_encoder_layers_pick_their_dot_by_compute_dtype():
    cfg = BertConfig(
        vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=32, max_position_embeddings=16,
    )  # fmt: skip
    from flax import nnx

    f32 = BertEncoder(cfg, rngs=nnx.Rngs(0))
    bf16 = BertEncoder(cfg, rngs=nnx.Rngs(0), dtype=BF16)
    assert f32.layers[0].intermediate.dot_general is jax.lax.dot_general
    assert bf16.layers[0].intermediate.dot_general is matmul.dot_general
    ids = jnp.asarray(np.random.default_rng(0).integers(1, 50, (2, 8)))
    mask = jnp.ones_like(ids)
    a, b = f32(ids, mask), bf16(ids, mask)
    assert b.dtype == BF16 and float(jnp.abs(a - b.astype(jnp.float32)).max()) < 0.1


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory):
    return save_tiny_bert(tmp_path_factory.mktemp("tiny_bert"))


@pytest.mark.skipif(not Path(DATA_DIR).is_dir(), reason="data dir not available")
def test_bfloat16_full_fine_tuning_is_deterministic_on_eight_devices(tiny_bert, tmp_path):
    selected = []
    for i in range(2):
        cfg = tiny_config(tiny_bert, model__dtype="bfloat16", mesh__num_devices=8)
        rows = batl_main.run(cfg, str(tmp_path / f"run{i}"))
        assert [r["labeled"] for r in rows] == [20, 40]
        assert all(np.isfinite(v) for r in rows for v in r["test"].values())
        selected.append((tmp_path / f"run{i}" / "selected.jsonl").read_text().splitlines())
    strip = [[re.sub(r'"time": [^,}]*', "", line) for line in s] for s in selected]
    assert strip[0] == strip[1] and len(strip[0]) == 1
