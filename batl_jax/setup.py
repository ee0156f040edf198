"""Build a run's parts once: data, task, tokenizer, model factory, feature passes, steps.

:func:`build` reads the config (the only place of the round's machinery that does)
and returns one frozen :class:`Parts`; it checks every setting first and writes
nothing, so a refused run leaves its workdir as it was. A round is then a function of
these parts and the loop state (:mod:`batl_jax.rounds`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from flax import nnx

from batl_jax import data, seeds, sharding, stopping, strategies, tasks, train
from batl_jax.config_checks import check_values
from batl_jax.errors import ConfigError, ModelError
from batl_jax.features import FeaturePasses, PoolContext, default_cache_dir
from batl_jax.model import hf_params
from batl_jax.model.factory import ModelFactory, resolve_model_name


@dataclasses.dataclass(frozen=True)
class TrainRecipe:
    """How each round's model is fitted (``config.train``)."""

    epochs: int
    min_steps: int
    lr: float
    warmup_ratio: float
    from_scratch: bool


@dataclasses.dataclass(frozen=True)
class Parts:
    """Everything a round needs, built once per run by :func:`build`.

    ``cfg`` is kept for the loop's files (config.json, run names); the round reads the
    values below. ``ctx`` holds the feature passes and compiled steps (shared with the
    strategy's features); ``features`` are the strategy's declared pool features.
    """

    cfg: Any
    spec: strategies.StrategySpec
    section: Any
    features: tuple[strategies.Feature, ...]
    dataset: data.Dataset
    task: tasks.Task
    tokenizer: Any
    factory: ModelFactory
    encoded: Mapping[str, data.Encoded]
    buckets: tuple[int, ...]
    train_batch: int
    ctx: PoolContext
    recipe: TrainRecipe
    mesh: Any
    stop_rows: Any  # the stop set: pool rows whose predictions the stopping rule compares
    # al.test_size's evaluation rows: labelled first, never selected or trained on, the
    # test set of a run without a labeled test split (empty otherwise).
    held_out: Any = dataclasses.field(default_factory=lambda: np.zeros(0, np.int64))

    @property
    def steps(self) -> train.Steps:
        return self.ctx.steps

    @property
    def passes(self) -> FeaturePasses:
        return self.ctx.passes

    @property
    def head_mode(self) -> bool:
        return self.ctx.head_mode

    @property
    def pool_rows(self) -> np.ndarray:
        """The rows strategies may select: the train split less the held-out ones."""
        return np.setdiff1d(np.arange(len(self.dataset.train)), self.held_out)


def initial_size(cfg) -> int:
    """``al.initial_size``, where -1 (the default) means ``al.batch_size``."""
    return cfg.al.batch_size if cfg.al.initial_size == -1 else cfg.al.initial_size


def check_config(cfg, spec: strategies.StrategySpec, dataset: data.Dataset) -> None:
    """Refuse inconsistent settings before any work is done (values and ranges first)."""
    check_values(cfg)
    al, pool_size = cfg.al, len(dataset.train)
    init = initial_size(cfg)
    if al.batch_size > pool_size:
        raise ConfigError(
            f"al.batch_size={al.batch_size} is larger than the pool ({pool_size} rows); "
            "lower --config.al.batch_size or raise --config.data.pool_limit"
        )
    if not 0 <= init <= pool_size - al.batch_size:
        raise ConfigError(
            f"al.initial_size={init} must be between 0 and pool size minus "
            f"al.batch_size ({pool_size - al.batch_size}); lower it"
        )
    if init == 0 and spec.needs_trained_model:
        raise ConfigError(
            f"strategy {spec.name!r} needs a trained classifier, but al.initial_size=0; "
            "set --config.al.initial_size>0 or use a cold-start strategy (rand, alps)"
        )
    if al.test_size:
        _check_test_size(al.test_size, dataset, pool_size - al.batch_size - init)
    if al.oracle == "simulated" and (dataset.train.labels < 0).any():
        missing = int((dataset.train.labels < 0).sum())
        raise ConfigError(
            f"the pool has {missing} unlabeled rows, so a simulated oracle cannot reveal "
            "their labels; set --config.al.oracle=human to label them"
        )


def _check_test_size(size: int, dataset: data.Dataset, room: int) -> None:
    """``al.test_size`` draws the evaluation set from the pool: only without a labeled
    test split, and only as many rows as the pool can spare."""
    if len(dataset.test):
        raise ConfigError(
            f"al.test_size={size} draws an evaluation set from the pool, but the data has a "
            f"labeled test split ({len(dataset.test)} rows); set --config.al.test_size=0 "
            "or leave the test split (data.test_file) out"
        )
    labels = dataset.train.labels
    unlabeled = int((labels < 0).sum())
    candidates = unlabeled or len(labels)
    if size > min(candidates, room):
        what = f"{unlabeled} unlabeled rows" if unlabeled else f"{len(labels)} rows"
        raise ConfigError(
            f"al.test_size={size} is more than the pool can spare ({what}, {room} beyond "
            "the initial set and one batch); lower --config.al.test_size"
        )


def _round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


def _factory(cfg, needs: strategies.ModelNeeds, vocab_size: int, num_labels: int):
    return ModelFactory(
        cfg.model.name,
        num_labels,
        pooling=cfg.model.pooling,
        dropout=cfg.train.dropout,
        embed_dim=needs.embed_dim,
        normalize=needs.normalize,
        with_mlm_head=needs.mlm_head,
        mlm_head_optional=needs.mlm_head_optional,
        vocab_size=vocab_size,
        revision=cfg.model.revision,
        dtype=cfg.model.dtype,
    )


def _steps(factory: ModelFactory, with_encoder: bool, mesh, loss, weight_decay) -> train.Steps:
    # One Steps per model graph: every round's model has the same one, so steps compile once.
    probe = factory.classifier(0, with_encoder=with_encoder)
    return train.Steps(nnx.split(probe, nnx.Param, ...)[0], mesh, loss, weight_decay)


def build(cfg, mesh) -> Parts:
    """Check ``cfg`` and build the run's parts (reads data and weights, writes nothing)."""
    spec = strategies.get(cfg.al.strategy)
    check_values(cfg)
    dataset = data.load_dataset(cfg, cfg.seed)
    task = tasks.get_task(cfg, dataset)
    check_config(cfg, spec, dataset)
    section = cfg.get(spec.config_section) if spec.config_section else None
    needs = spec.model(section)

    tokenizer = hf_params.load_tokenizer(resolve_model_name(cfg.model.name))
    base_vocab = len(tokenizer)  # before task tokens (relation markers) are added
    task.prepare_tokenizer(tokenizer)
    factory = _factory(cfg, needs, len(tokenizer), task.num_labels)
    if base_vocab > factory.checkpoint_vocab_size:
        # Token ids past the embedding table would be clamped silently on device.
        raise ModelError(
            f"the tokenizer of {cfg.model.name} has {base_vocab} tokens but the model's "
            f"embedding table has {factory.checkpoint_vocab_size} rows (config.json "
            "vocab_size); put the tokenizer files that belong to this checkpoint in its dir"
        )
    max_len = min(cfg.model.max_len, factory.config.max_position_embeddings)
    buckets = data.check_buckets(cfg.data.buckets, max_len)
    encoded = {
        "train": task.encode(dataset.train, tokenizer, max_len),
        "test": task.encode(dataset.test, tokenizer, max_len),
    }
    shards = sharding.num_shards(mesh)
    head_mode = cfg.train.mode == "head"
    cache_dir = Path(cfg.cache_dir) if cfg.cache_dir else default_cache_dir()
    passes = FeaturePasses(
        encoded,
        buckets,
        _round_up(cfg.train.eval_batch_size, shards),
        cache_dir=cache_dir,
        model_key=factory.identity() if cfg.train.cache_features else "",
    )
    loss = train.LossConfig(
        triplet_weight=needs.triplet_weight, margin=needs.margin, triplet_grad=needs.triplet_grad
    )
    steps = _steps(factory, not head_mode, mesh, loss, cfg.train.weight_decay)
    encoder_steps = _steps(factory, True, mesh, train.LossConfig(), 0.0) if head_mode else steps
    ctx = PoolContext(
        mesh=mesh,
        head_mode=head_mode,
        tokenizer=tokenizer,
        factory=factory,
        encoded=encoded,
        buckets=buckets,
        passes=passes,
        steps=steps,
        encoder_steps=encoder_steps,
        model_key=passes.model_key,
    )
    t = cfg.train
    return Parts(
        cfg=cfg,
        spec=spec,
        section=section,
        features=spec.features(section),
        dataset=dataset,
        task=task,
        tokenizer=tokenizer,
        factory=factory,
        encoded=encoded,
        buckets=buckets,
        train_batch=_round_up(t.batch_size, shards),
        ctx=ctx,
        recipe=TrainRecipe(t.epochs, t.min_steps, t.lr, t.warmup_ratio, t.from_scratch),
        mesh=mesh,
        stop_rows=stopping.stop_set(len(dataset.train), cfg.al.stop_set_size, cfg.seed),
        held_out=seeds.evaluation_rows(dataset.train.labels, cfg.al.test_size, cfg.seed),
    )
