"""ALPS surprisal embeddings (Yuan, Lin & Boyd-Graber, EMNLP 2020) and an MLM-head fitter.

The surprisal embedding of an input ``x`` is a vector of length ``max_len``: at a
fixed, seeded ``mask_prob`` share of ``x``'s non-special tokens it holds the
masked-LM cross-entropy of the original token, elsewhere 0; then it is
L2-normalised. ALPS clusters these vectors with k-means and labels the row
nearest each centre (:mod:`batl_jax.strategies.alps`).

Choices (README, "Method decisions": ALPS):

* **Which positions.** Row ``i``'s positions depend only on ``(seed, i)`` and its
  tokens, never on the round, the batch or the mesh: every position gets a key
  ``u = hash(seed, i, position)`` in ``[0, 1)`` (splitmix64), and the ``m`` eligible
  positions with the smallest keys are taken, ``m = max(1, round_half_up(mask_prob · n))``
  for ``n`` eligible (non-special, non-pad, inside the length) tokens, 0 when ``n = 0``.
  A fixed count rather than BERT's Bernoulli draw keeps every row at exactly 15 %,
  and ``m <= P_max = ceil(mask_prob · max_len)`` always holds.
* **Unmasked by default.** The encoder sees the original sentence (ALPS' reference
  code); ``masked=True`` replaces the chosen tokens BERT-style (80 % ``[MASK]``,
  10 % a uniformly random token, 10 % unchanged), decided by the same hash on two
  other streams, so it too is a pure function of ``(seed, i, position)``.
* **Only the needed logits.** Hidden states are gathered at ``P_max`` positions per
  row before the MLM head, so the head produces ``(B, P_max, V)`` logits, not
  ``(B, L, V)`` (a 30k vocabulary at every position would dominate the cost).

A checkpoint without an MLM head can have one fitted (:mod:`.mlm_fit`).
"""

from __future__ import annotations

import functools
import math
from typing import Any, cast

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from tqdm.auto import tqdm

from batl_jax import data, sharding
from batl_jax.errors import ConfigError
from batl_jax.model.bert import BertEncoder, BertMLMHead

# Rows hashed per chunk in alps_positions: bounds host memory to a few MB per chunk.
_CHUNK_ROWS = 4096
# Hash streams: one for the choice of positions, two for the BERT-style replacement.
_STREAM_POSITIONS, _STREAM_ACTION, _STREAM_TOKEN = 0, 1, 2
_MASK64 = (1 << 64) - 1
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


# ----------------------------------------------------------------------------- hashing
def _mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser on a uint64 array (wrap-around arithmetic is intended)."""
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def _uniform(seed: int, stream: int, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """float64 ``(len(rows), len(cols))`` in [0, 1), a pure function of (seed, stream, row, col).

    Arrays (not numpy scalars) throughout: array integer overflow wraps silently.
    """
    base = _mix64(np.array([seed & _MASK64], np.uint64) + np.array([stream], np.uint64) * _GOLDEN)
    per_row = _mix64(base + np.asarray(rows, np.uint64) * _GOLDEN)
    h = _mix64(per_row[:, None] + np.asarray(cols, np.uint64)[None, :] * _GOLDEN)
    return (h >> np.uint64(11)).astype(np.float64) * 2.0**-53


# ----------------------------------------------------------------------------- positions
def max_positions(mask_prob: float, max_len: int) -> int:
    """``P_max = ceil(mask_prob · max_len)`` (float noise such as 0.15·20 = 3.0000000000000004
    does not round up)."""
    check_mask_prob(mask_prob)
    return max(1, math.ceil(mask_prob * max_len - 1e-9))


def check_mask_prob(mask_prob: float) -> None:
    if not 0.0 < mask_prob <= 1.0:
        raise ConfigError(f"alps.mask_prob={mask_prob}: use a share in (0, 1], e.g. 0.15")


def eligible_positions(
    ids: np.ndarray, lengths: np.ndarray, special_ids, pad_id: int
) -> np.ndarray:
    """Tokens that may be scored: inside the length, not special, not padding."""
    inside = np.arange(ids.shape[1])[None, :] < np.asarray(lengths)[:, None]
    special = np.isin(ids, np.asarray(list(special_ids), dtype=ids.dtype))
    return inside & ~special & (ids != pad_id)


def choose_positions(
    keys: np.ndarray, eligible: np.ndarray, mask_prob: float, p: int
) -> np.ndarray:
    """Per row the ``m`` eligible columns with the smallest ``keys``, ascending, -1 padded
    to ``p`` columns (``m`` as in the module doc)."""
    n = eligible.sum(axis=1)
    m = np.where(n > 0, np.maximum(1, np.floor(mask_prob * n + 0.5)), 0).astype(np.int64)
    m = np.minimum(m, p)
    order = np.argsort(np.where(eligible, keys, np.inf), axis=1, kind="stable")[:, :p]
    if order.shape[1] < p:  # a bucket shorter than p: the missing columns are never chosen
        order = np.pad(order, ((0, 0), (0, p - order.shape[1])))
    keep = np.arange(p)[None, :] < m[:, None]
    big = np.iinfo(np.int32).max
    chosen = np.sort(np.where(keep, order, big), axis=1)
    return np.where(chosen == big, -1, chosen).astype(np.int32)


def alps_positions(
    enc: data.Encoded, special_ids, *, mask_prob: float, seed: int = 0
) -> np.ndarray:
    """The scored positions of every row: ``(N, P_max)`` int32, ascending, -1 = none.

    Row ``i``'s positions are a pure function of ``seed``, ``i`` and its tokens: the
    same in every round, batch and mesh. ``special_ids`` are the tokenizer's special
    ids (``tokenizer.all_special_ids``, plus any added marker tokens); they and pads
    are never chosen.
    """
    n, max_len = enc.input_ids.shape
    p = max_positions(mask_prob, max_len)
    out = np.empty((n, p), np.int32)
    cols = np.arange(max_len)
    for start in range(0, n, _CHUNK_ROWS):
        rows = np.arange(start, min(n, start + _CHUNK_ROWS))
        ids = enc.input_ids[rows]
        elig = eligible_positions(ids, enc.lengths[rows], special_ids, enc.pad_id)
        keys = _uniform(seed, _STREAM_POSITIONS, rows, cols)
        out[rows] = choose_positions(keys, elig, mask_prob, p)
    return out


def replace_tokens(
    ids: np.ndarray,
    positions: np.ndarray,
    action_u: np.ndarray,
    token_u: np.ndarray,
    *,
    mask_token_id: int,
    vocab_size: int,
) -> np.ndarray:
    """BERT's 80/10/10 replacement of ``ids`` at ``positions`` given per-position uniforms
    ``(B, P)`` (one decides the action, the other picks the random token)."""
    out = ids.copy()
    r, c = np.nonzero(positions >= 0)
    pos = positions[r, c]
    a = action_u[r, c]
    new = np.where(
        a < 0.8,
        mask_token_id,
        np.where(a < 0.9, np.floor(token_u[r, c] * vocab_size).astype(np.int64), ids[r, pos]),
    )
    out[r, pos] = new.astype(ids.dtype)
    return out


def masked_input_ids(
    enc: data.Encoded,
    positions: np.ndarray,
    *,
    mask_token_id: int,
    vocab_size: int,
    seed: int = 0,
) -> np.ndarray:
    """``enc.input_ids`` with the tokens at ``positions`` replaced BERT-style (80 % mask,
    10 % random token in ``[0, vocab_size)``, 10 % unchanged), seeded per (row, position)."""
    out = enc.input_ids.copy()
    cols = np.arange(enc.input_ids.shape[1])
    for start in range(0, len(out), _CHUNK_ROWS):
        rows = np.arange(start, min(len(out), start + _CHUNK_ROWS))
        pos = positions[rows]
        safe = np.maximum(pos, 0)
        # Uniforms indexed by the token position (not the slot), so a row's replacement
        # does not depend on which other positions were chosen.
        a = np.take_along_axis(_uniform(seed, _STREAM_ACTION, rows, cols), safe, axis=1)
        t = np.take_along_axis(_uniform(seed, _STREAM_TOKEN, rows, cols), safe, axis=1)
        out[rows] = replace_tokens(
            out[rows], pos, a, t, mask_token_id=mask_token_id, vocab_size=vocab_size
        )
    return out


# ----------------------------------------------------------------------------- scoring
class _EncoderWithHead(nnx.Module):
    """Holds the encoder and the MLM head so one split/merge moves both."""

    def __init__(self, encoder: BertEncoder, head: BertMLMHead):
        self.encoder = encoder
        self.head = head


def _gather_logits(model: _EncoderWithHead, ids, mask, pos) -> jax.Array:
    """float32 MLM logits ``(B, P, V)`` at ``pos`` (-1 entries gather position 0)."""
    hidden = model.encoder(ids, mask, deterministic=True)
    h = jnp.take_along_axis(hidden, jnp.maximum(pos, 0)[..., None], axis=1)
    word = model.encoder.embeddings.word_embeddings.embedding[...]
    return model.head(h, word).astype(jnp.float32)


def token_ce(logits, targets):
    """Cross-entropy ``(B, P)`` of ``targets`` under ``logits`` (B, P, V)."""
    target_logit = jnp.take_along_axis(logits, targets[..., None], axis=-1)[..., 0]
    return jax.nn.logsumexp(logits, axis=-1) - target_logit


@functools.partial(jax.jit, static_argnums=0)
def _position_ce(graphdef, params, rest, ids, mask, pos, targets):
    model = nnx.merge(graphdef, params, rest)
    ce = token_ce(_gather_logits(model, ids, mask, pos), targets)
    return jnp.where(pos >= 0, ce, 0.0)


def target_ids(orig_ids: np.ndarray, rows: np.ndarray, pos: np.ndarray) -> np.ndarray:
    return np.take_along_axis(orig_ids[np.maximum(rows, 0)], np.maximum(pos, 0), axis=1)


def position_losses(
    encoder: BertEncoder,
    mlm_head: BertMLMHead,
    enc: data.Encoded,
    positions: np.ndarray,
    *,
    mesh,
    buckets,
    batch_size: int,
    input_ids: np.ndarray | None = None,
    desc: str = "MLM losses",
) -> np.ndarray:
    """MLM cross-entropy of the original token ``enc.input_ids[i, positions[i, j]]``:
    ``(N, P)`` float32, 0 where ``positions`` is -1.

    The encoder reads ``input_ids`` (default ``enc.input_ids``; pass the replaced ids
    for the masked variant). Batches come from :func:`data.scoring_batches` (length
    buckets, rows sharded over the mesh's ``data`` axis, parameters replicated), so
    one shape is compiled per bucket.
    """
    n, p = positions.shape
    shards = sharding.num_shards(mesh)
    batch_size = -(-batch_size // shards) * shards
    graphdef, params, rest = cast(
        tuple[Any, Any, Any], nnx.split(_EncoderWithHead(encoder, mlm_head), nnx.Param, ...)
    )
    params = sharding.put_tree(params, sharding.replicated(mesh))
    rest = sharding.put_tree(rest, sharding.replicated(mesh))
    feed = enc if input_ids is None else data.Encoded(input_ids, enc.lengths, enc.pad_id)
    rows = np.arange(n)
    put = lambda x: sharding.put_global(x, sharding.row_sharded(mesh))
    out = np.zeros((n, p), np.float32)
    total = data.num_scoring_batches(feed, rows, batch_size, buckets)
    batches = data.scoring_batches(feed, rows, batch_size, buckets)
    for batch in tqdm(batches, total=total, desc=desc, unit="batch", leave=False, disable=None):
        pos = np.where(batch.valid[:, None], positions[np.maximum(batch.rows, 0)], -1)
        tgt = target_ids(enc.input_ids, batch.rows, pos)
        ce = _position_ce(
            graphdef,
            params,
            rest,
            put(batch.input_ids),
            put(batch.attention_mask),
            put(pos.astype(np.int32)),
            put(tgt.astype(np.int32)),
        )
        out[batch.rows[batch.valid]] = sharding.to_host(ce)[batch.valid]
    return out


def surprisal_embeddings(
    encoder: BertEncoder,
    mlm_head: BertMLMHead,
    enc: data.Encoded,
    *,
    special_ids,
    mesh,
    buckets,
    batch_size: int,
    mask_prob: float,
    masked: bool,
    mask_token_id: int,
    vocab_size: int,
    seed: int = 0,
) -> np.ndarray:
    """ALPS surprisal embeddings of every row of ``enc``: ``(N, max_len)`` float32, unit L2
    norm (all-zero for a row without a non-special token).

    Use the *pre-trained* encoder and MLM head: the result does not change between
    rounds, so compute it once per run and cache it.
    """
    positions = alps_positions(enc, special_ids, mask_prob=mask_prob, seed=seed)
    ids = None
    if masked:
        ids = masked_input_ids(
            enc, positions, mask_token_id=mask_token_id, vocab_size=vocab_size, seed=seed
        )
    ce = position_losses(
        encoder,
        mlm_head,
        enc,
        positions,
        mesh=mesh,
        buckets=buckets,
        batch_size=batch_size,
        input_ids=ids,
        desc="ALPS surprisal",
    )
    n, max_len = enc.input_ids.shape
    out = np.zeros((n, max_len), np.float64)
    r, c = np.nonzero(positions >= 0)
    out[r, positions[r, c]] = ce[r, c]
    norm = np.linalg.norm(out, axis=1, keepdims=True)
    return (out / np.maximum(norm, 1e-12)).astype(np.float32)
