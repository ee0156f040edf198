"""ALPS's k-means (kernels/kmeans.py) against scikit-learn's ``KMeans`` and NumPy references.

* Seeding: greedy k-means++ re-implemented in NumPy with the kernel's documented
  draws; run through scikit-learn's Lloyd (``KMeans(init=seeds, n_init=1)``) it
  must give the kernel's partition exactly.
* Lloyd, tolerance and empty clusters: the kernel and scikit-learn from the same
  explicit centres, one of them far from every row (an empty cluster at once).
* Restarts: on well-separated blobs the same partition as
  ``KMeans(n_clusters=k, n_init=10, random_state=0)``; on random data an inertia
  within 1 % of it (or lower).

Row counts are not multiples of the 8 devices; every kernel run is on 8 devices
unless the test compares with 1.
"""

from __future__ import annotations

import jax
import numpy as np
import pytest
from sklearn.cluster import KMeans
from sklearn.datasets import make_blobs
from sklearn.metrics import adjusted_rand_score

from batl_jax.kernels import kmeans
from tests.test_selection_kernels import _mask, _sample

KEY = jax.random.key(3)


def greedy_kmeanspp_ref(x, k, key):
    """scikit-learn's greedy k-means++ with the kernel's draws: seed row ids ``(k,)``."""
    x = x.astype(np.float64)
    trials = 2 + int(np.log(k))

    def draws(s):
        return np.asarray(jax.random.uniform(jax.random.fold_in(key, s), (trials,)))

    w = np.ones(len(x))
    picks = [_sample(w, draws(0)[0], w > 0)]
    closest = ((x - x[picks[0]]) ** 2).sum(1)
    for s in range(1, k):
        cands = [_sample(closest, u, w > 0) for u in draws(s)]
        d2 = np.minimum(closest, ((x[None] - x[cands][:, None]) ** 2).sum(-1))
        best = int(np.argmin(d2.sum(1)))
        closest = d2[best]
        picks.append(cands[best])
    return np.array(picks)


def sklearn_from(x, init, max_iter=300, tol=1e-4):
    return KMeans(len(init), init=init, n_init=1, max_iter=max_iter, tol=tol).fit(
        x.astype(np.float64)
    )


def _same_partition(a, b):
    return adjusted_rand_score(a, b) == 1.0


@pytest.mark.parametrize("n, k", [(203, 7), (61, 4)])
def test_seeding_and_lloyd_match_sklearn_from_the_same_seeds(mesh8, n, k):
    rng = np.random.default_rng(n)
    x = rng.standard_normal((n, 6)).astype(np.float32)
    cand = _mask(n, rng.choice(n, n - 9, replace=False))
    rows = np.flatnonzero(cand)
    xc = x[rows] - x[rows].mean(0)  # the kernel seeds in centred coordinates
    seeds = greedy_kmeanspp_ref(xc, k, jax.random.fold_in(KEY, 0))
    want = sklearn_from(x[rows], x[rows][seeds])
    got = kmeans.kmeans(x, cand, k, key=KEY, mesh=mesh8, n_init=1)
    np.testing.assert_array_equal(got.labels[~cand], -1)
    np.testing.assert_array_equal(got.labels[rows], want.labels_)
    np.testing.assert_allclose(got.centres, want.cluster_centers_, rtol=1e-4, atol=1e-5)
    assert got.inertia == pytest.approx(want.inertia_, rel=1e-4)
    assert got.n_iter == want.n_iter_


@pytest.mark.parametrize("max_iter, tol", [(300, 1e-4), (300, 0.5), (2, 0.0)])
def test_lloyd_tolerance_and_empty_cluster_match_sklearn(mesh8, max_iter, tol):
    x, _ = make_blobs(157, n_features=4, centers=5, cluster_std=1.5, random_state=1)
    x = x.astype(np.float32)
    init = x[[0, 1, 2, 3]].copy()
    init = np.concatenate([init, np.full((1, 4), 100.0, np.float32)])  # empty at once
    want = sklearn_from(x, init, max_iter=max_iter, tol=tol)
    got = kmeans.kmeans(
        x,
        np.ones(157, bool),
        5,
        key=KEY,
        mesh=mesh8,
        n_init=1,
        max_iter=max_iter,
        tol=tol,
        init=init,
    )
    assert got.n_iter == want.n_iter_
    np.testing.assert_array_equal(got.labels, want.labels_)
    np.testing.assert_allclose(got.centres, want.cluster_centers_, rtol=1e-4, atol=1e-4)
    assert got.inertia == pytest.approx(want.inertia_, rel=1e-4)


def test_restarts_match_sklearn_on_blobs_and_random_data(mesh8):
    blobs, _ = make_blobs(203, n_features=5, centers=6, cluster_std=0.6, random_state=0)
    noise = np.random.default_rng(0).standard_normal((203, 5))
    for x, check in ((blobs, "partition"), (noise, "inertia")):
        x = x.astype(np.float32)
        got = kmeans.kmeans(x, np.ones(203, bool), 6, key=KEY, mesh=mesh8, n_init=10)
        want = KMeans(n_clusters=6, n_init=10, random_state=0).fit(x.astype(np.float64))
        if check == "partition":
            assert _same_partition(got.labels, want.labels_)
        assert got.inertia <= want.inertia_ * 1.01
        # the kept restart is the best of the ten: one restart alone is never better
        one = kmeans.kmeans(x, np.ones(203, bool), 6, key=KEY, mesh=mesh8, n_init=1)
        assert got.inertia <= one.inertia + 1e-3


def kmeans_select_ref(x, cand, k, key, n_init):
    """ALPS: best restart of (greedy k-means++ → scikit-learn Lloyd), then nearest rows."""
    x = x.astype(np.float64)
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    rows = np.flatnonzero(cand)
    xc = x[rows] - x[rows].mean(0)
    fits = [
        sklearn_from(xc, xc[greedy_kmeanspp_ref(xc, k, jax.random.fold_in(key, r))])
        for r in range(n_init)
    ]
    centres = min(fits, key=lambda f: f.inertia_).cluster_centers_ + x[rows].mean(0)
    avail, picks = cand.copy(), []
    for c in centres:
        picks.append(int(np.argmin(np.where(avail, ((x - c) ** 2).sum(1), np.inf))))
        avail[picks[-1]] = False
    return np.array(picks)


@pytest.mark.parametrize("n, n_cand, k", [(1, 1, 1), (37, 20, 20), (301, 250, 9)])
def test_kmeans_select_matches_reference(mesh8, n, n_cand, k):
    rng = np.random.default_rng(11 + n)
    x = rng.standard_normal((n, 8)).astype(np.float32)
    cand = _mask(n, rng.choice(n, n_cand, replace=False))
    picks = kmeans.kmeans_select(x, cand, k, key=KEY, mesh=mesh8, n_init=2)
    np.testing.assert_array_equal(picks, kmeans_select_ref(x, cand, k, KEY, 2))
    assert len(set(picks.tolist())) == k and cand[picks].all()


def test_kmeans_select_mesh_invariance_and_duplicates(mesh1, mesh8):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((301, 8)).astype(np.float32)
    cand = rng.random(301) < 0.5
    a = kmeans.kmeans_select(x, cand, 9, key=KEY, mesh=mesh8, n_init=2)
    b = kmeans.kmeans_select(x, cand, 9, key=KEY, mesh=mesh1, n_init=2)
    np.testing.assert_array_equal(a, b)
    # one distinct point: k distinct rows anyway, lowest ids first
    dup = np.tile(x[:1], (37, 1))
    cand = _mask(37, range(1, 37, 3))
    picks = kmeans.kmeans_select(dup, cand, 6, key=KEY, mesh=mesh8, n_init=2)
    np.testing.assert_array_equal(picks, np.flatnonzero(cand)[:6])


def test_kmeans_rejects_bad_parameters(mesh1):
    x = np.zeros((5, 2), np.float32)
    for bad in (dict(n_init=0), dict(max_iter=0), dict(tol=-1.0), dict(init=np.zeros((2, 2)))):
        with pytest.raises(ValueError):
            kmeans.kmeans(x, np.ones(5, bool), 3, key=KEY, mesh=mesh1, **bad)
