"""Selection kernels (k-center, BADGE's k-means++, BALD / BatchBALD) vs numpy.

Every reference is brute force in float64: dense distances recomputed from
scratch, BADGE's gradient embedding built explicitly as ``(N, C·d)``, the
k-means++ draws re-derived with ``jax.random.uniform(jax.random.fold_in(key, s))``
(the kernels' documented recipe), BatchBALD's joint entropy by enumerating all
configurations with ``itertools.product``. Data are continuous random draws, so
no two scores tie except where a test builds ties on purpose.
"""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from batl_jax.kernels import batchbald, kcenter, kmeans

KEY = jax.random.key(7)


def _rng(seed):
    return np.random.default_rng(seed)


def _mask(n, idx):
    m = np.zeros(n, bool)
    m[list(idx)] = True
    return m


def _probs(rng, shape, scale=2.0):
    z = rng.standard_normal(shape) * scale
    p = np.exp(z - z.max(-1, keepdims=True))
    return (p / p.sum(-1, keepdims=True)).astype(np.float32)


# --------------------------------------------------------------------------------------
# k-center
# --------------------------------------------------------------------------------------
def kcenter_ref(x, labeled, cand, k):
    """Recomputes every distance to L ∪ picks from scratch at each pick."""
    x = x.astype(np.float64)
    avail = cand & ~labeled
    picks, scores = [], []
    for _ in range(k):
        centres = np.flatnonzero(labeled).tolist() + picks
        if centres:
            d = np.sqrt(((x[:, None] - x[centres][None]) ** 2).sum(-1)).min(1)
        else:  # cold start: distance to the candidates' mean
            d = np.sqrt(((x - x[avail].mean(0)) ** 2).sum(-1))
        d = np.where(avail, d, -np.inf)
        p = int(np.argmax(d))
        picks.append(p)
        scores.append(d[p])
        avail[p] = False
    return np.array(picks), np.array(scores)


@pytest.mark.parametrize(
    "n, n_labeled, k",
    [(1, 0, 1), (37, 0, 6), (37, 12, 25), (301, 100, 9), (301, 0, 1)],
)
def test_kcenter_matches_dense_reference(mesh8, n, n_labeled, k):
    rng = _rng(n + n_labeled)
    x = rng.standard_normal((n, 12)).astype(np.float32)
    labeled = _mask(n, rng.choice(n, n_labeled, replace=False))
    cand = ~labeled
    picks, scores = kcenter.kcenter_greedy(x, labeled, cand, k, mesh=mesh8, tile=16)
    ref_picks, ref_scores = kcenter_ref(x, labeled, cand, k)
    np.testing.assert_array_equal(picks, ref_picks)
    np.testing.assert_allclose(scores, ref_scores, rtol=1e-5, atol=1e-5)
    assert picks.dtype == np.int64 and scores.dtype == np.float32


def test_kcenter_mesh_tile_and_mask_invariance(mesh1, mesh8):
    rng = _rng(3)
    n = 301
    x = rng.standard_normal((n, 20)).astype(np.float32)
    labeled = _mask(n, rng.choice(n, 40, replace=False))
    # candidates overlap the labeled set: labeled rows must still never be picked
    cand = rng.random(n) < 0.6
    a = kcenter.kcenter_greedy(x, labeled, cand, 12, mesh=mesh8, tile=16)
    b = kcenter.kcenter_greedy(x, labeled, cand, 12, mesh=mesh1, tile=64)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_allclose(a[1], b[1], rtol=1e-5)
    np.testing.assert_array_equal(a[0], kcenter_ref(x, labeled, cand, 12)[0])
    assert not (labeled[a[0]]).any() and cand[a[0]].all()
    assert np.all(np.diff(a[1]) <= 1e-6)  # greedy k-center scores never increase


@pytest.mark.parametrize("n_labeled", [0, 5])
def test_kcenter_duplicates_take_lowest_ids(mesh8, n_labeled):
    n = 37
    x = np.tile(np.float32([[0.5, -1.0, 2.0]]), (n, 1))
    labeled = _mask(n, range(3, 3 + n_labeled))
    cand = ~labeled
    picks, scores = kcenter.kcenter_greedy(x, labeled, cand, 6, mesh=mesh8)
    np.testing.assert_array_equal(picks, np.flatnonzero(cand)[:6])
    np.testing.assert_array_equal(scores, 0.0)


def test_kcenter_rejects_bad_k(mesh8):
    x = np.zeros((5, 2), np.float32)
    with pytest.raises(ValueError):
        kcenter.kcenter_greedy(x, np.zeros(5, bool), _mask(5, [1, 2]), 3, mesh=mesh8)


# --------------------------------------------------------------------------------------
# k-means++ (BADGE; ALPS's k-means is in test_kmeans.py)
# --------------------------------------------------------------------------------------
def uniforms(key, k):
    """The kernels' draws, re-derived one by one: u_s = uniform(fold_in(key, s))."""
    return [float(jax.random.uniform(jax.random.fold_in(key, s))) for s in range(k)]


def _sample(w, u, avail):
    total = w.sum()
    if total <= 0:
        return int(np.flatnonzero(avail)[0])
    hit = np.flatnonzero((w > 0) & (np.cumsum(w) > u * total))
    return int(hit[0]) if len(hit) else int(np.flatnonzero(w > 0)[-1])


def kmeanspp_ref(g, cand, k, us):
    """BADGE's k-means++ on explicit vectors ``g`` with the given draws (first: largest norm)."""
    g = g.astype(np.float64)
    avail = cand.copy()
    p = int(np.argmax(np.where(avail, (g**2).sum(1), -1.0)))
    picks = [p]
    avail[p] = False
    d2 = ((g - g[p]) ** 2).sum(1)
    for s in range(1, k):
        p = _sample(np.where(avail, d2, 0.0), us[s], avail)
        picks.append(p)
        avail[p] = False
        d2 = np.minimum(d2, ((g - g[p]) ** 2).sum(1))
    return np.array(picks)


def badge_embedding(p, h):
    """BADGE's gradient embedding, materialised: (p − onehot(argmax p)) ⊗ h as (N, C·d)."""
    e = np.eye(p.shape[1])[p.argmax(1)]
    return ((p - e)[:, :, None] * h[:, None, :]).reshape(len(p), -1).astype(np.float64)


def test_uniform_draws_recipe():
    np.testing.assert_array_equal(kmeans.kmeanspp_uniforms(KEY, 5), np.float32(uniforms(KEY, 5)))


def test_badge_factored_distance_equals_explicit_embedding():
    rng = _rng(0)
    p, h = _probs(rng, (50, 7)), rng.standard_normal((50, 9)).astype(np.float32)
    g = badge_embedding(p, h)
    a = p - np.eye(7, dtype=np.float32)[p.argmax(1)]
    n2 = (a**2).sum(1) * (h**2).sum(1)
    np.testing.assert_allclose(n2, (g**2).sum(1), rtol=1e-5)
    for c in (0, 13, 49):
        pool = (jnp.asarray(a), jnp.asarray(h), jnp.asarray(n2))
        centre = tuple(arr[c] for arr in pool)
        d2 = np.asarray(kmeans._badge_d2(pool, centre))
        np.testing.assert_allclose(d2, ((g - g[c]) ** 2).sum(1), rtol=2e-4, atol=1e-5)
        assert d2[c] == 0.0


@pytest.mark.parametrize("n, n_cand, k", [(1, 1, 1), (37, 10, 10), (301, 200, 1), (301, 200, 17)])
def test_badge_matches_explicit_kmeanspp(mesh8, n, n_cand, k):
    rng = _rng(n + k)
    p, h = _probs(rng, (n, 5)), rng.standard_normal((n, 16)).astype(np.float32)
    cand = _mask(n, rng.choice(n, n_cand, replace=False))
    picks = kmeans.badge_kmeans_pp(p, h, cand, k, key=KEY, mesh=mesh8)
    ref = kmeanspp_ref(badge_embedding(p, h), cand, k, uniforms(KEY, k))
    np.testing.assert_array_equal(picks, ref)


def test_badge_mesh_invariance_and_duplicates(mesh1, mesh8):
    rng = _rng(5)
    n = 301
    p, h = _probs(rng, (n, 6)), rng.standard_normal((n, 24)).astype(np.float32)
    cand = rng.random(n) < 0.7
    a = kmeans.badge_kmeans_pp(p, h, cand, 20, key=KEY, mesh=mesh8)
    b = kmeans.badge_kmeans_pp(p, h, cand, 20, key=KEY, mesh=mesh1)
    np.testing.assert_array_equal(a, b)
    assert len(set(a.tolist())) == 20 and cand[a].all()
    # all-equal rows: D² is 0 everywhere, so every pick falls back to the lowest id
    n = 37
    p_dup, h_dup = np.tile(p[:1], (n, 1)), np.tile(h[:1], (n, 1))
    cand = _mask(n, range(4, n, 2))
    picks = kmeans.badge_kmeans_pp(p_dup, h_dup, cand, 5, key=KEY, mesh=mesh8)
    np.testing.assert_array_equal(picks, np.flatnonzero(cand)[:5])


# --------------------------------------------------------------------------------------
# BALD / BatchBALD
# --------------------------------------------------------------------------------------
def _entropy(p):
    p = p[p > 0]
    return float(-(p * np.log(p)).sum())


def joint_mi(mc, batch):
    """I(y_batch; ω) by enumerating every configuration of the batch's labels."""
    mc = mc.astype(np.float64)
    num_k, _, num_c = mc.shape
    h_joint = 0.0
    for cfg in itertools.product(range(num_c), repeat=len(batch)):
        pk = np.ones(num_k)
        for i, y in zip(batch, cfg, strict=True):
            pk = pk * mc[:, i, y]
        h_joint -= pk.mean() * np.log(pk.mean()) if pk.mean() > 0 else 0.0
    cond = sum(np.mean([_entropy(mc[k, i]) for k in range(num_k)]) for i in batch)
    return h_joint - cond


def batchbald_ref(mc, cand, k):
    avail, batch, scores = cand.copy(), [], []
    for _ in range(k):
        vals = [joint_mi(mc, batch + [i]) if avail[i] else -np.inf for i in range(mc.shape[1])]
        p = int(np.argmax(vals))
        batch.append(p)
        scores.append(vals[p])
        avail[p] = False
    return np.array(batch), np.array(scores)


def test_bald_scores_and_topk_ties():
    rng = _rng(1)
    mc = _probs(rng, (6, 37, 4))
    ref = [_entropy(mc[:, i].astype(np.float64).mean(0)) for i in range(37)]
    ref = np.array(ref) - np.array([np.mean([_entropy(p) for p in mc[:, i]]) for i in range(37)])
    np.testing.assert_allclose(batchbald.bald_scores(mc), ref, rtol=1e-5, atol=1e-6)
    dup = np.repeat(mc[:, :1], 9, axis=1)  # nine identical rows: ties → lowest ids
    picks, _ = batchbald.bald_select(dup, _mask(9, [2, 4, 5, 8]), 3)
    np.testing.assert_array_equal(picks, [2, 4, 5])


@pytest.mark.parametrize("n, n_cand, k", [(1, 1, 1), (37, 30, 4), (9, 5, 5)])
def test_batchbald_exact_matches_enumeration(mesh8, n, n_cand, k):
    rng = _rng(n)
    mc = _probs(rng, (5, n, 3))
    cand = _mask(n, rng.choice(n, n_cand, replace=False))
    picks, scores = batchbald.batchbald_select(mc, cand, k, key=KEY, mesh=mesh8)
    ref_picks, ref_scores = batchbald_ref(mc, cand, k)
    np.testing.assert_array_equal(picks, ref_picks)
    np.testing.assert_allclose(scores, ref_scores, rtol=1e-4, atol=1e-5)
    # the last score is the joint mutual information of the whole chosen batch
    np.testing.assert_allclose(scores[-1], joint_mi(mc, picks.tolist()), rtol=1e-4, atol=1e-5)
    if k == 1:
        np.testing.assert_allclose(scores[0], batchbald.bald_scores(mc)[picks[0]], rtol=1e-5)


def test_batchbald_mesh_and_tile_invariance(mesh1, mesh8):
    mc = _probs(_rng(4), (4, 301, 5))
    cand = np.ones(301, bool)
    a = batchbald.batchbald_select(mc, cand, 3, key=KEY, mesh=mesh8, candidate_tile=7)
    b = batchbald.batchbald_select(mc, cand, 3, key=KEY, mesh=mesh1)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_allclose(a[1], b[1], rtol=1e-5)


def _estimator_sigma(mc, batch, x):
    """Std of one draw of the importance-sampling joint-entropy estimator, exactly."""
    mc = mc.astype(np.float64)
    vals, qs = [], []
    for cfg in itertools.product(range(mc.shape[2]), repeat=len(batch)):
        pk = np.prod([mc[:, i, y] for i, y in zip(batch, cfg, strict=True)], axis=0)
        m = (pk[:, None] * mc[:, x, :]).mean(0)
        qs.append(pk.mean())
        vals.append(-(m * np.log(m)).sum() / pk.mean())
    qs, vals = np.array(qs), np.array(vals)
    return np.sqrt((qs * vals**2).sum() - (qs * vals).sum() ** 2)


def test_batchbald_sampled_estimate_close_to_exact(mesh8):
    """Steps ≥ 1 are sampled (max_configs = C); the last pick has no rival, so its score is
    an unbiased estimate of the exact joint MI. Tolerance: 5 standard errors of the
    estimator, its per-draw variance computed exactly by enumeration (stratified
    sampling over ω only lowers it), plus float32 slack."""
    rng = _rng(9)
    mc = _probs(rng, (4, 37, 3), scale=1.5)
    cand = _mask(37, [3, 17, 30])
    kw = dict(key=KEY, mesh=mesh8, max_configs=3, num_samples=4000)
    picks, scores = batchbald.batchbald_select(mc, cand, 3, **kw)
    again = batchbald.batchbald_select(mc, cand, 3, **kw)
    np.testing.assert_array_equal(picks, again[0])  # same key: same draws
    np.testing.assert_array_equal(scores, again[1])
    exact = joint_mi(mc, picks.tolist())
    sigma = _estimator_sigma(mc, picks[:2].tolist(), picks[2])
    assert abs(scores[-1] - exact) <= 5 * sigma / np.sqrt(4000) + 1e-4, (scores[-1], exact)


def test_sampled_table_estimator_long_batch():
    """The rescaled sampled table stays finite on a long batch (probabilities ≪ 1e-38)
    and its estimate matches the exact joint entropy of a short one."""
    rng = _rng(12)
    mc = _probs(rng, (4, 60, 3), scale=1.5)
    batch = np.transpose(mc[:, :60], (1, 0, 2))
    table, weight, h0 = batchbald._sampled_table(jnp.asarray(batch), 60, KEY, per_k=50)
    assert np.isfinite(np.asarray(table)).all() and np.isfinite(float(h0))
    short = np.transpose(mc[:, :2], (1, 0, 2))
    table, weight, h0 = batchbald._sampled_table(jnp.asarray(short), 2, KEY, per_k=2000)
    m = np.asarray(table, np.float64)[:, :, None] * mc[:, 2][None].astype(np.float64)
    m = m.mean(1)  # (M, C): joint prob of (sampled config, y_x) up to the row scale
    est = (np.asarray(weight)[:, None] * -(m * np.log(m))).sum() + float(h0)
    cond = sum(np.mean([_entropy(mc[k, i]) for k in range(4)]) for i in range(3))
    exact = joint_mi(mc, [0, 1, 2]) + cond
    sigma = _estimator_sigma(mc, [0, 1], 2)
    assert abs(est - exact) <= 5 * sigma / np.sqrt(8000) + 1e-4, (est, exact)
