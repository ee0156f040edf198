"""D-AL as its authors' code: U subsample, 3 hidden layers, 98 % epoch-accuracy stop."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from batl_jax.strategies import dal


def test_subsample_is_ten_times_l_seeded_and_redrawn_per_sub_round():
    unl = np.arange(100, 5000)
    a = dal.unlabeled_subsample(unl, 30, seed=4, sub_round=0)
    assert len(a) == 300 and len(np.unique(a)) == 300 and np.isin(a, unl).all()
    assert (np.diff(a) > 0).all()
    np.testing.assert_array_equal(a, dal.unlabeled_subsample(unl, 30, seed=4, sub_round=0))
    assert not np.array_equal(a, dal.unlabeled_subsample(unl, 30, seed=4, sub_round=1))
    assert not np.array_equal(a, dal.unlabeled_subsample(unl, 30, seed=5, sub_round=0))
    # min(10·|L|, |U|): all of a small U; never fewer rows than the sub-round picks.
    np.testing.assert_array_equal(dal.unlabeled_subsample(unl[:50], 30, 4, 0), unl[:50])
    assert len(dal.unlabeled_subsample(unl, 1, 4, 0, at_least=25)) == 25


def _train(x, lab, sub, *, max_steps, batch=32):
    rows = np.zeros(len(x), np.int32)
    rows[: len(lab)], rows[len(lab) : len(lab) + len(sub)] = lab, sub
    params, steps, epochs, acc = dal.train_discriminator(
        jnp.asarray(x),
        jnp.asarray(rows),
        len(lab),
        len(lab) + len(sub),
        jax.random.key(0),
        max_steps=max_steps,
        batch=batch,
        hidden=64,
        lr=1e-3,
    )
    return params, int(steps), int(epochs), float(acc)


def test_stops_after_the_first_epoch_above_98_percent_on_a_separable_set():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(600, 8)).astype(np.float32)
    x[:40] += 8.0  # L far from U': separable
    lab, sub = np.arange(40), np.arange(40, 440)
    params, steps, epochs, acc = _train(x, lab, sub, max_steps=5000)
    per_epoch = -(-440 // 32)
    assert acc > 0.98 and steps == epochs * per_epoch  # stopped at an epoch's end
    assert epochs < 20  # long before the step cap
    assert [len(layer["w"]) for layer in params] == [8, 64, 64, 64]  # 3 hidden layers
    # The same rows from one distribution: no epoch gets there, the cap stops it.
    y = rng.normal(size=(600, 8)).astype(np.float32)
    _, steps, _, acc = _train(y, lab, sub, max_steps=3 * per_epoch)
    assert acc <= 0.98 and steps == 3 * per_epoch


def test_picks_come_from_the_subsample_and_prefer_rows_far_from_l():
    rng = np.random.default_rng(1)
    n, d = 3000, 8
    x = rng.normal(size=(n, d)).astype(np.float32)
    far = np.arange(2800, n)
    x[far] += 6.0  # unlabeled rows unlike anything labeled
    labeled, unlabeled = np.arange(40), np.arange(40, n)
    picks, margin = dal.dal_select(
        x, labeled, unlabeled, 8, seed=2, sub_rounds=1, steps=5000, batch=32, hidden=64, lr=1e-3
    )
    sub = dal.unlabeled_subsample(unlabeled, 40, seed=2, sub_round=0)
    assert len(sub) == 400 and np.isin(picks, sub).all()
    assert np.isin(picks, far).all() and len(np.intersect1d(sub, far)) >= 8
    assert (np.diff(margin) <= 0).all()
