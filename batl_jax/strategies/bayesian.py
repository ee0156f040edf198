"""BALD and BatchBALD (Kirsch et al. 2019) on consistent MC-dropout predictions of the pool.

BatchBALD's joint entropy multiplies ``p_{b_i}[k, y_i]`` over the batch for one parameter
draw ``ω_k``, so pass ``k`` must use the same dropout mask for every pool row (the paper's
consistent MC dropout): with a mask per row, two copies of one sentence look like two
independent pieces of evidence and the batch keeps both. :class:`MCDropout` draws, per
pass, one keep-mask for each of the head's two dropout positions and applies it to every
row's ``s(x)`` from the round's deterministic pass (README, method decisions: BatchBALD).

``bald.dropout_scope = all`` (dropout in the encoder too) is refused: the encoder's
dropout draws an independent mask per row and token, which BatchBALD cannot use.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from batl_jax import sharding
from batl_jax.errors import ConfigError
from batl_jax.kernels.batchbald import bald_select, batchbald_select
from batl_jax.model.classifier import head_dropout_key, head_weights, masked_head_logits
from batl_jax.strategies.base import (
    FeatureContext,
    FeatureValue,
    Selection,
    SelectionInput,
    register,
)


@functools.partial(jax.jit, static_argnames=("rate",))
def _mc_chunk(weights, s, key_data, *, rate: float):
    """``(K, B, C)`` logits of ``K`` passes over one chunk of rows; pass ``k``'s masks come
    from ``key_data[k]`` alone, so every chunk (and every row) sees the same masks."""
    keep = 1.0 - rate
    d = s.shape[1]

    def one_pass(kd):
        key = jax.random.wrap_key_data(kd)
        keep_s = jax.random.bernoulli(jax.random.fold_in(key, 0), keep, (d,))
        keep_h = jax.random.bernoulli(jax.random.fold_in(key, 1), keep, (d,))
        # One (B, d) hidden state at a time: lax.map runs the passes in sequence.
        return masked_head_logits(weights, s, keep_s, keep_h, rate)

    return jax.lax.map(one_pass, key_data)


def consistent_mc_logits(
    weights, sentence: np.ndarray, base_key, samples: int, rate: float, mesh, chunk: int
) -> np.ndarray:
    """``(samples, N, C)`` head logits of ``sentence`` rows under one dropout mask per pass
    (pass ``k``'s masks from ``fold_in(base_key, k)``), rows row-sharded over ``mesh`` in
    padded chunks of ``chunk`` rows (one compiled shape)."""
    n = sentence.shape[0]
    chunk = sharding.padded_size(min(chunk, max(n, 1)), sharding.num_shards(mesh))
    keys = jax.vmap(lambda k: jax.random.fold_in(base_key, k))(jnp.arange(samples))
    key_data = sharding.put_replicated(np.asarray(jax.random.key_data(keys)), mesh)
    weights = sharding.put_tree(jax.device_get(weights), sharding.replicated(mesh))
    out = []
    for start in range(0, n, chunk):
        rows = sharding.pad_rows(np.asarray(sentence[start : start + chunk], np.float32), chunk)
        s = sharding.put_global(rows, sharding.row_sharded(mesh))
        z = _mc_chunk(weights, s, key_data, rate=float(rate))
        out.append(sharding.to_host(z)[:, : min(chunk, n - start)])
    return np.concatenate(out, axis=1).astype(np.float32)


@dataclasses.dataclass(frozen=True)
class MCDropout:
    """``(K, N, C)`` logits of ``samples`` consistent MC-dropout passes of the round's head
    over the pool's ``s(x)`` (train mode head or full: the head's dropout either way)."""

    samples: int
    name: str = "mc_logits"
    static: bool = False
    pass_keys: tuple[str, ...] = ("sentence",)

    def compute(self, ctx: FeatureContext, fit, have) -> FeatureValue:
        logits = consistent_mc_logits(
            head_weights(fit.params),
            have["sentence"],
            head_dropout_key(fit.rest),
            self.samples,
            float(ctx.factory.dropout),
            ctx.mesh,
            ctx.batch_size,
        )
        return FeatureValue(logits)


def _features(section) -> tuple[MCDropout]:
    if section.dropout_scope != "head":
        raise ConfigError(
            f"bald.dropout_scope={section.dropout_scope} is not supported: the encoder's "
            "dropout draws a mask per row, not one per MC pass; use bald.dropout_scope=head"
        )
    return (MCDropout(int(section.mc_samples)),)


def _mc_probs(inp: SelectionInput) -> np.ndarray:
    z = inp.pool["mc_logits"].astype(np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    p = np.exp(z)
    return (p / p.sum(axis=-1, keepdims=True)).astype(np.float32)


def _candidates(inp: SelectionInput) -> np.ndarray:
    m = np.zeros(inp.pool.num_rows, dtype=bool)
    m[inp.unlabeled] = True
    return m


@register("bald", features=_features, config_section="bald")
def select_bald(inp: SelectionInput, k: int) -> Selection:
    """Top-k single-sample mutual information between prediction and model parameters."""
    picks, scores = bald_select(_mc_probs(inp), _candidates(inp), k)
    return Selection(indices=picks, scores={"bald": scores})


@register("batchbald", features=_features, config_section="bald")
def select_batchbald(inp: SelectionInput, k: int) -> Selection:
    """Greedy joint mutual information: exact while C^n ≤ ``bald.max_configs``, sampled beyond."""
    cfg = inp.config
    picks, scores = batchbald_select(
        _mc_probs(inp),
        _candidates(inp),
        k,
        key=jax.random.key(inp.seed),
        max_configs=cfg.max_configs,
        num_samples=cfg.num_samples,
        mesh=inp.mesh,
    )
    return Selection(indices=picks, scores={"joint_mutual_information": scores})
