"""Jitted train / feature steps over the device mesh, and the per-round fit.

The model is handled functionally: ``nnx.split`` into a graph definition, the
trainable ``nnx.Param`` state and the rest (dropout RNG counters); steps are
``jax.jit`` functions of those pytrees with parameters replicated, batches sharded
over ``"data"`` and the parameter / optimizer buffers donated.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, cast

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from batl_jax import sharding
from batl_jax.data import Batch
from batl_jax.progress import progress


def make_optimizer(weight_decay: float) -> optax.GradientTransformation:
    """AdamW whose learning rate is a state entry set every step (see :func:`learning_rate`).

    Keeping the schedule outside the jitted step lets one compiled step serve every
    round, whatever its number of steps.
    """
    # No decay on biases and LayerNorm scales (1-D), as in BERT's recipe.
    mask = lambda params: jax.tree.map(lambda x: x.ndim > 1, params)
    return optax.inject_hyperparams(optax.adamw)(
        learning_rate=0.0, weight_decay=weight_decay, mask=mask
    )


def learning_rate(step: int, total: int, peak: float, warmup_ratio: float) -> float:
    """Linear warm-up to ``peak`` over ``warmup_ratio`` of the steps, then linear decay to 0."""
    warmup = max(1, int(round(total * warmup_ratio)))
    if step < warmup:
        return peak * (step + 1) / warmup
    return peak * max(0.0, (total - step) / max(1, total - warmup))


@dataclasses.dataclass(frozen=True)
class LossConfig:
    """The training loss: cross-entropy plus ``triplet_weight`` × BATL's triplet loss on e(x).

    ``triplet_grad``: ``all`` lets the triplet loss reach ``[s; h_C]`` (the classifier and,
    in full mode, the encoder); ``embedding_only`` stops it there, so only the integration
    layer learns from it and the classifier trains as without it (README, "Method
    decisions": BATL).
    """

    triplet_weight: float = 0.0
    margin: float = 0.2
    triplet_grad: str = "all"


def _triplet_embedding(model, outputs, triplet_grad: str):
    if triplet_grad == "all":
        return outputs["embedding"]
    if triplet_grad != "embedding_only":
        raise ValueError(f"triplet_grad={triplet_grad!r}: use 'all' or 'embedding_only'")
    # The classifier's e(x) recomputed from [s; h_C] behind a stop_gradient (same values).
    u = jax.lax.stop_gradient(jnp.concatenate([outputs["sentence"], outputs["hidden"]], -1))
    e = model.integrate(u)
    if model.normalize:
        e = e / jnp.maximum(jnp.linalg.norm(e, axis=-1, keepdims=True), 1e-12)
    return e


def _loss(outputs, labels, valid, loss_cfg: LossConfig, model=None):
    logits = outputs["logits"].astype(jnp.float32)
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
    w = valid.astype(jnp.float32)
    loss = (ce * w).sum() / jnp.maximum(w.sum(), 1.0)
    if loss_cfg.triplet_weight and "embedding" in outputs:
        from batl_jax.kernels.triplet import batch_triplet_loss

        e = _triplet_embedding(model, outputs, loss_cfg.triplet_grad)
        loss = loss + loss_cfg.triplet_weight * batch_triplet_loss(
            e.astype(jnp.float32), labels, valid, loss_cfg.margin
        )
    return loss


class Steps:
    """The jitted steps for one model structure (compiled once per batch shape)."""

    def __init__(self, graphdef, mesh, loss_cfg: LossConfig, weight_decay: float):
        self.graphdef = graphdef
        self.mesh = mesh
        self.loss_cfg = loss_cfg
        self.tx = make_optimizer(weight_decay)
        self.train_step = jax.jit(self._train_step, donate_argnums=(0, 1, 2))
        self.forward = jax.jit(self._forward, static_argnums=(0, 3))

    def init_opt_state(self, params):
        return sharding.put_tree(self.tx.init(params), sharding.replicated(self.mesh))

    def _train_step(self, params, opt_state, rest, batch, labels, valid, lr):
        def loss_fn(p):
            model = nnx.merge(self.graphdef, p, rest, copy=True)
            out = model(batch, deterministic=False)
            loss = _loss(out, labels, valid, self.loss_cfg, model)
            return loss, nnx.state(model, nnx.RngState)

        (loss, new_rest), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        opt_state.hyperparams["learning_rate"] = lr
        updates, opt_state = self.tx.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        return params, opt_state, new_rest, loss

    def _forward(self, keys, params, rest, stochastic, batch):
        model = nnx.merge(self.graphdef, params, rest, copy=True)
        out = model(batch, deterministic=not stochastic)
        return {k: out[k] for k in keys}, nnx.state(model, nnx.RngState)


def split_model(model: nnx.Module):
    graphdef, params, rest = cast(tuple[Any, Any, Any], nnx.split(model, nnx.Param, ...))
    return graphdef, params, rest


def _device_batch(batch: Batch, mesh, sentence_cache: np.ndarray | None):
    put = lambda x: sharding.put_global(x, sharding.row_sharded(mesh))
    if sentence_cache is not None:
        rows = np.where(batch.rows >= 0, batch.rows, 0)
        return {"sentence": put(sentence_cache[rows])}
    return {"input_ids": put(batch.input_ids), "attention_mask": put(batch.attention_mask)}


@dataclasses.dataclass
class FitResult:
    params: nnx.State
    rest: nnx.State
    steps: int
    final_loss: float


def fit(
    model: nnx.Module,
    steps_fn: Steps,
    batches_per_epoch,
    num_rows: int,
    labels: np.ndarray,
    *,
    batch_size: int,
    epochs: int,
    min_steps: int,
    lr: float,
    warmup_ratio: float,
    sentence_cache: np.ndarray | None = None,
    desc: str = "train",
) -> FitResult:
    """Fine-tune ``model`` on ``num_rows`` labeled rows.

    ``batches_per_epoch(epoch)`` yields the epoch's :class:`Batch` es (seeded order);
    ``labels`` are indexed by dataset row. ``sentence_cache`` (head mode) maps dataset
    rows to cached s(x), replacing the encoder input.
    """
    mesh = steps_fn.mesh
    per_epoch = math.ceil(num_rows / batch_size)
    total = max(epochs * per_epoch, min_steps)
    _, params, rest = split_model(model)
    params = sharding.put_tree(params, sharding.replicated(mesh))
    rest = sharding.put_tree(rest, sharding.replicated(mesh))
    opt_state = steps_fn.init_opt_state(params)
    if num_rows == 0:
        return FitResult(params, rest, 0, float("nan"))
    put = lambda x: sharding.put_global(x, sharding.row_sharded(mesh))
    step, loss, epoch = 0, jnp.zeros(()), 0
    with progress(total=total, desc=desc, unit="step") as bar:
        while step < total:
            for batch in batches_per_epoch(epoch):
                if step >= total:
                    break
                inputs = _device_batch(batch, mesh, sentence_cache)
                y = put(
                    np.where(batch.valid, labels[np.maximum(batch.rows, 0)], 0).astype(np.int32)
                )
                lr_now = np.float32(learning_rate(step, total, lr, warmup_ratio))
                params, opt_state, rest, loss = steps_fn.train_step(
                    params, opt_state, rest, inputs, y, put(batch.valid), lr_now
                )
                step += 1
                bar.update(1)
            epoch += 1
    return FitResult(params, rest, step, float(loss))


def predict(
    steps_fn: Steps,
    params,
    rest,
    batches,
    num_batches: int,
    num_rows: int,
    keys: tuple[str, ...],
    *,
    stochastic: bool = False,
    sentence_cache: np.ndarray | None = None,
    desc: str = "score",
) -> dict[str, np.ndarray]:
    """Run the model over ``batches`` and return ``keys`` outputs as host arrays by dataset row.

    Rows never visited stay zero. Padding rows are dropped. With ``stochastic`` dropout is
    on (MC dropout) and the dropout RNG advances; the updated ``rest`` is returned under
    the key ``"_rest"``.
    """
    out: dict[str, np.ndarray] = {}
    for batch in progress(batches, total=num_batches, desc=desc, unit="batch"):
        inputs = _device_batch(batch, steps_fn.mesh, sentence_cache)
        res, rest = steps_fn.forward(keys, params, rest, stochastic, inputs)
        res = {k: sharding.to_host(v) for k, v in res.items()}
        real = batch.valid
        for k in keys:
            arr = np.asarray(res[k], dtype=np.float32)
            if k not in out:
                out[k] = np.zeros((num_rows,) + arr.shape[1:], dtype=np.float32)
            out[k][batch.rows[real]] = arr[real]
    out["_rest"] = rest
    return out
