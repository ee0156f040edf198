"""Token ids and batches: tokenise a split, pad batches to a few fixed lengths.

Batches are padded to the smallest of a few fixed lengths (``data.buckets``) so jit
compiles a bounded number of shapes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import numpy as np


@dataclasses.dataclass
class Encoded:
    """Token ids of one split: ``input_ids`` (N, max_len) int32 padded with ``pad_id``."""

    input_ids: np.ndarray
    lengths: np.ndarray
    pad_id: int

    def __len__(self) -> int:
        return int(self.lengths.shape[0])


def encode_ids(token_lists: list[list[int]], max_len: int, pad_id: int) -> Encoded:
    n = len(token_lists)
    ids = np.full((n, max_len), pad_id, dtype=np.int32)
    lengths = np.zeros(n, dtype=np.int32)
    for i, toks in enumerate(token_lists):
        toks = toks[:max_len]
        ids[i, : len(toks)] = toks
        lengths[i] = len(toks)
    return Encoded(ids, lengths, pad_id)


def encode_texts(texts: list[str], tokenizer, max_len: int) -> Encoded:
    """Tokenise sentences with special tokens, truncated to ``max_len``."""
    out = tokenizer(texts, truncation=True, max_length=max_len, padding=False)
    return encode_ids(out["input_ids"], max_len, tokenizer.pad_token_id)


# Default padded lengths (config ``data.buckets``). Seven shapes pad a 10k AG News pool to
# 83 % real tokens where (32, 64, 128) gave 70 %: the pool pass took 39 s instead of 52 s
# here, for 4 s more compilation (docs/benchmarks.md). Lengths above 128 add max_len.
DEFAULT_BUCKETS = (16, 24, 32, 48, 64, 96, 128)


def bucket_for(length: int, buckets: tuple[int, ...]) -> int:
    for b in buckets:
        if length <= b:
            return b
    return buckets[-1]


def check_buckets(buckets, max_len: int) -> tuple[int, ...]:
    buckets = tuple(sorted(int(b) for b in buckets if int(b) <= max_len))
    if not buckets or buckets[-1] != max_len:
        buckets = buckets + (max_len,)
    return buckets


@dataclasses.dataclass
class Batch:
    """A padded batch: ``rows`` are dataset rows (-1 = padding), ``valid`` marks real rows."""

    rows: np.ndarray
    input_ids: np.ndarray
    attention_mask: np.ndarray
    valid: np.ndarray


def _make_batch(enc: Encoded, rows: np.ndarray, batch_size: int, length: int) -> Batch:
    n = len(rows)
    padded_rows = np.full(batch_size, -1, dtype=np.int64)
    padded_rows[:n] = rows
    ids = np.full((batch_size, length), enc.pad_id, dtype=np.int32)
    ids[:n] = enc.input_ids[rows, :length]
    mask = (np.arange(length)[None, :] < enc.lengths[rows][:, None]).astype(np.int32)
    full_mask = np.zeros((batch_size, length), dtype=np.int32)
    full_mask[:n] = mask
    # Padding rows get one attended token so softmax over keys stays finite.
    full_mask[n:, 0] = 1
    valid = np.zeros(batch_size, dtype=bool)
    valid[:n] = True
    return Batch(padded_rows, ids, full_mask, valid)


def _bucket_groups(enc: Encoded, rows: np.ndarray, buckets: tuple[int, ...]):
    rows = np.asarray(rows, dtype=np.int64)
    which = np.searchsorted(np.asarray(buckets), enc.lengths[rows], side="left")
    which = np.minimum(which, len(buckets) - 1)
    return [(b, rows[which == i]) for i, b in enumerate(buckets)]


def scoring_batches(
    enc: Encoded, rows: np.ndarray, batch_size: int, buckets: tuple[int, ...]
) -> Iterator[Batch]:
    """Batches over ``rows`` grouped by length bucket (short first); every batch has
    ``batch_size`` rows (the last of a bucket padded). Output order differs from ``rows``:
    use ``Batch.rows`` to put results back."""
    for b, sel in _bucket_groups(enc, rows, buckets):
        for start in range(0, len(sel), batch_size):
            yield _make_batch(enc, sel[start : start + batch_size], batch_size, b)


def num_scoring_batches(
    enc: Encoded, rows: np.ndarray, batch_size: int, buckets: tuple[int, ...]
) -> int:
    return sum(-(-len(sel) // batch_size) for _, sel in _bucket_groups(enc, rows, buckets))


def training_batches(
    enc: Encoded,
    rows: np.ndarray,
    batch_size: int,
    buckets: tuple[int, ...],
    rng: np.random.Generator,
) -> Iterator[Batch]:
    """One epoch over ``rows`` in a seeded random order, each batch padded to its bucket."""
    order = rng.permutation(np.asarray(rows, dtype=np.int64))
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        yield _make_batch(
            enc, chunk, batch_size, bucket_for(int(enc.lengths[chunk].max()), buckets)
        )
