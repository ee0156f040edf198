"""BATL's decisions beyond the paper (README, "Method decisions": BATL) against NumPy
references: the neutral rule for anchors without a triplet, the spaced batch mode and
the training-time triplet loss cut off from the classifier (``triplet_grad``)."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from flax import nnx

from batl_jax import config as base
from batl_jax import strategies, train
from batl_jax.data.encoding import Batch
from batl_jax.features import PoolFeatures
from batl_jax.kernels import spaced, triplet
from batl_jax.model.classifier import SequenceClassifier
from batl_jax.strategies import batl
from batl_jax.strategies.base import SelectionInput


def _cfg(**kw):
    c = base.get_config().batl
    for key, value in kw.items():
        c[key] = value
    return c


# ----------------------------------------------------------------------------- reference
def ref_scores(emb, logits, margin, lam, groups, rule="mean", hinge=False):
    """Plain loops: every anchor mined against its own batch, then the rule for anchors
    without a positive or a negative."""
    pred = logits.argmax(1)
    n = len(pred)
    e = emb.astype(np.float64)
    d = np.sqrt(((e[:, None] - e[None]) ** 2).sum(-1))
    trip, informed = np.empty(n), np.zeros(n, bool)
    for a in range(n):
        mates = [j for j in range(n) if groups[j] == groups[a]]
        pos = [d[a, j] for j in mates if j != a and pred[j] == pred[a]]
        neg = [d[a, j] for j in mates if pred[j] != pred[a]]
        dp = max(pos) if pos else 0.0
        semi = [x for x in neg if x > dp]
        dn = (min(semi) if semi else max(neg)) if neg else dp + margin
        trip[a] = max(0.0, margin + dp - dn) if hinge else margin + dp - dn
        informed[a] = bool(pos) and bool(neg)
    if rule == "mean":
        trip[~informed] = trip[informed].mean() if informed.any() else 0.0
    z = logits.astype(np.float64)
    target = np.log(np.exp(z - z.max(1, keepdims=True)).sum(1))
    return target + lam * trip, trip, informed


def _pool(n, e=6, c=5, seed=0):
    """Unit-norm e(x) and logits with one rare predicted class (rows 3 and n-2 alone)."""
    rng = np.random.default_rng(seed)
    emb = rng.normal(size=(n, e)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    logits = (rng.normal(size=(n, c + 2)) * 2).astype(np.float32)
    logits[:, c:] -= 50.0  # classes c, c+1 predicted only where set below
    logits[3, c] = logits[n - 2, c + 1] = 60.0
    return emb, logits


@pytest.mark.parametrize("mesh_name", ["mesh1", "mesh8"])
@pytest.mark.parametrize("mining,n,chunk", [("global", 61, 1024), ("minibatch", 203, 30)])
@pytest.mark.parametrize("rule,hinge", [("mean", False), ("mean", True), ("paper", False)])
def test_scores_match_reference(mesh_name, mining, n, chunk, rule, hinge, request):
    mesh = request.getfixturevalue(mesh_name)
    emb, logits = _pool(n, seed=n)
    cfg = _cfg(mining=mining, mining_batch=chunk, lone_anchor=rule, hinge=hinge, lambda_=0.7)
    cols = batl.batl_scores(emb, logits, cfg, mesh=mesh, seed=11)
    groups = np.zeros(n) if mining == "global" else triplet.chunk_ids(n, chunk, 11)
    final, trip, informed = ref_scores(emb, logits, cfg.margin, 0.7, groups, rule, hinge)
    assert not informed[[3, n - 2]].any() and informed.sum() > n // 2
    np.testing.assert_array_equal(cols["has_triplet"], informed)
    np.testing.assert_allclose(cols["triplet"], trip, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(cols["final"], final, rtol=1e-5, atol=1e-5)


def test_lone_anchor_is_neither_rewarded_nor_punished(mesh8):
    # Row 3 is the only one predicted as its class and far from every other row:
    # the paper's fallback d_p = 0 gives it m − D(a, nearest negative), far below the rest.
    emb, logits = _pool(101, seed=1)
    emb[3] = -emb.mean(0) / np.linalg.norm(emb.mean(0))  # away from the cloud
    lone = np.zeros(101, bool)
    lone[[3, 99]] = True
    for mining in ("global", "minibatch"):
        cols = batl.batl_scores(emb, logits, _cfg(mining=mining), mesh=mesh8, seed=0)
        others = cols["triplet"][~lone]
        assert cols["triplet"][3] >= others.min()  # the default rule: not far below
        np.testing.assert_allclose(cols["triplet"][lone], others.mean(), rtol=1e-9)
        paper = batl.batl_scores(
            emb, logits, _cfg(mining=mining, lone_anchor="paper"), mesh=mesh8, seed=0
        )
        assert paper["triplet"][3] < others.min() - 0.5  # what the paper's fallback does


def test_anchors_without_negatives_get_the_same_neutral_value(mesh8):
    emb, logits = _pool(90, seed=2)
    one = logits.copy()
    one[:, 0] = 100.0  # every row predicts class 0: no triplet anywhere
    for rule in ("mean", "paper"):
        cols = batl.batl_scores(emb, one, _cfg(lone_anchor=rule), mesh=mesh8, seed=0)
        assert (cols["triplet"] == 0).all()  # both rules: L_final = L_target
        np.testing.assert_array_equal(cols["final"], cols["target"])
    # Chunks of 4 rows with 2 labels: some chunks hold one label, their anchors have no
    # negative; they get the mean of the anchors with a triplet, like lone anchors.
    two = logits.copy()
    two[:, 0] = np.where(np.arange(90) % 9 == 0, 100.0, -100.0)
    two[:, 1] = 50.0
    cols = batl.batl_scores(emb, two, _cfg(mining_batch=4), mesh=mesh8, seed=3)
    inf = cols["has_triplet"].astype(bool)
    assert 0 < inf.sum() < 90
    np.testing.assert_allclose(cols["triplet"][~inf], cols["triplet"][inf].mean(), rtol=1e-9)


def test_config_values_are_checked(mesh1):
    from batl_jax.errors import ConfigError

    emb, logits = _pool(20)
    with pytest.raises(ConfigError, match="lone_anchor"):
        batl.batl_scores(emb, logits, _cfg(lone_anchor="median"), mesh=mesh1, seed=0)
    with pytest.raises(ConfigError, match="batch_mode"):
        batl.select_rows(np.zeros(20), emb, 3, _cfg(batch_mode="kmeans"), mesh=mesh1)
    with pytest.raises(ConfigError, match="triplet_grad"):
        strategies.get("batl").model(_cfg(triplet_grad="head"))


# ----------------------------------------------------------------------------- spaced batches
def ref_spaced(x, rank, k, radius):
    """Plain greedy: best-ranked row at least ``radius`` from every pick, else the
    farthest row (ties: lowest row)."""
    x = x.astype(np.float64)
    picks, gaps = [], []
    min_d = np.full(len(x), np.inf)
    for _ in range(k):
        free = np.ones(len(x), bool)
        free[picks] = False
        ok = free & (min_d >= radius)
        if ok.any():
            i = np.flatnonzero(ok)[np.argmin(rank[ok])]
        else:
            i = np.flatnonzero(free)[np.argmax(min_d[free])]
        picks.append(i)
        gaps.append(min_d[i])
        min_d = np.minimum(min_d, np.sqrt(((x - x[i]) ** 2).sum(1)))
    return np.array(picks), np.array(gaps)


@pytest.mark.parametrize(
    "n,k,radius", [(1, 1, 0.5), (37, 10, 0.0), (37, 37, 0.9), (203, 25, 0.6), (203, 60, 1.3)]
)
def test_spaced_matches_reference_on_1_and_8_devices(mesh1, mesh8, n, k, radius):
    rng = np.random.default_rng(n + k)
    x = rng.normal(size=(n, 5)).astype(np.float32)
    x[n // 2 :: 7] = x[0]  # duplicates of one row
    rank = rng.permutation(n)
    want, want_gaps = ref_spaced(x, rank, k, radius)
    one = spaced.spaced_top_k(x, rank, k, radius, mesh=mesh1)
    eight = spaced.spaced_top_k(x, rank, k, radius, mesh=mesh8)
    np.testing.assert_array_equal(one[0], want)
    np.testing.assert_array_equal(eight[0], want)
    np.testing.assert_array_equal(one[1], eight[1])
    np.testing.assert_allclose(one[1], want_gaps, rtol=1e-4, atol=1e-3)
    if radius == 0:
        np.testing.assert_array_equal(want, np.argsort(rank)[:k])  # plain top-k


def _twin_pool(rows=300, seed=0):
    """``rows`` rows of 5 noisy classes, each present twice (identical e(x) and logits)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(5, 16))
    y = rng.integers(0, 5, rows)
    e = centres[y] + rng.normal(size=(rows, 16)) * 0.8
    e = (e / np.linalg.norm(e, axis=1, keepdims=True)).astype(np.float32)
    logits = (e @ centres.T + rng.normal(size=(rows, 5))).astype(np.float32)
    feats = PoolFeatures(
        sentence=np.zeros((2 * rows, 4), np.float32),
        hidden=np.zeros((2 * rows, 4), np.float32),
        logits=np.concatenate([logits, logits]),
        extra={"embedding": np.concatenate([e, e])},
    )
    return feats, rows


def _twin_pairs(picks, rows):
    return len(np.intersect1d(picks % rows, picks[picks >= rows] - rows))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_spaced_batches_take_one_copy_of_a_duplicated_row(mesh8, seed):
    feats, rows = _twin_pool(seed=seed)
    picks = {}
    for mode in ("topk", "spaced"):
        inp = SelectionInput(
            features=feats,
            unlabeled=np.arange(2 * rows),
            labeled=np.zeros(0, np.int64),
            labels=np.zeros(2 * rows, np.int32),
            seed=seed,
            mesh=mesh8,
            config=_cfg(batch_mode=mode),
        )
        sel = strategies.get("batl").select(inp, 20)
        sel.validate(inp.unlabeled, 20)
        picks[mode] = sel.indices
        if mode == "spaced":
            again = strategies.get("batl").select(inp, 20)
            np.testing.assert_array_equal(again.indices, sel.indices)  # deterministic
            assert (sel.scores["nearest_pick"] > 0).all()
    assert _twin_pairs(picks["topk"], rows) == 10  # every top-k pick comes with its copy
    assert _twin_pairs(picks["spaced"], rows) == 0


def test_spaced_selection_same_on_1_and_8_devices(mesh1, mesh8):
    feats, rows = _twin_pool(rows=157, seed=4)
    got = []
    for mesh in (mesh1, mesh8):
        inp = SelectionInput(
            features=feats,
            unlabeled=np.arange(5, 2 * rows),
            labeled=np.arange(5),
            labels=np.zeros(2 * rows, np.int32),
            seed=2,
            mesh=mesh,
            config=_cfg(batch_mode="spaced", mining_batch=64, spacing=0.5),
        )
        got.append(strategies.get("batl").select(inp, 30).indices)
    np.testing.assert_array_equal(got[0], got[1])


# ----------------------------------------------------------------------------- triplet_grad
def _fit(embed_dim, loss_cfg, mesh, sentence, labels):
    model = SequenceClassifier(
        None, 16, 3, dropout=0.1, embed_dim=embed_dim, rngs=nnx.Rngs(params=0, dropout=1)
    )
    graphdef = nnx.split(model, nnx.Param, ...)[0]
    steps = train.Steps(graphdef, mesh, loss_cfg, weight_decay=0.01)
    n = len(labels)

    def batches(epoch):
        order = np.random.default_rng(epoch).permutation(n)
        for start in range(0, n, 8):
            rows = np.full(8, -1)
            part = order[start : start + 8]
            rows[: len(part)] = part
            empty = np.zeros((8, 1), np.int32)
            yield Batch(rows=rows, input_ids=empty, attention_mask=empty, valid=rows >= 0)

    fit = train.fit(
        model,
        steps,
        batches,
        n,
        labels,
        batch_size=8,
        epochs=4,
        min_steps=1,
        lr=1e-2,
        warmup_ratio=0.1,
        sentence_cache=sentence,
    )
    out = train.predict(
        steps, fit.params, fit.rest, batches(0), -(-n // 8), n, ("logits",), sentence_cache=sentence
    )
    return out["logits"], jax.device_get(nnx.to_pure_dict(fit.params))


def test_embedding_only_trains_the_classifier_exactly_as_without_batl(mesh8):
    rng = np.random.default_rng(0)
    sentence = rng.normal(size=(44, 16)).astype(np.float32)
    labels = rng.integers(0, 3, 44)
    plain, plain_p = _fit(0, train.LossConfig(), mesh8, sentence, labels)
    cut, cut_p = _fit(8, train.LossConfig(1.0, 0.2, "embedding_only"), mesh8, sentence, labels)
    full, _ = _fit(8, train.LossConfig(1.0, 0.2, "all"), mesh8, sentence, labels)
    np.testing.assert_array_equal(cut, plain)  # bitwise: the same classifier
    for name in ("head_dense", "out"):
        jax.tree.map(np.testing.assert_array_equal, cut_p[name], plain_p[name])
    assert np.abs(full - plain).max() > 1e-4  # the paper's loss does change it
    fresh = SequenceClassifier(None, 16, 3, embed_dim=8, rngs=nnx.Rngs(params=0, dropout=1))
    moved = np.abs(cut_p["integrate"]["kernel"] - np.asarray(fresh.integrate.kernel[...]))
    assert moved.max() > 1e-4  # while W_e still learns from the triplet loss
