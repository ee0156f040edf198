"""ALPS: surprisal embeddings vs a PyTorch reference, positions, meshes, MLM-head fit, strategy."""

from __future__ import annotations

import dataclasses
import math

import jax
import numpy as np
import pytest

from batl_jax import config as base
from batl_jax import data, strategies
from batl_jax.features import PoolFeatures
from batl_jax.model import hf_params
from batl_jax.strategies.alps import mlm_fit, surprisal
from batl_jax.strategies.base import SelectionInput
from tests.tiny_bert import save_tiny_bert

TEXTS = [
    "the cat sat on the mat .",
    "active learning picks the most useful examples to label first",
    "hi",
    "surprisal embeddings come from a masked language model head and are clustered "
    "with k - means so that the picked sentences are diverse and surprising",
    "bert",
    "a b c d e f g h i j k l m n o p",
    "cold start",
    "language models are few - shot learners , or so they say",
    "",  # [CLS] [SEP] only: no position, an all-zero embedding
]
MAX_LEN = 24
MASK_PROB = 0.15


@pytest.fixture(scope="module")
def tiny_mlm(tmp_path_factory):
    """(pretrained, tokenizer, encoded, torch model) for a tiny random BertForMaskedLM."""
    import transformers

    path = save_tiny_bert(tmp_path_factory.mktemp("tiny_mlm"), with_mlm_head=True)
    pre = hf_params.load_pretrained(path, with_mlm_head=True)
    tok = hf_params.load_tokenizer(str(path))
    enc = data.encode_texts(TEXTS, tok, MAX_LEN)
    ref = transformers.BertForMaskedLM.from_pretrained(path).eval()
    return pre, tok, enc, ref


def _surprisal(tiny, mesh, *, masked, batch_size=8, buckets=(8, 16, 24)):
    pre, tok, enc, _ = tiny
    return surprisal.surprisal_embeddings(
        pre.encoder,
        pre.mlm_head,
        enc,
        special_ids=tok.all_special_ids,
        mesh=mesh,
        buckets=buckets,
        batch_size=batch_size,
        mask_prob=MASK_PROB,
        masked=masked,
        mask_token_id=tok.mask_token_id,
        vocab_size=len(tok),
    )


def _torch_surprisal(ref, enc, input_ids, positions):
    """Per-position CE of the original token from BertForMaskedLM's full logits."""
    import torch

    mask = (np.arange(MAX_LEN)[None, :] < enc.lengths[:, None]).astype(np.int64)
    with torch.no_grad():
        logits = ref(
            input_ids=torch.tensor(input_ids, dtype=torch.long),
            attention_mask=torch.tensor(mask),
        ).logits.double()
    logp = torch.log_softmax(logits, dim=-1).numpy()
    out = np.zeros((len(enc), MAX_LEN))
    for i, j in zip(*np.nonzero(positions >= 0), strict=True):
        p = positions[i, j]
        out[i, p] = -logp[i, p, enc.input_ids[i, p]]
    return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)


@pytest.mark.parametrize("masked", [False, True])
def test_surprisal_matches_torch(tiny_mlm, mesh8, masked):
    pre, tok, enc, ref = tiny_mlm
    got = _surprisal(tiny_mlm, mesh8, masked=masked)
    positions = surprisal.alps_positions(enc, tok.all_special_ids, mask_prob=MASK_PROB)
    ids = enc.input_ids
    if masked:
        ids = surprisal.masked_input_ids(
            enc, positions, mask_token_id=tok.mask_token_id, vocab_size=len(tok)
        )
        assert (ids != enc.input_ids).any()
    want = _torch_surprisal(ref, enc, ids, positions)
    assert got.shape == (len(TEXTS), MAX_LEN) and got.dtype == np.float32
    diff = np.abs(got - want).max()
    print(f"max |jax - torch| (masked={masked}): {diff:.2e}")
    assert diff < 1e-4
    # Zero exactly off the chosen positions; unit norm unless the row has no position.
    chosen = np.zeros_like(got, dtype=bool)
    r, c = np.nonzero(positions >= 0)
    chosen[r, positions[r, c]] = True
    assert (got[~chosen] == 0).all()
    norms = np.linalg.norm(got, axis=1)
    has = (positions >= 0).any(axis=1)
    np.testing.assert_allclose(norms[has], 1.0, atol=1e-5)
    assert not has[-1] and norms[-1] == 0


def test_mesh1_matches_mesh8_and_batching(tiny_mlm, mesh1, mesh8):
    # Different meshes, batch sizes and buckets put every row in a different batch.
    a = _surprisal(tiny_mlm, mesh8, masked=False)
    b = _surprisal(tiny_mlm, mesh1, masked=False, batch_size=4, buckets=(24,))
    diff = np.abs(a - b).max()
    print(f"max |mesh1 - mesh8|: {diff:.2e}")
    assert diff < 1e-5


# ----------------------------------------------------------------------------- positions
SPECIAL = (101, 102, 100, 103)  # [CLS], [SEP], [UNK], [MASK]


def _synthetic(n=3000, max_len=40, seed=0):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(2, max_len + 1, size=n)
    lengths[:5] = [2, 3, 2, max_len, max_len]  # no token, one token, none, full, full
    ids = np.zeros((n, max_len), np.int32)
    for i, length in enumerate(lengths):
        ids[i, :length] = rng.integers(1000, 2000, size=length)
        ids[i, 0], ids[i, length - 1] = 101, 102
        if length > 6 and i % 3 == 0:  # a mid-sentence [SEP] (relation inputs) and [UNK]
            ids[i, length // 2] = 102
            ids[i, 1] = 100
    return data.Encoded(ids, lengths.astype(np.int32), 0)


def test_positions_properties(monkeypatch):
    enc = _synthetic()
    pos = surprisal.alps_positions(enc, SPECIAL, mask_prob=MASK_PROB, seed=0)
    max_len = enc.input_ids.shape[1]
    assert pos.shape == (len(enc), math.ceil(MASK_PROB * max_len)) and pos.dtype == np.int32
    inside = np.arange(max_len)[None, :] < enc.lengths[:, None]
    eligible = inside & ~np.isin(enc.input_ids, SPECIAL) & (enc.input_ids != 0)
    n = eligible.sum(1)
    expect = np.where(n > 0, np.maximum(1, np.floor(MASK_PROB * n + 0.5)), 0)
    np.testing.assert_array_equal((pos >= 0).sum(1), expect)
    assert expect[1] == 1 and expect[0] == 0 and expect[4] == 6
    r, c = np.nonzero(pos >= 0)
    assert eligible[r, pos[r, c]].all()  # never special, pad or past the length
    for row in pos[:200]:  # unique, ascending, -1 only at the end
        real = row[row >= 0]
        assert (np.diff(real) > 0).all() and (row[len(real) :] == -1).all()
    assert abs(expect.sum() / n.sum() - MASK_PROB) < 0.02
    # Spread over the sentence, not biased to its start: full-length rows without
    # mid-sentence specials choose every inner position about equally often.
    full = np.nonzero((enc.lengths == max_len) & (np.arange(len(enc)) % 3 != 0))[0]
    full = np.concatenate([full, np.nonzero(enc.lengths >= 30)[0]])
    sub = pos[full]
    freq = np.bincount(sub[sub >= 0], minlength=max_len)[1:29].astype(float)
    assert freq.min() > 0.4 * freq.mean() and freq.max() < 1.6 * freq.mean()

    # Deterministic, independent of chunking and of the other rows.
    np.testing.assert_array_equal(
        pos, surprisal.alps_positions(enc, SPECIAL, mask_prob=MASK_PROB, seed=0)
    )
    monkeypatch.setattr(surprisal, "_CHUNK_ROWS", 7)
    np.testing.assert_array_equal(
        pos, surprisal.alps_positions(enc, SPECIAL, mask_prob=MASK_PROB, seed=0)
    )
    head = data.Encoded(enc.input_ids[:100].copy(), enc.lengths[:100].copy(), 0)
    np.testing.assert_array_equal(
        pos[:100], surprisal.alps_positions(head, SPECIAL, mask_prob=MASK_PROB, seed=0)
    )
    other = surprisal.alps_positions(enc, SPECIAL, mask_prob=MASK_PROB, seed=1)
    assert (other != pos).any()


def test_masked_input_ids_bert_style():
    enc = _synthetic(n=4000)
    pos = surprisal.alps_positions(enc, SPECIAL, mask_prob=MASK_PROB)
    kw = dict(mask_token_id=103, vocab_size=30522)
    ids = surprisal.masked_input_ids(enc, pos, **kw)
    np.testing.assert_array_equal(ids, surprisal.masked_input_ids(enc, pos, **kw))
    chosen = np.zeros(ids.shape, bool)
    r, c = np.nonzero(pos >= 0)
    chosen[r, pos[r, c]] = True
    np.testing.assert_array_equal(ids[~chosen], enc.input_ids[~chosen])
    new, old = ids[chosen], enc.input_ids[chosen]
    share_mask = (new == 103).mean()
    share_same = (new == old).mean()
    share_random = 1 - share_mask - share_same
    assert abs(share_mask - 0.8) < 0.02 and abs(share_same - 0.1) < 0.015
    assert abs(share_random - 0.1) < 0.015 and new.max() < 30522


# ----------------------------------------------------------------------------- MLM head fit
def test_fit_mlm_head_reduces_loss_and_is_deterministic(tmp_path, mesh8):
    path = save_tiny_bert(tmp_path, with_mlm_head=False)
    with pytest.raises(Exception, match="no MLM head"):
        hf_params.load_pretrained(path, with_mlm_head=True)
    pre = hf_params.load_pretrained(path, with_mlm_head=False)
    tok = hf_params.load_tokenizer(str(path))
    enc = data.encode_texts(TEXTS * 4, tok, MAX_LEN)
    rows = np.arange(len(enc))
    kw = dict(
        special_ids=tok.all_special_ids,
        mask_token_id=tok.mask_token_id,
        mesh=mesh8,
        batch_size=16,
        lr=1e-3,
        seed=3,
        buckets=(24,),
    )

    def fit(steps):
        return mlm_fit.fit_mlm_head(pre.encoder, None, pre.config, enc, rows, steps=steps, **kw)

    positions = surprisal.alps_positions(enc, tok.all_special_ids, mask_prob=MASK_PROB)
    masked = surprisal.masked_input_ids(
        enc, positions, mask_token_id=tok.mask_token_id, vocab_size=len(tok)
    )

    def mlm_loss(head):
        ce = surprisal.position_losses(
            pre.encoder,
            head,
            enc,
            positions,
            mesh=mesh8,
            buckets=(24,),
            batch_size=16,
            input_ids=masked,
        )
        return ce.sum() / (positions >= 0).sum()

    fresh, info0 = fit(0)
    head_a, info_a = fit(12)
    head_b, info_b = fit(12)
    before, after = mlm_loss(fresh), mlm_loss(head_a)
    print(f"MLM loss before {before:.4f} after {after:.4f}; info {info_a}")
    assert after < before - 1e-3
    assert info0["fit_steps"] == 0 and info_a["fit_steps"] == 12
    assert info_a["alps_mlm_head"] == "fitted" and info_a["start"] == "fresh"
    assert info_a["final_loss"] < info_a["initial_loss"]
    assert info_a == info_b
    for a, b in zip(jax.tree.leaves(head_a), jax.tree.leaves(head_b), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


# ----------------------------------------------------------------------------- strategy
def _alps_input(mesh, n=203, labeled=17, seed=5):
    rng = np.random.default_rng(0)
    x = np.abs(rng.normal(size=(n, 16))).astype(np.float32)
    x[rng.random(x.shape) < 0.7] = 0  # sparse, like surprisal vectors
    x[np.arange(n), np.arange(n) % 16] += 0.1  # no duplicate rows
    x[3] = 0  # a row without positions
    x /= np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    feats = PoolFeatures(
        sentence=np.zeros((n, 2), np.float32),
        hidden=np.zeros((n, 2), np.float32),
        logits=np.zeros((n, 2), np.float32),
        extra={"surprisal": x},
    )
    lab = np.sort(rng.choice(n, labeled, replace=False))
    return SelectionInput(
        features=feats,
        unlabeled=np.setdiff1d(np.arange(n), lab),
        labeled=lab,
        labels=np.zeros(n, np.int32),
        seed=seed,
        mesh=mesh,
        config=base.get_config().alps,
    )


def test_alps_strategy(mesh8):
    spec = strategies.get("alps")
    assert not spec.needs_trained_model
    section = base.get_config().alps
    assert [f.name for f in spec.features(section)] == ["surprisal"]
    assert spec.features(section)[0].static and spec.config_section == "alps"
    assert spec.model(section).mlm_head
    inp = _alps_input(mesh8)
    n_unl = len(inp.unlabeled)
    for k in (1, 10, n_unl):
        sel = spec.select(inp, k)
        sel.validate(inp.unlabeled, k)
        sizes = sel.scores["voronoi_size"]
        assert sizes.sum() == n_unl and (sizes >= 1).all()
        again = spec.select(inp, k)
        np.testing.assert_array_equal(sel.indices, again.indices)
    np.testing.assert_array_equal(np.sort(sel.indices), inp.unlabeled)
    # Cold start: nothing labeled.
    cold = dataclasses.replace(inp, labeled=np.zeros(0, np.int64), unlabeled=np.arange(203))
    spec.select(cold, 10).validate(cold.unlabeled, 10)
