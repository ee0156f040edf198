"""batl_jax's side of the ``round`` suite: one round through the library's round functions.

Imported only when the ``round`` suite runs (``benchmarks.round.run``).

The round is what ``batl_jax.loop`` runs, timed phase by phase: :func:`batl_jax.setup.build`
makes the run's parts once (data, tokenizer, model factory, compiled steps), then
``rounds.fit`` trains round 0's model on the labeled rows, ``rounds.pool_features``
makes the one pool pass that yields every feature, ``rounds.select`` picks ``k`` rows
with ENTROPY and with BADGE, and ``rounds.test_probs`` gives the test accuracy.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import jax
import numpy as np

from batl_jax import data, rounds, seeds, setup, sharding, strategies
from batl_jax.config import get_base_config
from benchmarks import inputs
from benchmarks.encoder import head_weights

NUM_LABELS = 4  # AG News
# The strategies timed; the config's (the first) decides which features the pass makes.
STRATEGIES = ("badge", "entropy")


def make_config(args, model_path: str, data_dir: Path, dtype: str = "float32"):
    """The run's config: the package defaults with the suite's sizes and recipe, and
    ``dtype`` as ``model.dtype``."""
    c = get_base_config()
    c.name = "bench_round"
    c.seed = args.seed
    c.model.name = model_path
    c.model.pooling = "cls"  # = BertForSequenceClassification's pooler input
    c.model.max_len = args.max_len
    c.model.dtype = dtype
    c.data.name = "ag_news"
    c.data.dir = str(data_dir)
    c.data.pool_limit = args.pool
    c.data.test_limit = args.test
    c.data.buckets = inputs.parse_buckets(args.buckets)
    c.al.strategy = STRATEGIES[0]
    c.al.batch_size = args.k
    c.al.initial_size = args.labeled
    c.al.rounds = 2
    c.train.mode = "full"
    c.train.epochs = args.epochs
    c.train.min_steps = 0  # exactly epochs x ceil(labeled / batch) steps, as small-text
    c.train.batch_size = args.batch
    c.train.sampler = args.sampler
    c.train.eval_batch_size = args.eval_batch
    c.train.lr = args.lr
    c.train.warmup_ratio = 0.1
    c.train.weight_decay = 0.01
    c.train.dropout = 0.1
    c.train.cache_features = False
    return c


def rows_per_bucket(lengths: np.ndarray, buckets, size: int) -> list[np.ndarray]:
    """Up to ``size`` rows of each length bucket that has any (in row order)."""
    which = np.searchsorted(np.asarray(buckets), lengths, side="left")
    per_bucket = [np.flatnonzero(which == i)[:size] for i in range(len(buckets))]
    return [rows for rows in per_bucket if len(rows)]


class JaxRound:
    """Round 0 of a batl_jax run, one phase per method, from the same parts every time."""

    def __init__(self, cfg):
        self.cfg = cfg
        self.parts = setup.build(cfg, sharding.make_mesh())
        n = len(self.parts.dataset.train)
        self.labels = self.parts.dataset.train.labels
        self.labeled = seeds.initial_labeled(n, cfg.al.initial_size, cfg.seed)
        self.unlabeled = np.setdiff1d(np.arange(n), self.labeled)
        # The same parts with another strategy: ENTROPY reads the logits BADGE's pass made.
        self.selectors = {}
        for name in STRATEGIES:
            spec = strategies.get(name)
            section = cfg.get(spec.config_section) if spec.config_section else None
            self.selectors[name] = dataclasses.replace(self.parts, spec=spec, section=section)

    @property
    def pool_size(self) -> int:
        return len(self.parts.dataset.train)

    @property
    def test_size(self) -> int:
        return len(self.parts.dataset.test)

    def head(self) -> dict:
        """The classifier head round 0 starts from (seeded as ``rounds.fit`` seeds it)."""
        seed = seeds.derive_seed(self.cfg.seed, 0, seeds.MODEL)
        return head_weights(self.parts.factory.classifier(seed, with_encoder=False))

    def warmup(self) -> None:
        """Compile every shape the timed rounds will see: a short fit per length bucket
        (a bucket's rows pad to that bucket whatever the sampler), then a whole pool and
        test pass (every scoring shape, a bucket's last batch included) and each
        strategy's kernel at the pool's size."""
        parts = self.parts
        fit = None
        for rows in rows_per_bucket(
            parts.encoded["train"].lengths, parts.buckets, parts.train_batch
        ):
            fit = rounds.fit(parts, 0, rows, self.labels)
        feats = rounds.pool_features(parts, fit)
        rounds.test_probs(parts, fit)
        for name in STRATEGIES:
            self.select(name, feats)
        jax.effects_barrier()

    def train_shapes(self) -> list[tuple[int, int]]:
        """``(rows, padded length)`` of every training batch :meth:`train` feeds: the
        epochs' batches drawn as ``rounds.fit`` draws them (same seeds, same sampler)."""
        parts, cfg = self.parts, self.cfg
        rng = np.random.default_rng(seeds.derive_seed(cfg.seed, 0, seeds.TRAIN))
        enc, sampler = parts.encoded["train"], rounds.training_sampler(parts)
        shapes = []
        for _ in range(cfg.train.epochs):
            epoch_rng = np.random.default_rng(rng.integers(2**31))
            batches = data.training_batches(
                enc, self.labeled, parts.train_batch, parts.buckets, epoch_rng, sampler=sampler
            )
            shapes += [b.input_ids.shape for b in batches]
        return shapes

    def pool_shapes(self) -> list[tuple[int, int]]:
        """``(rows, padded length)`` of every batch of the pool pass (``FeaturePasses``)."""
        parts = self.parts
        enc = parts.encoded["train"]
        shards = sharding.num_shards(parts.mesh)
        rows = np.arange(len(enc))
        batch = parts.passes.batch_size
        batches = data.scoring_batches(enc, rows, batch, parts.buckets, tail_multiple=shards)
        return [b.input_ids.shape for b in batches]

    def train(self):
        return rounds.fit(self.parts, 0, self.labeled, self.labels)

    def pool_pass(self, fit):
        return rounds.pool_features(self.parts, fit)

    def select(self, name: str, feats) -> np.ndarray:
        parts = self.selectors[name]
        sel = rounds.select(parts, feats, 0, self.labeled, self.unlabeled, self.labels)
        return sel.indices

    def test_accuracy(self, fit) -> float:
        probs = rounds.test_probs(self.parts, fit)
        return float((probs.argmax(1) == self.parts.dataset.test.labels).mean())
