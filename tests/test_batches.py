"""Training and scoring batches: the bucketed sampler, the random one, and scoring tails."""

import numpy as np
import pytest

from batl_jax import data
from batl_jax.data import encoding
from batl_jax.errors import ConfigError

BUCKETS = (8, 16, 24, 32)


def _encoded(n: int = 203, seed: int = 0) -> data.Encoded:
    rng = np.random.default_rng(seed)
    lengths = rng.integers(2, 33, size=n)
    return data.encode_ids([list(range(1, int(m) + 1)) for m in lengths], 32, 0)


def _old_training_batches(enc, rows, batch_size, buckets, rng):
    """The sampler before train.sampler existed, copied verbatim: "random" must equal it."""
    order = rng.permutation(np.asarray(rows, dtype=np.int64))
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        yield encoding._make_batch(
            enc, chunk, batch_size, data.bucket_for(int(enc.lengths[chunk].max()), buckets)
        )


def _epoch(enc, rows, bs, seed, sampler):
    rng = np.random.default_rng(seed)
    return list(data.training_batches(enc, rows, bs, BUCKETS, rng, sampler=sampler))


def _bucket_of(enc, rows):
    return {data.bucket_for(int(m), BUCKETS) for m in enc.lengths[rows]}


def test_random_sampler_is_the_old_one():
    enc = _encoded()
    rows = np.random.default_rng(1).choice(len(enc), 150, replace=False)
    for seed in (0, 7):
        new = _epoch(enc, rows, 16, seed, "random")
        old = list(_old_training_batches(enc, rows, 16, BUCKETS, np.random.default_rng(seed)))
        assert len(new) == len(old)
        for a, b in zip(new, old, strict=True):
            for field in ("rows", "input_ids", "attention_mask", "valid"):
                np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    # The default stays "random" for callers that do not choose (ALPS' MLM head fit).
    rng = np.random.default_rng(0)
    default = list(data.training_batches(enc, rows, 16, BUCKETS, rng))
    np.testing.assert_array_equal(default[0].rows, _epoch(enc, rows, 16, 0, "random")[0].rows)


@pytest.mark.parametrize("n_rows,bs", [(150, 16), (203, 32), (7, 8), (64, 8)])
def test_bucketed_epoch_covers_every_row_once(n_rows, bs):
    enc = _encoded()
    rows = np.random.default_rng(2).choice(len(enc), n_rows, replace=False)
    batches = _epoch(enc, rows, bs, 3, "bucketed")
    seen = np.concatenate([b.rows[b.valid] for b in batches])
    assert sorted(seen.tolist()) == sorted(rows.tolist())
    # As many batches (optimizer steps) as the random sampler makes.
    assert len(batches) == -(-n_rows // bs)
    for b in batches:
        assert (b.rows[~b.valid] == -1).all() and b.valid.sum() >= 1
        real = b.rows[b.valid]
        assert b.input_ids.shape[1] == data.bucket_for(int(enc.lengths[real].max()), BUCKETS)


def test_bucketed_batches_stay_within_a_bucket():
    enc = _encoded(n=400)
    rows = np.arange(400)
    bs = 16
    batches = _epoch(enc, rows, bs, 0, "bucketed")
    mixed = [b for b in batches if len(_bucket_of(enc, b.rows[b.valid])) > 1]
    # Only the batches made of the buckets' leftovers may span buckets, and only
    # neighbouring ones; every full batch of a bucket is pure.
    per_bucket = np.bincount(np.searchsorted(BUCKETS, enc.lengths[rows]), minlength=len(BUCKETS))
    leftover = int((per_bucket % bs).sum())
    assert len(mixed) <= -(-leftover // bs)
    assert len(batches) - len(mixed) >= int((per_bucket // bs).sum())
    for b in mixed:
        spanned = sorted(_bucket_of(enc, b.rows[b.valid]))
        idx = [BUCKETS.index(x) for x in spanned]
        assert idx == list(range(idx[0], idx[-1] + 1))
    # Fewer padded tokens than random batches of the same rows.
    random = _epoch(enc, rows, bs, 0, "random")
    assert sum(b.input_ids.size for b in batches) < sum(b.input_ids.size for b in random)


def test_bucketed_is_seeded_and_shuffles_across_buckets():
    enc = _encoded(n=400)
    rows = np.arange(400)
    a = _epoch(enc, rows, 16, 5, "bucketed")
    b = _epoch(enc, rows, 16, 5, "bucketed")
    c = _epoch(enc, rows, 16, 6, "bucketed")
    assert all(np.array_equal(x.rows, y.rows) for x, y in zip(a, b, strict=True))
    assert not all(np.array_equal(x.rows, y.rows) for x, y in zip(a, c, strict=True))
    lengths = [x.input_ids.shape[1] for x in a]
    assert lengths != sorted(lengths), "batches must not come bucket by bucket"


def test_unknown_sampler_is_a_config_error():
    enc = _encoded()
    with pytest.raises(ConfigError, match="train.sampler"):
        _epoch(enc, np.arange(10), 4, 0, "sorted")


# ----------------------------------------------------------------------------- scoring tails


def test_tail_sizes_are_bounded_multiples():
    assert encoding.tail_sizes(128, 8) == (128, 64, 32, 16, 8)
    assert encoding.tail_sizes(96, 8) == (96, 48, 24)
    assert encoding.tail_sizes(64, 1) == (64, 32, 16, 8, 4, 2, 1)
    with pytest.raises(ValueError):
        encoding.tail_sizes(20, 8)


def test_scoring_tails_use_a_smaller_batch():
    enc = _encoded(n=300)
    rows = np.arange(300)
    padded = list(data.scoring_batches(enc, rows, 32, BUCKETS))
    tails = list(data.scoring_batches(enc, rows, 32, BUCKETS, tail_multiple=8))
    assert len(tails) == len(padded) == data.num_scoring_batches(enc, rows, 32, BUCKETS)
    for p, t in zip(padded, tails, strict=True):
        np.testing.assert_array_equal(p.rows[p.valid], t.rows[t.valid])
        assert t.input_ids.shape[1] == p.input_ids.shape[1]
        n = int(t.valid.sum())
        assert t.input_ids.shape[0] in encoding.tail_sizes(32, 8)
        assert t.input_ids.shape[0] % 8 == 0 and n <= t.input_ids.shape[0] < max(2 * n, 8 + 1)
    shapes = {t.input_ids.shape for t in tails}
    assert len(shapes) <= len(BUCKETS) * len(encoding.tail_sizes(32, 8))
    assert sum(t.input_ids.size for t in tails) < sum(p.input_ids.size for p in padded)


def test_scoring_outputs_do_not_depend_on_tail_shapes(tmp_path, mesh8):
    """The pool pass with smaller tail batches gives the padded pass's outputs, on 8 devices."""
    from batl_jax import sharding, train
    from batl_jax.features.passes import FeaturePasses
    from batl_jax.model.factory import ModelFactory
    from tests.tiny_bert import save_tiny_bert

    path = save_tiny_bert(tmp_path / "tiny")
    factory = ModelFactory(str(path), 3, pooling="cls", dropout=0.1, embed_dim=0, normalize=False)
    graphdef, params, rest = train.split_model(factory.classifier(0, with_encoder=True))
    steps = train.Steps(graphdef, mesh8, train.LossConfig(), 0.0)
    enc = _encoded(n=150)
    passes = FeaturePasses({"train": enc, "test": enc}, BUCKETS, 64)
    got = passes.run(steps, params, rest, "train", ("sentence", "logits"))
    rows = np.arange(len(enc))
    padded = data.scoring_batches(enc, rows, 64, BUCKETS)
    total = data.num_scoring_batches(enc, rows, 64, BUCKETS)
    want = train.predict(steps, params, rest, padded, total, len(enc), ("sentence", "logits"))
    assert sharding.num_shards(mesh8) == 8
    for key in ("sentence", "logits"):
        assert np.abs(got[key]).sum(1).min() > 0  # every row was scored
        np.testing.assert_allclose(got[key], want[key], rtol=1e-5, atol=1e-5)
