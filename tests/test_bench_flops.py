"""The FLOP counts behind the suites' "share of the machine's matmul rate"."""

import numpy as np
import pytest

from benchmarks import flops


def _reference_layer_flops(length: int, h: int, i: int) -> float:
    """One BERT layer's matmuls, multiply-adds counted one by one, x2."""
    qkv = 3 * length * h * h
    scores = length * length * h  # Q K^T over all heads together
    mix = length * length * h  # softmax(QK^T) V
    out = length * h * h
    ffn = length * h * i + length * i * h
    return 2.0 * (qkv + scores + mix + out + ffn)


def test_forward_flops_match_a_direct_count():
    shape = flops.EncoderShape(layers=6, hidden=384, intermediate=1536)  # MiniLM-L6
    assert shape.forward_flops(1, 64) == pytest.approx(6 * _reference_layer_flops(64, 384, 1536))
    assert shape.forward_flops(32, 48) == pytest.approx(32 * shape.forward_flops(1, 48))
    lengths = np.array([5, 17, 64])
    real = shape.forward_flops_real(lengths)
    assert real == pytest.approx(sum(shape.forward_flops(1, int(n)) for n in lengths))
    # Padding all three to 64 tokens costs more than their own lengths.
    assert shape.forward_flops_batches([(3, 64)]) > real


def _reference_first_only_layer_flops(length: int, h: int, i: int) -> float:
    """The last layer for position 0 alone: keys and values of every token, the rest
    for one query row, multiply-adds counted one by one, x2."""
    kv = 2 * length * h * h
    q_out = 2 * h * h
    scores_mix = 2 * length * h
    ffn = 2 * h * i
    return 2.0 * (kv + q_out + scores_mix + ffn)


def test_first_only_last_layer_counts_one_query_row():
    full = flops.EncoderShape(layers=6, hidden=384, intermediate=1536)
    cls = flops.EncoderShape(layers=6, hidden=384, intermediate=1536, first_only_last=True)
    want = 5 * _reference_layer_flops(48, 384, 1536) + _reference_first_only_layer_flops(
        48, 384, 1536
    )
    assert cls.forward_flops(1, 48) == pytest.approx(want)
    lengths = np.array([5, 17, 64])
    assert cls.forward_flops_real(lengths) == pytest.approx(
        sum(cls.forward_flops(1, int(n)) for n in lengths)
    )
    # MiniLM at 48 tokens: the shortcut skips about a seventh of the work.
    assert 0.12 < 1 - cls.forward_flops(1, 48) / full.forward_flops(1, 48) < 0.16


def test_shares_and_utilisation():
    u = flops.utilisation(2e9, 0.5, {"jax float32": 8.0, "torch bfloat16": 0.0})
    assert u["gflops"] == pytest.approx(4.0)
    assert u["share"] == {"jax float32": pytest.approx(0.5)}  # a zero rate is left out
    lines = flops.utilisation_lines("forward x", {"padded": u})
    assert lines == ["forward x (padded tokens): 4.0 GFLOP/s = 50% of jax float32"]


def test_matmul_rates_are_measured():
    rates = flops.matmul_rates(64, reps=1)
    assert set(rates) == {"jax float32", "jax bfloat16"} and min(rates.values()) > 0
