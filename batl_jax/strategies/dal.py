"""D-AL (Gissin & Shalev-Shwartz 2019): pick what a labeled-vs-unlabeled discriminator
is most sure is unlabeled, in sub-rounds, retraining after each.

The discriminator is an MLP on s(x) trained with optax on balanced mini-batches (half
labeled, half unlabeled rows, drawn with replacement), which plays the role of the
reference implementation's class weighting. Each of ``dal.sub_rounds`` sub-rounds
trains a fresh discriminator, moves the ``k / sub_rounds`` unlabeled rows with the
highest P(unlabeled | x) to the labeled side, and repeats.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax

from batl_jax.errors import ConfigError
from batl_jax.strategies.base import Selection, SelectionInput, register, top_k_desc

_SCORE_CHUNK = 8192
_STOP_ACCURACY = 0.98


def _init_mlp(key, sizes):
    params = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        w = jax.random.normal(jax.random.fold_in(key, i), (n_in, n_out)) * jnp.sqrt(2.0 / n_in)
        params.append({"w": w.astype(jnp.float32), "b": jnp.zeros((n_out,), jnp.float32)})
    return params


def _mlp(params, x):
    for layer in params[:-1]:
        x = jax.nn.relu(x @ layer["w"] + layer["b"])
    return x @ params[-1]["w"] + params[-1]["b"]  # (B, 2) logits: 0 = labeled, 1 = unlabeled


@functools.partial(jax.jit, static_argnames=("steps", "batch", "hidden", "lr"))
def _train_discriminator(x, lab_rows, n_lab, unl_rows, n_unl, key, *, steps, batch, hidden, lr):
    """Balanced mini-batch training; the first ``n_lab`` / ``n_unl`` entries of the row arrays
    are the labeled / unlabeled rows of ``x`` (both arrays padded to ``len(x)``, so the
    sub-rounds, whose set sizes differ, share one compiled function)."""
    params = _init_mlp(jax.random.fold_in(key, 0), (x.shape[1], hidden, hidden, 2))
    tx = optax.adam(lr)
    opt_state = tx.init(params)
    half = batch // 2
    targets = jnp.concatenate([jnp.zeros(half, jnp.int32), jnp.ones(half, jnp.int32)])

    def step(carry):
        params, opt_state, i, acc = carry
        k1, k2 = jax.random.split(jax.random.fold_in(key, i + 1))
        rows = jnp.concatenate(
            [
                lab_rows[jax.random.randint(k1, (half,), 0, n_lab)],
                unl_rows[jax.random.randint(k2, (half,), 0, n_unl)],
            ]
        )

        def loss_fn(p):
            logits = _mlp(p, x[rows])
            loss = optax.softmax_cross_entropy_with_integer_labels(logits, targets).mean()
            return loss, (logits.argmax(-1) == targets).mean()

        (_, batch_acc), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        acc = 0.9 * acc + 0.1 * batch_acc
        return optax.apply_updates(params, updates), opt_state, i + 1, acc

    # The reference stops once training accuracy reaches 98%: a discriminator trained to
    # convergence memorises the rows and its scores saturate. A running mean of the batch
    # accuracy stands in for the epoch accuracy.
    def keep_going(carry):
        _, _, i, acc = carry
        return (i < steps) & (acc < _STOP_ACCURACY)

    init = (params, opt_state, jnp.int32(0), jnp.float32(0.0))
    params, _, n_steps, _ = jax.lax.while_loop(keep_going, step, init)
    return params, n_steps


def _padded(rows: np.ndarray, size: int) -> jax.Array:
    out = np.zeros(size, np.int32)
    out[: len(rows)] = rows
    return jnp.asarray(out)


@jax.jit
def _unlabeled_margin(params, x):
    """logit(unlabeled) − logit(labeled): ranks like P(unlabeled) without saturating at 1."""
    z = _mlp(params, x)
    return z[:, 1] - z[:, 0]


def dal_select(
    x: np.ndarray,
    labeled: np.ndarray,
    unlabeled: np.ndarray,
    k: int,
    *,
    seed: int,
    sub_rounds: int,
    steps: int,
    batch: int,
    hidden: int,
    lr: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Rows of ``unlabeled`` chosen by D-AL, and the discriminator's unlabeled-vs-labeled
    logit margin of each at its pick."""
    if sub_rounds < 1:
        raise ConfigError(f"dal.sub_rounds={sub_rounds}: need at least 1")
    x_dev = jnp.asarray(x, jnp.float32)
    lab, unl = np.asarray(labeled, np.int64), np.asarray(unlabeled, np.int64)
    picks, scores = [], []
    per_round = np.diff(np.linspace(0, k, min(sub_rounds, k) + 1).round().astype(int))
    key = jax.random.key(seed)
    for i, n_pick in enumerate(per_round):
        if len(lab):
            params, _ = _train_discriminator(
                x_dev,
                _padded(lab, len(x)),
                len(lab),
                _padded(unl, len(x)),
                len(unl),
                jax.random.fold_in(key, i),
                steps=steps,
                batch=batch,
                hidden=hidden,
                lr=lr,
            )
            # Score every row in fixed chunks (shapes repeat across sub-rounds), keep U's.
            margin = np.concatenate(
                [
                    np.asarray(_unlabeled_margin(params, x_dev[s : s + _SCORE_CHUNK]))
                    for s in range(0, len(x), _SCORE_CHUNK)
                ]
            )[unl]
        else:  # nothing labeled yet: no discriminator can be trained; all equally unlabeled
            margin = np.zeros(len(unl), np.float32)
        pos = top_k_desc(margin, int(n_pick))
        picks.append(unl[pos])
        scores.append(margin[pos])
        lab = np.sort(np.concatenate([lab, unl[pos]]))
        unl = np.delete(unl, pos)
    return np.concatenate(picks), np.concatenate(scores)


@register("dal", config_section="dal")
def select_dal(inp: SelectionInput, k: int) -> Selection:
    cfg = inp.config
    picks, p = dal_select(
        inp.pool.sentence,
        inp.labeled,
        inp.unlabeled,
        k,
        seed=inp.seed,
        sub_rounds=cfg.sub_rounds,
        steps=cfg.steps,
        batch=cfg.batch,
        hidden=cfg.hidden,
        lr=cfg.lr,
    )
    return Selection(indices=picks, scores={"unlabeled_logit_margin": p})
