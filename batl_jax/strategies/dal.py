"""D-AL (Gissin & Shalev-Shwartz 2019): pick what a labeled-vs-unlabeled discriminator
is most sure is unlabeled, in sub-rounds, retraining after each.

As the authors' code (README, method decisions: D-AL): each of ``dal.sub_rounds``
sub-rounds draws a random subsample ``U'`` of ``min(10·|L|, |U|)`` unlabeled rows, trains
a fresh MLP with 3 hidden ReLU layers of width ``dal.hidden`` on ``s(x)`` to tell ``L``
(class 0) from ``U'`` (class 1) with class weights ``|L ∪ U'| / |class|`` on shuffled
mini-batches, and stops at the end of the first epoch whose training accuracy exceeds
98 %; the ``k / sub_rounds`` rows of ``U'`` with the highest P(unlabeled | x) move to
``L``. Training is one jitted ``while_loop`` over padded row arrays, so every sub-round
and round shares one compiled function; ``dal.steps`` caps the optimizer steps.
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
_STOP_ACCURACY = 0.98  # the reference stops once epoch accuracy is above this
_SUBSAMPLE_RATIO = 10  # |U'| = min(10·|L|, |U|), as the reference
_HIDDEN_LAYERS = 3


def unlabeled_subsample(
    unlabeled: np.ndarray, n_labeled: int, seed: int, sub_round: int, at_least: int = 0
) -> np.ndarray:
    """The reference's random ``min(10·|L|, |U|)`` rows of ``unlabeled`` (sorted), drawn
    afresh for every sub-round from ``(seed, sub_round)``; never fewer than ``at_least``
    (the sub-round's picks), which the reference leaves unhandled."""
    size = min(max(_SUBSAMPLE_RATIO * n_labeled, at_least), len(unlabeled))
    rng = np.random.default_rng([seed, sub_round])
    return np.sort(rng.choice(np.asarray(unlabeled, np.int64), size, replace=False))


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


def _epoch(params, opt_state, step, x, rows, n_lab, n, key, *, tx, batch, max_steps):
    """One shuffled pass over the ``n`` real entries of ``rows``; returns the state after it
    and the epoch's training accuracy (predictions made before each batch's update, as
    Keras reports it)."""
    size = rows.shape[0]
    # A uniform permutation of the first n positions: padding sorts last.
    order = jnp.argsort(jnp.where(jnp.arange(size) < n, jax.random.uniform(key, (size,)), 2.0))
    n_f = n.astype(jnp.float32)
    class_weight = jnp.stack([n_f / n_lab, n_f / (n - n_lab)])

    def body(carry):
        params, opt_state, step, b, correct = carry
        pos = b * batch + jnp.arange(batch)
        valid = pos < n
        idx = order[jnp.minimum(pos, size - 1)]
        target = (idx >= n_lab).astype(jnp.int32)
        w = jnp.where(valid, class_weight[target], 0.0)

        def loss_fn(p):
            logits = _mlp(p, x[rows[idx]])
            ce = optax.softmax_cross_entropy_with_integer_labels(logits, target)
            return (w * ce).sum() / valid.sum(), logits

        (_, logits), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        hits = ((logits.argmax(-1) == target) & valid).sum()
        return optax.apply_updates(params, updates), opt_state, step + 1, b + 1, correct + hits

    n_batches = (n + batch - 1) // batch

    def more(carry):
        _, _, step, b, _ = carry
        return (b < n_batches) & (step < max_steps)

    init = (params, opt_state, step, jnp.int32(0), jnp.int32(0))
    params, opt_state, step, _, correct = jax.lax.while_loop(more, body, init)
    return params, opt_state, step, correct / n_f


@functools.partial(jax.jit, static_argnames=("max_steps", "batch", "hidden", "lr"))
def train_discriminator(x, rows, n_lab, n, key, *, max_steps, batch, hidden, lr):
    """A discriminator trained on ``rows[:n_lab]`` (L, class 0) against ``rows[n_lab:n]``
    (U', class 1); ``rows`` is padded to a fixed length so every call shares one compiled
    function. Returns ``(params, optimizer steps, epochs, last epoch's accuracy)``."""
    sizes = (x.shape[1],) + (hidden,) * _HIDDEN_LAYERS + (2,)
    params = _init_mlp(jax.random.fold_in(key, 0), sizes)
    tx = optax.adam(lr)

    def body(carry):
        params, opt_state, step, epoch, _ = carry
        params, opt_state, step, acc = _epoch(
            params,
            opt_state,
            step,
            x,
            rows,
            n_lab,
            n,
            jax.random.fold_in(key, epoch + 1),
            tx=tx,
            batch=batch,
            max_steps=max_steps,
        )
        return params, opt_state, step, epoch + 1, acc

    # The reference's DiscriminativeEarlyStopping: a discriminator trained to 100 % would
    # be as sure of an unlabeled row that resembles L as of one unlike anything in L.
    def keep_going(carry):
        _, _, step, _, acc = carry
        return (acc <= _STOP_ACCURACY) & (step < max_steps)

    init = (params, tx.init(params), jnp.int32(0), jnp.int32(0), jnp.float32(0.0))
    params, _, steps, epochs, acc = jax.lax.while_loop(keep_going, body, init)
    return params, steps, epochs, acc


@jax.jit
def _unlabeled_margin(params, x):
    """logit(unlabeled) − logit(labeled): ranks like P(unlabeled) without saturating at 1."""
    z = _mlp(params, x)
    return z[:, 1] - z[:, 0]


def _margins(params, x_dev, rows: np.ndarray) -> np.ndarray:
    # Fixed-size chunks (padded), so scoring compiles once whatever |U'| is.
    out = []
    for s in range(0, len(rows), _SCORE_CHUNK):
        part = rows[s : s + _SCORE_CHUNK]
        padded = np.zeros(_SCORE_CHUNK, np.int32)
        padded[: len(part)] = part
        out.append(np.asarray(_unlabeled_margin(params, x_dev[padded]))[: len(part)])
    return np.concatenate(out) if out else np.zeros(0, np.float32)


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
    if len(labeled) == 0:
        raise ConfigError(
            "D-AL needs labeled rows to train its discriminator; set al.initial_size>0"
        )
    x_dev = jnp.asarray(x, jnp.float32)
    lab, unl = np.asarray(labeled, np.int64), np.asarray(unlabeled, np.int64)
    picks, scores = [], []
    per_round = np.diff(np.linspace(0, k, min(sub_rounds, k) + 1).round().astype(int))
    key = jax.random.key(seed)
    for i, n_pick in enumerate(per_round):
        sub = unlabeled_subsample(unl, len(lab), seed, i, at_least=int(n_pick))
        rows = np.zeros(len(x), np.int32)
        rows[: len(lab)], rows[len(lab) : len(lab) + len(sub)] = lab, sub
        params, *_ = train_discriminator(
            x_dev,
            jnp.asarray(rows),
            len(lab),
            len(lab) + len(sub),
            jax.random.fold_in(key, i),
            max_steps=steps,
            batch=batch,
            hidden=hidden,
            lr=lr,
        )
        margin = _margins(params, x_dev, sub)
        pos = top_k_desc(margin, int(n_pick))
        picks.append(sub[pos])
        scores.append(margin[pos])
        lab = np.sort(np.concatenate([lab, sub[pos]]))
        unl = np.setdiff1d(unl, sub[pos])
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
