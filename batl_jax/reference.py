"""Eq. 8's reference classifier: trained once on the full training split, its entropy
per training row scores the uncertainty of every selected batch.

Trained once per (model, data, training recipe) and cached in the feature cache
(``cache_dir/reference/<hash>.npy`` + ``.json``), so every strategy, seed and round of a
study is scored by the same classifier. ``train.mode = head`` trains only the head on
the cached frozen-encoder features: seconds on a CPU. ``train.mode = full`` fine-tunes
the whole model on every training row, as the paper does: as slow as a round of
training on the full split (logged as a warning).
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
import logging
import time
from typing import Any

import numpy as np
from flax import nnx

from batl_jax import analysis, data, rounds, run_files, train
from batl_jax.setup import Parts

log = logging.getLogger(__name__)

# The reference classifier's seed: one reference per dataset and model, whatever the run seed.
SEED = 12345


def epochs(parts: Parts) -> int:
    """``analysis.reference_epochs``, where -1 means ``train.epochs``."""
    e = parts.cfg.analysis.reference_epochs
    return parts.recipe.epochs if e < 0 else e


def cache_key(parts: Parts) -> str:
    """Everything the reference's predictions depend on, besides the token ids."""
    t = parts.cfg.train
    labels = np.ascontiguousarray(parts.dataset.train.labels, dtype=np.int64)
    return "|".join(
        [
            parts.factory.identity(),
            "reference-v1",
            t.mode,
            str(parts.task.num_labels),
            hashlib.sha256(labels.tobytes()).hexdigest()[:16],
            str(epochs(parts)),
            str(t.min_steps),
            str(t.lr),
            str(t.batch_size),
            str(t.warmup_ratio),
            str(t.weight_decay),
            str(t.dropout),
            str(SEED),
        ]
        # Only a non-default order joins the key, so caches made before it existed still hit.
        + ([f"sampler={_sampler(parts)}"] if _sampler(parts) != "random" else [])
    )


def _sampler(parts: Parts) -> str:
    """The batch order (as ``rounds.fit``'s): cached features in head mode have no length."""
    return "random" if parts.head_mode else parts.cfg.train.sampler


def entropy(parts: Parts) -> np.ndarray:
    """``(N,)`` float64 entropies (nats) of the reference classifier per training row."""
    path = parts.passes.cache_path("train", cache_key(parts), "reference")
    if path is not None and path.is_file():
        log.info("analysis: reference classifier entropies loaded from %s", path)
        return np.load(path, allow_pickle=False)
    ent, info = train_reference(parts, path)
    if path is not None:
        parts.passes.save_cached(path, ent)
        run_files.atomic_write_text(path.with_suffix(".json"), json.dumps(info) + "\n")
    return ent


def _steps(parts: Parts, model) -> train.Steps:
    graphdef = nnx.split(model, nnx.Param, ...)[0]
    steps = parts.steps
    if steps.graphdef != graphdef or steps.loss_cfg != train.LossConfig():
        steps = train.Steps(graphdef, parts.mesh, train.LossConfig(), parts.cfg.train.weight_decay)
    return steps


def train_reference(parts: Parts, path=None) -> tuple[np.ndarray, dict]:
    """Fit the reference on every training row; its entropies and a summary of the fit."""
    n, head = len(parts.dataset.train), parts.head_mode
    if head:
        log.info("analysis: training the reference classifier head on all %d rows", n)
    else:
        log.warning(
            "analysis: the uncertainty metric (Eq. 8) needs a reference classifier: "
            "fine-tuning the FULL model on all %d training rows for %d epochs, once "
            "(cached at %s); this costs as much as a round on the whole split. Set "
            "--config.analysis.enabled=False to skip the analysis metrics.",
            n,
            epochs(parts),
            path,
        )
    t0 = time.perf_counter()
    factory = copy.copy(parts.factory)  # shares the host weights; only the head differs
    factory.embed_dim = 0  # no BATL layer: the same reference for every strategy
    model = factory.classifier(SEED, with_encoder=not head)
    steps = _steps(parts, model)
    enc, rec = parts.encoded["train"], parts.recipe
    rng = np.random.default_rng(SEED)
    buckets = (parts.buckets[-1],) if head else parts.buckets
    sampler = _sampler(parts)
    sentence = parts.ctx.model_input("train")
    rows = np.arange(n)
    fit = train.fit(
        model,
        steps,
        lambda epoch: data.training_batches(
            enc, rows, parts.train_batch, buckets, rng, sampler=sampler
        ),
        n,
        parts.dataset.train.labels,
        batch_size=parts.train_batch,
        epochs=epochs(parts),
        min_steps=rec.min_steps,
        lr=rec.lr,
        warmup_ratio=rec.warmup_ratio,
        sentence_cache=sentence,
        desc="reference classifier",
    )
    out = parts.passes.run(steps, fit.params, fit.rest, "train", ("logits",), sentence=sentence)
    ent = analysis.entropy(out["logits"])
    seconds = round(time.perf_counter() - t0, 2)
    info: dict[str, Any] = {"train_rows": n, "steps": fit.steps, "seconds": seconds}
    if len(parts.dataset.test):
        probs = parts.passes.test_probs(steps, fit.params, fit.rest, parts.ctx.model_input("test"))
        info["test"] = parts.task.metrics(probs, parts.dataset.test)
    log.info("analysis: reference classifier trained: %s", info)
    return ent, info


def analyzer(parts: Parts):
    """The per-round analysis metrics (Eqs. 7-9) of the run, or None when disabled."""
    cfg = parts.cfg
    if not cfg.analysis.enabled:
        return None
    if cfg.al.oracle == "human" and (parts.dataset.train.labels < 0).any():
        return None  # the reference classifier trains on every pool label; there are none
    ref = None
    if cfg.al.oracle == "simulated":
        # Only a simulated oracle knows the labels of the whole split (Eq. 8's reference).
        ref = functools.cache(lambda: entropy(parts))
    return rounds.make_analyze(parts, ref)
