"""Nearest-neighbour kernels (min distance to a set, cosine kNN) against brute-force NumPy.

Pool sizes are not multiples of the 8 fake devices, so every test also covers
the padding rows of the last shard; each runs on 1 and 8 devices.
"""

from __future__ import annotations

import numpy as np
import pytest

from batl_jax.kernels import neighbors


def _data(n, m, d, seed):
    rng = np.random.default_rng(seed)
    x = (rng.normal(size=(n, d)) + 3.0).astype(np.float32)  # a common offset, as real features
    pick = np.sort(rng.choice(n, m, replace=False))
    return x, pick


def _np_min_dist(x, s):
    return np.sqrt(((x[:, None, :].astype(np.float64) - s[None]) ** 2).sum(-1)).min(axis=1)


def _np_knn(x, ids, q, qids, k):
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    qn = q / np.linalg.norm(q, axis=1, keepdims=True)
    sims = qn.astype(np.float64) @ xn.T.astype(np.float64)
    sims[np.asarray(qids)[:, None] == np.asarray(ids)[None, :]] = -np.inf
    return -np.sort(-sims, axis=1)[:, :k]


@pytest.mark.parametrize("n, m, tile", [(37, 5, 4), (37, 5, 1024), (3, 2, 1), (101, 17, 8)])
def test_min_distances_match_numpy_on_1_and_8_devices(mesh1, mesh8, n, m, tile):
    x, pick = _data(n, m, 13, seed=n + m)
    want = _np_min_dist(x, x[pick])
    for mesh in (mesh1, mesh8):
        got = neighbors.min_distances(x, x[pick], mesh=mesh, tile=tile)
        assert got.shape == (n,) and got.dtype == np.float32
        # Selected rows snap to exactly 0; the others match to float32 rounding.
        assert np.all(got[pick] == 0.0)
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_min_distances_to_an_outside_set(mesh8):
    x, _ = _data(29, 1, 7, seed=4)
    s = np.random.default_rng(5).normal(size=(6, 7)).astype(np.float32)
    got = neighbors.min_distances(x, s, mesh=mesh8, tile=3)
    np.testing.assert_allclose(got, _np_min_dist(x, s), rtol=1e-4, atol=1e-4)


def test_min_distances_rejects_bad_shapes(mesh1):
    x, _ = _data(5, 1, 3, seed=0)
    with pytest.raises(ValueError, match="must be"):
        neighbors.min_distances(x, x[:, :2], mesh=mesh1)
    with pytest.raises(ValueError, match="non-empty"):
        neighbors.min_distances(x, x[:0], mesh=mesh1)


@pytest.mark.parametrize("tile", [3, 1024])
@pytest.mark.parametrize("k", [1, 4, 10])
def test_knn_similarities_match_numpy_on_1_and_8_devices(mesh1, mesh8, tile, k):
    x, pick = _data(29, 6, 11, seed=k)
    ids = np.arange(100, 129)  # pool ids are dataset rows, not positions
    want = _np_knn(x, ids, x[pick], ids[pick], k)
    for mesh in (mesh1, mesh8):
        got = neighbors.knn_similarities(x, ids, x[pick], ids[pick], k=k, mesh=mesh, tile=tile)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_knn_similarities_fill_missing_neighbours_with_minus_inf(mesh8):
    x, _ = _data(3, 1, 5, seed=1)
    ids = np.arange(3)
    got = neighbors.knn_similarities(x, ids, x[:1], ids[:1], k=4, mesh=mesh8)
    want = _np_knn(x, ids, x[:1], ids[:1], 2)
    np.testing.assert_allclose(got[:, :2], want, rtol=1e-5)
    assert np.all(np.isneginf(got[:, 2:]))
    with pytest.raises(ValueError, match="k >= 1"):
        neighbors.knn_similarities(x, ids, x[:1], ids[:1], k=0, mesh=mesh8)
