"""Consistent MC dropout (one mask per pass, shared by every pool row) and BatchBALD on it."""

from __future__ import annotations

import dataclasses
import itertools
from pathlib import Path

import jax
import numpy as np
import pytest

from batl_jax import rounds, setup, sharding
from batl_jax.errors import ConfigError
from batl_jax.kernels.batchbald import batchbald_select
from batl_jax.strategies import bayesian
from tests.run_helpers import DATA_DIR, tiny_config
from tests.tiny_bert import save_tiny_bert

needs_data = pytest.mark.skipif(not Path(DATA_DIR).is_dir(), reason="data dir not available")


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory):
    return save_tiny_bert(tmp_path_factory.mktemp("tiny_bert"))


def _round0(tiny_bert, devices: int, mode: str = "head"):
    """A tiny BatchBALD run's round-0 model and its pool features."""
    cfg = tiny_config(tiny_bert, al__strategy="batchbald", train__mode=mode)
    cfg.bald.mc_samples = 12
    cfg.train.dropout = 0.3
    parts = setup.build(cfg, sharding.make_mesh(num_devices=devices))
    static, _ = rounds.prepare(parts)
    n = len(parts.dataset.train)
    labeled = np.arange(20)
    fit = rounds.fit(parts, 0, labeled, parts.dataset.train.labels)
    feats = rounds.pool_features(parts, fit, static)
    return parts, fit, feats, n


def _sharper(fit, scale: float):
    """The round's model with its output layer scaled, so the tiny model's MC passes
    disagree enough for mutual information to be far from rounding noise."""
    params = jax.tree.map(lambda x: x, fit.params)
    params["out"]["kernel"].set_value(params["out"]["kernel"].get_value() * scale)
    return dataclasses.replace(fit, params=params)


def _mc(parts, fit, sentence):
    feature = parts.features[0]
    return feature.compute(parts.ctx, fit, {"sentence": sentence}).array


def _softmax(z):
    z = z.astype(np.float64)
    p = np.exp(z - z.max(-1, keepdims=True))
    return p / p.sum(-1, keepdims=True)


def _entropy(p, axis=-1):
    return -(p * np.log(np.maximum(p, 1e-300))).sum(axis)


def _joint_mi(probs, batch):
    """Exact I(y_batch; ω) from (K, N, C) probabilities: enumerate every configuration."""
    k, _, c = probs.shape
    joint = np.zeros(0)
    for ys in itertools.product(range(c), repeat=len(batch)):
        per_draw = np.prod([probs[:, i, y] for i, y in zip(batch, ys, strict=True)], axis=0)
        joint = np.append(joint, per_draw.mean())
    conditional = sum(_entropy(probs[:, i]).mean() for i in batch)
    return _entropy(joint) - conditional


def _numpy_batchbald(probs, candidates, k):
    batch, scores = [], []
    for _ in range(k):
        best, best_s = None, -np.inf
        for i in candidates:
            if i in batch:
                continue
            s = _joint_mi(probs, batch + [i])
            if s > best_s + 1e-12:
                best, best_s = i, s
        batch.append(best)
        scores.append(best_s)
    return np.asarray(batch), np.asarray(scores)


@needs_data
def test_copies_share_every_pass_seeded_and_same_on_one_and_eight_devices(tiny_bert, head1):
    out = {}
    for devices in (1, 8):
        parts, fit, feats, n = head1 if devices == 1 else _round0(tiny_bert, devices)
        mc = feats["mc_logits"]
        assert mc.shape == (12, n, parts.task.num_labels)
        s = feats.sentence.copy()
        s[1] = s[0]  # a duplicate sentence
        dup = _mc(parts, fit, s)
        # Pass k's output of the copy is the original's in every pass ...
        np.testing.assert_array_equal(dup[:, 1], dup[:, 0])
        # ... while the passes themselves differ (dropout is on) ...
        assert np.abs(np.diff(dup[:, 0], axis=0)).max() > 1e-4
        # ... and the same seed gives the same feature.
        np.testing.assert_array_equal(_mc(parts, fit, s), dup)
        out[devices] = mc
    np.testing.assert_allclose(out[1], out[8], rtol=1e-5, atol=1e-6)


@needs_data
def test_full_mode_uses_the_round_encoders_sentence(tiny_bert):
    parts, fit, feats, n = _round0(tiny_bert, 1, mode="full")
    mc = feats["mc_logits"]
    assert mc.shape == (12, n, parts.task.num_labels) and np.isfinite(mc).all()
    # With the masks' expectation the head is deterministic: MC mean ≈ deterministic logits.
    assert np.abs(mc.mean(0) - feats.logits).mean() < np.abs(feats.logits).mean()


@pytest.fixture(scope="module")
def head1(tiny_bert):
    return _round0(tiny_bert, 1)


@pytest.fixture(scope="module")
def duplicate_pool(head1):
    """Consistent MC probabilities of 40 pool rows, sharpened: row 0 is the one with the
    largest BALD score and row 1 a copy of it."""
    parts, fit, feats, _ = head1
    fit = _sharper(fit, 300.0)
    s = feats.sentence[:40].copy()
    best = int(np.argmax([_joint_mi(_softmax(_mc(parts, fit, s)), [i]) for i in range(40)]))
    s[[0, 1]] = s[best]
    return _softmax(_mc(parts, fit, s)), parts.mesh


@needs_data
def test_batchbald_second_copy_gains_little_with_shared_masks_only(duplicate_pool):
    probs, _ = duplicate_pool
    bald = _joint_mi(probs, [1])
    assert bald > 0.05
    # Shared masks: once one copy is in the batch, the other adds little.
    gain = _joint_mi(probs, [0, 1]) - _joint_mi(probs, [0])
    assert gain < 0.6 * bald
    # Per-row masks, constructed: the copy's pass k is the original under another draw.
    per_row = probs.copy()
    per_row[:, 1] = probs[np.random.default_rng(0).permutation(len(probs)), 0]
    gain_per_row = _joint_mi(per_row, [0, 1]) - _joint_mi(per_row, [0])
    assert gain_per_row > 0.75 * bald
    assert gain_per_row > 1.5 * gain


@needs_data
def test_batchbald_matches_exact_numpy_batchbald_on_the_model_outputs(duplicate_pool):
    probs, mesh = duplicate_pool
    probs = probs[:, :16]
    cand = np.ones(16, bool)
    cand[[3, 7]] = False  # labeled rows
    picks, scores = batchbald_select(
        probs.astype(np.float32), cand, 3, key=jax.random.key(0), mesh=mesh
    )
    ref_picks, ref_scores = _numpy_batchbald(probs, list(np.flatnonzero(cand)), 3)
    np.testing.assert_array_equal(picks, ref_picks)
    np.testing.assert_allclose(scores, ref_scores, rtol=1e-4, atol=1e-5)
    assert picks[0] == 0  # the most informative sentence (ties: the lower row)


def test_dropout_scope_all_is_refused_with_the_fix():
    from batl_jax import config as base

    cfg = base.get_config()
    cfg.bald.dropout_scope = "all"
    with pytest.raises(ConfigError, match="bald.dropout_scope=head"):
        bayesian._features(cfg.bald)
