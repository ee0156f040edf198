"""Strategies through the registry, against plain NumPy references."""

from __future__ import annotations

import numpy as np
import pytest

from batl_jax import config as base
from batl_jax import strategies
from batl_jax.features import PoolFeatures
from batl_jax.strategies.base import SelectionInput


def _features(n=203, d=12, c=4, e=8, seed=0):
    rng = np.random.default_rng(seed)
    emb = rng.normal(size=(n, e)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    return PoolFeatures(
        sentence=rng.normal(size=(n, d)).astype(np.float32),
        hidden=np.tanh(rng.normal(size=(n, d))).astype(np.float32),
        logits=rng.normal(size=(n, c)).astype(np.float32) * 2,
        extra={"embedding": emb},
    )


def _input(feats, mesh, section=None, labeled=17, seed=5):
    n = feats.num_rows
    lab = np.sort(np.random.default_rng(1).choice(n, labeled, replace=False))
    unl = np.setdiff1d(np.arange(n), lab)
    cfg = base.get_config()
    return SelectionInput(
        features=feats,
        unlabeled=unl,
        labeled=lab,
        labels=np.zeros(n, np.int32),
        seed=seed,
        mesh=mesh,
        config=cfg[section] if section else None,
    )


def _softmax(z):
    z = z.astype(np.float64)
    p = np.exp(z - z.max(1, keepdims=True))
    return p / p.sum(1, keepdims=True)


@pytest.mark.parametrize("k", [1, 10, 186])
def test_entropy_and_conf_match_reference(mesh1, k):
    feats = _features()
    inp = _input(feats, mesh1)
    p = _softmax(feats.logits[inp.unlabeled])
    ent = -(p * np.log(p)).sum(1)
    conf = 1 - p.max(1)
    for name, ref in (("entropy", ent), ("conf", conf)):
        sel = strategies.get(name).select(inp, k)
        sel.validate(inp.unlabeled, k)
        expect = inp.unlabeled[np.argsort(-ref, kind="stable")[:k]]
        np.testing.assert_array_equal(sel.indices, expect)


def test_rand_is_seeded_and_unique(mesh1):
    inp = _input(_features(), mesh1)
    a = strategies.get("rand").select(inp, 50)
    b = strategies.get("rand").select(inp, 50)
    a.validate(inp.unlabeled, 50)
    np.testing.assert_array_equal(a.indices, b.indices)


def _batl_reference(emb, pred, logits, margin, lam):
    """Plain loops over all anchors with the whole set as one batch (global mining)."""
    n = len(pred)
    d = np.sqrt(((emb[:, None, :].astype(np.float64) - emb[None, :, :]) ** 2).sum(-1))
    out = np.empty(n)
    for a in range(n):
        pos = [d[a, j] for j in range(n) if j != a and pred[j] == pred[a]]
        neg = [d[a, j] for j in range(n) if pred[j] != pred[a]]
        dp = max(pos) if pos else 0.0
        if not neg:
            dn = dp + margin
        else:
            semi = [x for x in neg if x > dp]
            dn = min(semi) if semi else max(neg)
        z = logits[a].astype(np.float64)
        target = np.log(np.exp(z - z.max()).sum())  # -log p_max
        out[a] = target + lam * (margin + dp - dn)
    return out


@pytest.mark.parametrize("mesh_name", ["mesh1", "mesh8"])
def test_batl_global_matches_reference(mesh_name, request):
    mesh = request.getfixturevalue(mesh_name)
    feats = _features(n=97)
    inp = _input(feats, mesh, section="batl", labeled=10)
    inp.config.unlock()
    inp.config.mining = "global"
    u = inp.unlabeled
    ref = _batl_reference(
        feats["embedding"][u],
        feats.logits[u].argmax(1),
        feats.logits[u],
        inp.config.margin,
        inp.config.lambda_,
    )
    k = 15
    sel = strategies.get("batl").select(inp, k)
    sel.validate(u, k)
    np.testing.assert_allclose(sel.scores["final"], np.sort(ref)[::-1][:k], rtol=1e-5)
    np.testing.assert_array_equal(sel.indices, u[np.argsort(-ref, kind="stable")[:k]])
    np.testing.assert_allclose(
        sel.scores["final"], sel.scores["target"] + inp.config.lambda_ * sel.scores["triplet"]
    )


def test_batl_minibatch_same_on_one_and_eight_devices(mesh1, mesh8):
    feats = _features(n=333)
    picks = []
    for mesh in (mesh1, mesh8):
        inp = _input(feats, mesh, section="batl")
        inp.config.unlock()
        inp.config.mining_batch = 64
        picks.append(strategies.get("batl").select(inp, 20).indices)
    np.testing.assert_array_equal(picks[0], picks[1])


def test_dal_prefers_rows_far_from_the_labeled_set(mesh1):
    rng = np.random.default_rng(0)
    n, d = 2000, 8
    x = rng.normal(size=(n, d)).astype(np.float32)
    labeled = np.arange(500)
    far = np.arange(1980, 2000)
    x[far] += 6.0  # unlabeled rows unlike anything labeled
    feats = PoolFeatures(sentence=x, hidden=x, logits=np.zeros((n, 2), np.float32))
    cfg = base.get_config()
    # One sub-round: with more, picked far rows join the labeled side and the rest of the
    # far cluster stops looking unlabeled (D-AL's diversity).
    cfg.dal.sub_rounds = 1
    inp = SelectionInput(
        features=feats,
        unlabeled=np.arange(500, n),
        labeled=labeled,
        labels=np.zeros(n, np.int32),
        seed=3,
        mesh=mesh1,
        config=cfg.dal,
    )
    sel = strategies.get("dal").select(inp, 10)
    sel.validate(inp.unlabeled, 10)
    assert np.isin(sel.indices, far).all()
    again = strategies.get("dal").select(inp, 10)
    np.testing.assert_array_equal(sel.indices, again.indices)


def test_dal_sub_rounds_split_the_batch():
    from batl_jax.strategies.dal import dal_select

    rng = np.random.default_rng(1)
    x = rng.normal(size=(400, 6)).astype(np.float32)
    picks, scores = dal_select(
        x,
        np.arange(50),
        np.arange(50, 400),
        7,
        seed=0,
        sub_rounds=3,
        steps=50,
        batch=64,
        hidden=32,
        lr=1e-3,
    )
    assert len(picks) == 7 and len(np.unique(picks)) == 7 and picks.min() >= 50
    assert len(scores) == 7


def test_unknown_strategy_lists_choices():
    from batl_jax.errors import ConfigError

    with pytest.raises(ConfigError, match="batl"):
        strategies.get("nope")


def _kcenter_reference(x, labeled, candidates, k):
    """Plain greedy k-center: recompute every distance at every pick."""
    chosen = []
    for _ in range(k):
        centers = list(labeled) + chosen
        best, best_d = None, -1.0
        for i in candidates:
            if i in chosen:
                continue
            d = min(np.linalg.norm(x[i] - x[j]) for j in centers)
            if d > best_d:
                best, best_d = i, d
        chosen.append(best)
    return np.asarray(chosen)


@pytest.mark.parametrize("mesh_name", ["mesh1", "mesh8"])
def test_coreset_matches_plain_greedy(mesh_name, request):
    feats = _features(n=61, d=5)
    inp = _input(feats, request.getfixturevalue(mesh_name), section="coreset", labeled=7)
    sel = strategies.get("coreset").select(inp, 9)
    sel.validate(inp.unlabeled, 9)
    ref = _kcenter_reference(feats.sentence.astype(np.float64), inp.labeled, inp.unlabeled, 9)
    np.testing.assert_array_equal(sel.indices, ref)


def test_bald_matches_numpy_mutual_information(mesh1):
    rng = np.random.default_rng(2)
    n, c, k_mc = 57, 3, 6
    mc_logits = rng.normal(size=(k_mc, n, c)).astype(np.float32) * 2
    feats = PoolFeatures(
        sentence=np.zeros((n, 2), np.float32),
        hidden=np.zeros((n, 2), np.float32),
        logits=mc_logits.mean(0),
        extra={"mc_logits": mc_logits},
    )
    inp = _input(feats, mesh1, section="bald", labeled=5)
    p = _softmax(mc_logits.reshape(-1, c)).reshape(k_mc, n, c)
    mean = p.mean(0)
    mi = -(mean * np.log(mean)).sum(1) + (p * np.log(p)).sum(2).mean(0)
    ref = inp.unlabeled[np.argsort(-mi[inp.unlabeled], kind="stable")[:8]]
    sel = strategies.get("bald").select(inp, 8)
    np.testing.assert_array_equal(sel.indices, ref)
    # BatchBALD's first pick is the BALD argmax (the joint MI of one sample is its BALD score).
    first = strategies.get("batchbald").select(inp, 3)
    first.validate(inp.unlabeled, 3)
    assert first.indices[0] == ref[0]


def test_badge_picks_are_unique_unlabeled_and_seeded(mesh1, mesh8):
    feats = _features(n=150)
    a = strategies.get("badge").select(_input(feats, mesh1), 12)
    b = strategies.get("badge").select(_input(feats, mesh8), 12)
    a.validate(_input(feats, mesh1).unlabeled, 12)
    np.testing.assert_array_equal(a.indices, b.indices)
    # The first BADGE centre is the row with the largest gradient-embedding norm.
    inp = _input(feats, mesh1)
    p = _softmax(feats.logits[inp.unlabeled])
    p[np.arange(len(p)), p.argmax(1)] -= 1
    norms = np.linalg.norm(p, axis=1) * np.linalg.norm(feats.hidden[inp.unlabeled], axis=1)
    assert a.indices[0] == inp.unlabeled[np.argmax(norms)]
