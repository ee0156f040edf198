"""Fit an MLM head on a frozen encoder, for ALPS on checkpoints that ship none.

:func:`fit_mlm_head` exists for checkpoints without an MLM head (sentence encoders
such as MiniLM). It is a documented deviation from ALPS: the head's transform and
decoder bias are fitted on the pool text with the encoder frozen.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
from typing import Any, cast

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from tqdm.auto import tqdm

from batl_jax import data, sharding
from batl_jax.model.bert import BertConfig, BertEncoder, BertMLMHead
from batl_jax.strategies.alps.surprisal import (
    check_mask_prob,
    choose_positions,
    eligible_positions,
    max_positions,
    replace_tokens,
    target_ids,
    token_ce,
)


def _decay_mask(params):
    """Weight decay on dense kernels only (BERT's convention: none on biases/LayerNorm)."""
    return jax.tree_util.tree_map_with_path(
        lambda path, _: "kernel" in jax.tree_util.keystr(path), params
    )


@functools.lru_cache(maxsize=8)
def _fit_optimizer(weight_decay: float) -> optax.GradientTransformation:
    """AdamW with the learning rate in the state (cached, so one compiled step serves
    every call with the same graph)."""
    return optax.inject_hyperparams(optax.adamw)(
        learning_rate=1e-3, weight_decay=weight_decay, mask=_decay_mask
    )


@functools.partial(jax.jit, static_argnums=(0, 1, 2))
def _fit_step(
    enc_gd,
    head_gd,
    weight_decay,
    head_params,
    opt_state,
    enc_params,
    enc_rest,
    head_rest,
    ids,
    mask,
    pos,
    tgt,
):
    """One AdamW step on the MLM head; the encoder is frozen."""
    encoder = nnx.merge(enc_gd, enc_params, enc_rest)
    # The encoder's outputs are inputs to the loss, not functions of the parameters
    # being differentiated: no backward pass through it.
    hidden = jax.lax.stop_gradient(encoder(ids, mask, deterministic=True))
    h = jnp.take_along_axis(hidden, jnp.maximum(pos, 0)[..., None], axis=1)
    word = jax.lax.stop_gradient(encoder.embeddings.word_embeddings.embedding[...])
    weight = (pos >= 0).astype(jnp.float32)

    def loss_fn(hp):
        head = nnx.merge(head_gd, hp, head_rest)
        ce = token_ce(head(h, word).astype(jnp.float32), tgt)
        return jnp.sum(ce * weight) / jnp.maximum(jnp.sum(weight), 1.0)

    loss, grads = jax.value_and_grad(loss_fn)(head_params)
    updates, opt_state = _fit_optimizer(weight_decay).update(grads, opt_state, head_params)
    return optax.apply_updates(head_params, updates), opt_state, loss


def fit_mlm_head(
    encoder: BertEncoder,
    mlm_head: BertMLMHead | None,
    config: BertConfig,
    enc: data.Encoded,
    rows: np.ndarray,
    *,
    special_ids,
    mask_token_id: int,
    mesh,
    steps: int,
    batch_size: int = 32,
    lr: float = 1e-3,
    seed: int = 0,
    buckets,
    mask_prob: float = 0.15,
    weight_decay: float = 0.01,
) -> tuple[BertMLMHead, dict]:
    """Fit an MLM head's transform (dense + LayerNorm) and decoder bias on ``rows`` of
    ``enc``, the encoder frozen and the decoder tied to its word embeddings.

    The objective is BERT's masked LM: each step takes a batch of ``batch_size`` rows
    (seeded epochs over ``rows``), masks ``mask_prob`` of each row's non-special
    tokens (at least 1; 80 % ``[MASK]`` / 10 % random / 10 % unchanged, drawn from
    ``np.random.default_rng(seed)``) and minimises the mean cross-entropy over the
    masked positions, with logits computed only there. AdamW with constant ``lr``.

    ``mlm_head=None`` starts from a fresh head (``BertMLMHead(config)`` seeded by
    ``seed``, vocabulary taken from the encoder's embedding table).

    Returns the fitted head and the deviation record for the run files:
    ``{"alps_mlm_head": "fitted", "fit_steps", "final_loss", "initial_loss", "lr",
    "batch_size", "seed", "start"}``.
    """
    check_mask_prob(mask_prob)
    vocab = int(encoder.embeddings.word_embeddings.embedding.shape[0])
    mlm_head, start = _initial_head(encoder, mlm_head, config, seed, vocab)
    shards = sharding.num_shards(mesh)
    batch_size = -(-batch_size // shards) * shards
    rows = np.asarray(rows, np.int64)
    info = {
        "alps_mlm_head": "fitted",
        "fit_steps": 0,
        "final_loss": float("nan"),
        "initial_loss": float("nan"),
        "lr": float(lr),
        "batch_size": int(batch_size),
        "seed": int(seed),
        "start": start,
    }
    if steps <= 0 or len(rows) == 0:
        return mlm_head, info

    (enc_gd, head_gd), head_params, opt_state, frozen = _device_state(
        encoder, mlm_head, mesh, lr, float(weight_decay)
    )
    step_fn = functools.partial(_fit_step, enc_gd, head_gd, float(weight_decay))
    rng = np.random.default_rng(seed)
    batches = _masked_batches(
        enc, rows, batch_size, buckets, rng, mesh, special_ids, mask_prob, mask_token_id, vocab
    )
    losses: list[Any] = []  # device scalars until the one device_get below
    with tqdm(total=steps, desc="fit MLM head", unit="step", leave=False, disable=None) as bar:
        for inputs in itertools.islice(batches, steps):
            head_params, opt_state, loss = step_fn(head_params, opt_state, *frozen, *inputs)
            losses.append(loss)
            bar.update(1)
    losses = [float(x) for x in jax.device_get(losses)]
    fitted = nnx.merge(head_gd, jax.device_get(head_params), jax.device_get(frozen[2]))
    info.update(fit_steps=len(losses), final_loss=losses[-1], initial_loss=losses[0])
    return fitted, info


def _initial_head(
    encoder: BertEncoder, mlm_head: BertMLMHead | None, config: BertConfig, seed: int, vocab: int
) -> tuple[BertMLMHead, str]:
    """The head to fit and where it came from: the checkpoint's, or a fresh one seeded by
    ``seed`` with the encoder's vocabulary."""
    if mlm_head is not None:
        return mlm_head, "checkpoint"
    cfg = dataclasses.replace(config, vocab_size=vocab)
    return BertMLMHead(cfg, rngs=nnx.Rngs(params=seed), dtype=encoder.dtype), "fresh"


def _device_state(
    encoder: BertEncoder, mlm_head: BertMLMHead, mesh, lr: float, weight_decay: float
):
    """Everything :func:`_fit_step` takes, replicated on ``mesh``: the graph defs, the head's
    params, the optimiser state (learning rate ``lr``) and the frozen rest
    ``(encoder params, encoder rest, head rest)``."""
    enc_gd, enc_params, enc_rest = cast(tuple[Any, Any, Any], nnx.split(encoder, nnx.Param, ...))
    head_gd, head_params, head_rest = cast(
        tuple[Any, Any, Any], nnx.split(mlm_head, nnx.Param, ...)
    )
    tx = _fit_optimizer(weight_decay)
    repl = sharding.replicated(mesh)
    frozen = tuple(sharding.put_tree(t, repl) for t in (enc_params, enc_rest, head_rest))
    head_params = sharding.put_tree(head_params, repl)
    opt_state = tx.init(head_params)
    opt_state.hyperparams["learning_rate"] = jnp.asarray(lr, jnp.float32)
    opt_state = sharding.put_tree(opt_state, repl)
    return (enc_gd, head_gd), head_params, opt_state, frozen


def _masked_batches(
    enc, rows, batch_size, buckets, rng, mesh, special_ids, mask_prob, mask_token_id, vocab
):
    """Endless row-sharded step inputs ``(ids, attention mask, positions, targets)``: seeded
    epochs over ``rows``, each batch masked afresh (the caller takes as many as it steps)."""
    put = lambda x: sharding.put_global(x, sharding.row_sharded(mesh))
    while True:
        for batch in data.training_batches(enc, rows, batch_size, buckets, rng):
            ids, pos = _mask_batch(enc, batch, rng, special_ids, mask_prob, mask_token_id, vocab)
            tgt = target_ids(enc.input_ids, batch.rows, pos)
            yield put(ids), put(batch.attention_mask), put(pos), put(tgt.astype(np.int32))


def _mask_batch(enc, batch, rng, special_ids, mask_prob, mask_token_id, vocab):
    """Dynamic BERT masking of one training batch: (replaced ids, positions (B, P))."""
    b, length = batch.input_ids.shape
    lengths = np.where(batch.valid, enc.lengths[np.maximum(batch.rows, 0)], 0)
    elig = eligible_positions(batch.input_ids, lengths, special_ids, enc.pad_id)
    # P per bucket, so short buckets compute fewer logits.
    p = max_positions(mask_prob, length)
    pos = choose_positions(rng.random((b, length)), elig, mask_prob, p)
    ids = replace_tokens(
        batch.input_ids,
        pos,
        rng.random((b, p)),
        rng.random((b, p)),
        mask_token_id=mask_token_id,
        vocab_size=vocab,
    )
    return ids, pos
