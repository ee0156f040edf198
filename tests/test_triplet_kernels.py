"""BATL triplet mining kernels against plain NumPy references (float64, full N × N)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from batl_jax.kernels import distances, triplet

MARGIN = 0.2
EPS32 = float(np.finfo(np.float32).eps)
SMALL_TILES = dict(anchor_tile=24, pool_tile=40)  # several tiles and a clamped last one


# ----------------------------------------------------------------------------- references
def ref_distances(x):
    x = np.asarray(x, np.float64)
    return np.sqrt(((x[:, None, :] - x[None, :, :]) ** 2).sum(-1))


def ref_mine(x, y, margin=MARGIN):
    """The definition (README, "Method decisions": triplet mining), one anchor at a time."""
    d = ref_distances(x)
    n = len(y)
    d_p, d_n = np.zeros(n), np.zeros(n)
    for a in range(n):
        pos = y == y[a]
        pos[a] = False
        neg = y != y[a]
        d_p[a] = d[a, pos].max() if pos.any() else 0.0
        if not neg.any():
            d_n[a] = d_p[a] + margin
            continue
        semi = d[a, neg][d[a, neg] > d_p[a]]
        d_n[a] = semi.min() if semi.size else d[a, neg].max()
    return d_p, d_n


def expansion_error(x):
    """Per-anchor bound on the float32 error of a squared distance via ‖a‖²+‖b‖²−2a·b.

    The kernels centre rows on the pool mean, then cancellation leaves an
    absolute error of a few ε·(‖a‖² + ‖b‖²) in each squared distance. It only
    matters where the distance itself is ~0 (duplicated points), where no
    relative tolerance can hold.
    """
    x = np.asarray(x, np.float64)
    sq = ((x - x.mean(0)) ** 2).sum(1)
    return 8 * EPS32 * (sq + sq.max())


def close_sq(got, want, err, rtol=1e-5):
    """|got² − want²| <= 2·rtol·want² + err: ``rtol`` relative on distances, plus the
    expansion's absolute floor on squared distances (see :func:`expansion_error`)."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    return np.abs(got**2 - want**2) <= 2 * rtol * want**2 + err


def check_mining(x, y, d_p, d_n, margin=MARGIN):
    """d_p within tolerance everywhere; d_n equal to the reference except at near-ties.

    The semi-hard set {n : D(a,n) > d_p(a)} changes only when a negative's
    distance sits within float32 rounding of the threshold d_p(a): the kernel
    may then count that negative on the other side. At such anchors (some
    negative within 1e-4 relative, plus the absolute floor, of d_p in squared
    distance) we accept any value a threshold inside that band could give: a
    negative in the band, the nearest negative above the band, or the farthest
    negative (the fallback). Everywhere else d_n must match the reference.
    """
    rp, rn = ref_mine(x, y, margin)
    err = expansion_error(x)
    assert close_sq(d_p, rp, err).all(), np.abs(d_p - rp).max()
    d = ref_distances(x)
    for a in np.flatnonzero(~close_sq(d_n, rn, err)):
        negs = d[a, y != y[a]]
        assert negs.size, (a, d_n[a], rn[a])
        band = np.abs(negs**2 - rp[a] ** 2) <= 1e-4 * rp[a] ** 2 + err[a]
        assert band.any(), f"anchor {a}: d_n={d_n[a]} vs {rn[a]} with no near-tie"
        above = negs[~band & (negs > rp[a])]
        allowed = np.concatenate(
            [negs[band], above.min(keepdims=True) if above.size else [], [negs.max()]]
        )
        assert close_sq(d_n[a], allowed, err[a]).any(), (a, d_n[a], allowed)


def make_pool(n, e, seed, n_dupes=0):
    """Sparse labels (5 classes, one big), one singleton class, optional duplicated rows."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, e)).astype(np.float32) + 3.0  # a common offset
    y = rng.choice(5, size=n, p=[0.7, 0.15, 0.1, 0.03, 0.02])
    if n > 2:
        y[n // 2] = 9  # a class with one member
    for i in range(min(n_dupes, n // 4)):
        x[n - 1 - i] = x[i]  # exact ties, same or different label
        if i % 2:
            y[n - 1 - i] = y[i]
    return x, y


# ----------------------------------------------------------------------------- global mining
@pytest.mark.parametrize(
    "n,e,tiles",
    [(1, 3, {}), (2, 5, {}), (37, 7, SMALL_TILES), (301, 16, SMALL_TILES), (1007, 4, {})],
)
def test_global_matches_reference(mesh8, n, e, tiles):
    x, y = make_pool(n, e, seed=n, n_dupes=6)
    d_p, d_n = triplet.mine_global(x, y, mesh=mesh8, margin=MARGIN, **tiles)
    assert d_p.dtype == np.float32 and d_p.shape == d_n.shape == (n,)
    check_mining(x, y, d_p, d_n)


def test_global_single_label_has_no_negatives(mesh8):
    x, _ = make_pool(53, 6, seed=1)
    y = np.full(53, 4)
    d_p, d_n = triplet.mine_global(x, y, mesh=mesh8, margin=0.5, **SMALL_TILES)
    check_mining(x, y, d_p, d_n, margin=0.5)
    np.testing.assert_array_equal(triplet.triplet_scores(d_p, d_n, 0.5), np.zeros(53, np.float32))


def test_global_and_minibatch_same_on_1_and_8_devices(mesh1, mesh8):
    x, y = make_pool(301, 9, seed=7, n_dupes=4)
    for tiles in ({}, SMALL_TILES):
        one = triplet.mine_global(x, y, mesh=mesh1, **tiles)
        eight = triplet.mine_global(x, y, mesh=mesh8, **tiles)
        np.testing.assert_array_equal(one, eight)
    one = triplet.mine_minibatch(x, y, mesh=mesh1, chunk_size=50, seed=3)
    eight = triplet.mine_minibatch(x, y, mesh=mesh8, chunk_size=50, seed=3)
    np.testing.assert_array_equal(one, eight)


def test_anchor_rows_slice_equals_full(mesh8):
    x, y = make_pool(200, 5, seed=11)
    full = triplet.mine_global(x, y, mesh=mesh8, **SMALL_TILES)
    rows = np.array([199, 0, 57, 57, 120])
    part = triplet.mine_global(x, y, mesh=mesh8, anchor_rows=rows, **SMALL_TILES)
    np.testing.assert_array_equal(part[0], full[0][rows])
    np.testing.assert_array_equal(part[1], full[1][rows])


def test_global_does_not_retrace(mesh8):
    x, y = make_pool(97, 6, seed=2)
    triplet.mine_global(x, y, mesh=mesh8, **SMALL_TILES)
    size = triplet._mine_global_jit._cache_size()
    rng = np.random.default_rng(5)
    x2 = rng.standard_normal(x.shape).astype(np.float32)
    y2 = rng.permutation(y)
    triplet.mine_global(x2, y2, mesh=mesh8, margin=0.7, **SMALL_TILES)
    assert triplet._mine_global_jit._cache_size() == size
    triplet.mine_minibatch(x, y, mesh=mesh8, chunk_size=16, seed=0)
    size = triplet._mine_minibatch_jit._cache_size()
    triplet.mine_minibatch(x2, y2, mesh=mesh8, chunk_size=16, seed=1, margin=0.3)
    assert triplet._mine_minibatch_jit._cache_size() == size


@settings(max_examples=20, deadline=None)
@given(
    n=st.sampled_from([3, 12, 29]),
    e=st.sampled_from([1, 3]),
    classes=st.integers(1, 4),
    seed=st.integers(0, 2**31 - 1),
)
def test_global_property_small_integer_grids(mesh8, n, e, classes, seed):
    # Small integer coordinates: many exactly equal distances and duplicated points.
    rng = np.random.default_rng(seed)
    x = rng.integers(-2, 3, size=(n, e)).astype(np.float32)
    y = rng.integers(0, classes, size=n)
    d_p, d_n = triplet.mine_global(x, y, mesh=mesh8, anchor_tile=8, pool_tile=8)
    check_mining(x, y, d_p, d_n)
    assert (d_p >= 0).all() and np.isfinite(d_n).all()


# ----------------------------------------------------------------------------- minibatch mining
def _chunks(n, chunk, seed):
    ids = triplet.chunk_ids(n, chunk, seed)
    return [np.flatnonzero(ids == c) for c in range(ids.max() + 1)]


@pytest.mark.parametrize("n,chunk", [(1, 1024), (37, 1024), (301, 64), (1007, 100)])
def test_minibatch_is_reference_per_chunk(mesh8, n, chunk):
    x, y = make_pool(n, 5, seed=n + 1, n_dupes=4)
    d_p, d_n = triplet.mine_minibatch(x, y, mesh=mesh8, chunk_size=chunk, seed=42, margin=MARGIN)
    for rows in _chunks(n, chunk, 42):
        check_mining(x[rows], y[rows], d_p[rows], d_n[rows])


@pytest.mark.parametrize(
    "n,chunk", [(1, 5), (7, 2), (301, 64), (1007, 100), (1024, 1024), (1025, 1024)]
)
def test_chunks_are_balanced(n, chunk):
    sizes = triplet.chunk_sizes(n, chunk)
    assert sizes.size == -(-n // chunk) and sizes.sum() == n
    assert sizes.max() - sizes.min() <= 1 and sizes.max() <= chunk
    # chunk_ids follows the same permutation: consecutive runs of it, sizes in order.
    perm = np.random.default_rng(9).permutation(n)
    ids = triplet.chunk_ids(n, chunk, 9)
    np.testing.assert_array_equal(ids[perm], np.repeat(np.arange(sizes.size), sizes))


def test_minibatch_last_chunk_is_not_short(mesh8):
    # 1025 rows in chunks of <= 1024: two chunks of 513 and 512, not 1024 + 1. With one
    # lone row in a chunk of its own it would have no positive and no negative at all.
    x, y = make_pool(1025, 3, seed=4)
    y[:] = np.arange(1025) % 2
    d_p, d_n = triplet.mine_minibatch(x, y, mesh=mesh8, chunk_size=1024, seed=0)
    assert triplet.has_triplet(y, triplet.chunk_ids(1025, 1024, 0)).all()
    assert (d_p > 0).all()


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(1, 40),
    classes=st.integers(1, 4),
    groups=st.integers(1, 5),
    seed=st.integers(0, 999),
)
def test_has_triplet_matches_brute_force(n, classes, groups, seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, n) * 7 - 3  # any integers
    g = rng.integers(0, groups, n)
    want = [
        any(g[j] == g[a] and y[j] == y[a] and j != a for j in range(n))
        and any(g[j] == g[a] and y[j] != y[a] for j in range(n))
        for a in range(n)
    ]
    np.testing.assert_array_equal(triplet.has_triplet(y, g), want)
    if groups == 1:
        np.testing.assert_array_equal(triplet.has_triplet(y), want)


def test_minibatch_chunks_without_negatives(mesh8):
    x, _ = make_pool(90, 4, seed=3)
    y = np.zeros(90, int)
    y[[5, 40]] = 1  # most chunks of 8 hold one label only
    d_p, d_n = triplet.mine_minibatch(x, y, mesh=mesh8, chunk_size=8, seed=0, margin=MARGIN)
    for rows in _chunks(90, 8, 0):
        check_mining(x[rows], y[rows], d_p[rows], d_n[rows])
    assert (triplet.triplet_scores(d_p, d_n, MARGIN) == 0).sum() >= 60


def test_triplet_scores_hinge():
    s = triplet.triplet_scores(np.array([1.0, 0.0]), np.array([0.5, 2.0]), 0.2)
    np.testing.assert_allclose(s, [0.7, -1.8], rtol=1e-6)
    np.testing.assert_allclose(triplet.triplet_scores([1.0, 0.0], [0.5, 2.0], 0.2, True), [0.7, 0])


# ----------------------------------------------------------------------------- training loss
def ref_batch_loss(x, y, valid, margin):
    d = ref_distances(x)
    losses = []
    for a in np.flatnonzero(valid):
        pos = (y == y[a]) & valid
        pos[a] = False
        neg = (y != y[a]) & valid
        if not (pos.any() and neg.any()):
            continue
        dp = d[a, pos].max()
        semi = d[a, neg][d[a, neg] > dp]
        dn = semi.min() if semi.size else d[a, neg].max()
        losses.append(max(0.0, margin + dp - dn))
    return float(np.mean(losses)) if losses else 0.0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_batch_triplet_loss_matches_reference_with_finite_grads(seed):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((24, 5)) * 0.5).astype(np.float32)
    y = rng.integers(0, 3, 24)
    valid = rng.random(24) > 0.2
    x[3] = x[4]  # duplicated points: sqrt at 0 must not poison the gradient
    y[3] = y[4]
    x[7] = x[8]
    loss = triplet.batch_triplet_loss(x, y, valid, 1.0)
    np.testing.assert_allclose(float(loss), ref_batch_loss(x, y, valid, 1.0), rtol=1e-5, atol=1e-6)
    grad = jax.grad(triplet.batch_triplet_loss)(jnp.asarray(x), y, valid, 1.0)
    assert np.isfinite(np.asarray(grad)).all() and np.abs(np.asarray(grad)).sum() > 0
    assert not np.asarray(grad)[~valid].any()  # padding rows get no gradient


def test_batch_triplet_loss_without_triplets_is_zero():
    x = np.ones((6, 3), np.float32)  # all duplicates
    for y, valid in [(np.zeros(6, int), np.ones(6, bool)), (np.arange(6), np.zeros(6, bool))]:
        loss, grad = jax.value_and_grad(triplet.batch_triplet_loss)(jnp.asarray(x), y, valid)
        assert float(loss) == 0.0 and np.isfinite(np.asarray(grad)).all()
    y = np.array([0, 0, 1, 1, 0, 1])
    grad = jax.grad(triplet.batch_triplet_loss)(jnp.asarray(x), y, np.ones(6, bool))
    assert np.isfinite(np.asarray(grad)).all()


# ----------------------------------------------------------------------------- top-k
@pytest.mark.parametrize("n", [1, 2, 37, 301, 1007])
def test_top_k_matches_stable_argsort(mesh1, mesh8, n):
    rng = np.random.default_rng(n)
    s = rng.integers(0, 7, n).astype(np.float32)  # many exact ties
    s[rng.random(n) < 0.1] = -np.inf
    for k in sorted({1, n // 3, n - 1, n} - {0}):
        want = np.argsort(-s, kind="stable")[:k]
        for mesh in (None, mesh1, mesh8):
            got = triplet.top_k(s, k, mesh=mesh)
            assert got.dtype == np.int64
            np.testing.assert_array_equal(got, want)


def test_top_k_float64_nan_and_signed_zero(mesh8):
    s = np.array([0.0, -0.0, np.nan, 1.0, 1.0 + 1e-12, 1.0, -1e300, np.inf, -0.0, np.nan])
    for k in range(len(s) + 1):
        np.testing.assert_array_equal(
            triplet.top_k(s, k, mesh=mesh8), np.argsort(-s, kind="stable")[:k]
        )


# ----------------------------------------------------------------------------- distances
def test_sq_distances_and_tile_fold():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((5, 4)).astype(np.float32)
    b = rng.standard_normal((11, 4)).astype(np.float32)
    want = ((a[:, None].astype(np.float64) - b[None]) ** 2).sum(-1)
    np.testing.assert_allclose(distances.sq_distances(a, b), want, rtol=1e-5, atol=1e-5)
    # A clamped last tile overlaps: `fresh` keeps sums exact, max ignores the overlap.
    total, biggest = distances.fold_pool_tiles(
        lambda c, rows, ids, fresh: (
            c[0] + jnp.where(fresh, rows[0], 0).sum(),
            jnp.maximum(c[1], rows[0].max()),
        ),
        (jnp.float32(0), jnp.float32(-1)),
        (jnp.arange(11, dtype=jnp.float32),),
        tile=4,
    )
    assert float(total) == 55.0 and float(biggest) == 10.0
