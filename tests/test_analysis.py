"""Analysis metrics (paper Eqs. 7-9) against plain NumPy formulas, on 1 and 8 devices."""

from __future__ import annotations

import numpy as np
import pytest

from batl_jax import analysis
from batl_jax.features import PoolFeatures


def _np_diversity(x, s):
    d = np.sqrt(((x[:, None, :].astype(np.float64) - s[None, :, :]) ** 2).sum(-1))
    return 1.0 / d.min(axis=1).mean()


def _np_density(x, ids, q, qids, k):
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    qn = q / np.linalg.norm(q, axis=1, keepdims=True)
    sims = qn.astype(np.float64) @ xn.T.astype(np.float64)
    sims[np.asarray(qids)[:, None] == np.asarray(ids)[None, :]] = -np.inf
    top = -np.sort(-sims, axis=1)[:, :k]
    return top.mean(axis=1).mean(), top


def _data(n=37, m=5, d=13, seed=0):
    rng = np.random.default_rng(seed)
    x = (rng.normal(size=(n, d)) + 3.0).astype(np.float32)  # a common offset, as real features
    pick = np.sort(rng.choice(n, m, replace=False))
    return x, pick


@pytest.mark.parametrize("tile", [4, 1024])
def test_diversity_matches_numpy_on_1_and_8_devices(mesh1, mesh8, tile):
    x, pick = _data()
    want = _np_diversity(x, x[pick])
    got1 = analysis.diversity(x, x[pick], mesh=mesh1, tile=tile)
    got8 = analysis.diversity(x, x[pick], mesh=mesh8, tile=tile)
    assert got1 == pytest.approx(want, rel=1e-5)
    assert got8 == pytest.approx(got1, rel=1e-6)


def test_diversity_is_none_when_everything_is_selected(mesh1):
    x, _ = _data(n=9)
    assert analysis.diversity(x, x, mesh=mesh1) is None


# The per-row kernels (min distance, kNN similarities) are tested in test_neighbors.py.
@pytest.mark.parametrize("tile", [3, 1024])
@pytest.mark.parametrize("k", [1, 4, 10])
def test_knn_density_matches_numpy_on_1_and_8_devices(mesh1, mesh8, tile, k):
    x, pick = _data(n=29, m=6, d=11, seed=k)
    ids = np.arange(100, 129)  # pool ids are dataset rows, not positions
    want, _ = _np_density(x, ids, x[pick], ids[pick], k)
    for mesh in (mesh1, mesh8):
        got = analysis.knn_density(x, ids, x[pick], ids[pick], k=k, mesh=mesh, tile=tile)
        assert got == pytest.approx(want, rel=1e-5)


def test_knn_density_caps_k_at_the_pool_size(mesh8):
    x, _ = _data(n=4, m=2, d=5)
    ids = np.arange(4)
    want, _ = _np_density(x, ids, x[:2], ids[:2], 3)
    got = analysis.knn_density(x, ids, x[:2], ids[:2], k=10, mesh=mesh8)
    assert got == pytest.approx(want, rel=1e-5)
    assert analysis.knn_density(x[:1], ids[:1], x[:1], ids[:1], k=10, mesh=mesh8) is None


def test_entropy_matches_numpy():
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(23, 5)) * 3
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    np.testing.assert_allclose(analysis.entropy(logits), -(p * np.log(p)).sum(1), rtol=1e-10)
    assert analysis.entropy(np.zeros((1, 4)))[0] == pytest.approx(np.log(4))


def test_batch_metrics_combines_the_three_metrics(mesh8):
    rng = np.random.default_rng(2)
    n, d = 41, 6
    feats = PoolFeatures(
        sentence=rng.normal(size=(n, d)).astype(np.float32),
        hidden=np.tanh(rng.normal(size=(n, d))).astype(np.float32),
        logits=rng.normal(size=(n, 3)).astype(np.float32),
    )
    ent = rng.uniform(size=n)

    def an(feats, selected, unlabeled, reference_entropy=lambda: ent):
        return analysis.batch_metrics(
            feats.sentence,
            feats.hidden,
            selected,
            unlabeled,
            mesh=mesh8,
            density_k=10,
            reference_entropy=reference_entropy,
        )

    unlabeled = np.setdiff1d(np.arange(n), [0, 5, 7])
    selected = np.array([9, 2, 30])
    out = an(feats, selected, unlabeled)
    x = np.concatenate([feats.sentence, feats.hidden], 1)
    assert out["diversity"] == pytest.approx(_np_diversity(x[unlabeled], x[selected]), rel=1e-5)
    assert out["uncertainty"] == pytest.approx(ent[selected].mean())
    want, _ = _np_density(x[unlabeled], unlabeled, x[selected], selected, 10)
    assert out["density"] == pytest.approx(want, rel=1e-5)
    with pytest.raises(ValueError, match="unlabeled"):
        an(feats, np.array([0]), unlabeled)
    assert an(feats, selected, unlabeled, reference_entropy=None)["uncertainty"] is None
