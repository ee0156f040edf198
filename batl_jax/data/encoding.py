"""Token ids and batches: tokenise a split, pad batches to a few fixed lengths.

Batches are padded to the smallest of a few fixed lengths (``data.buckets``) so jit
compiles a bounded number of shapes. Training draws each epoch's batches within those
buckets (``train.sampler = "bucketed"``), so a batch of short rows pads to a short
length; scoring ends each bucket with a batch from a few smaller compiled sizes rather
than one topped up with empty rows (README, "Benchmarks").
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import numpy as np

from batl_jax.errors import ConfigError


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
    if not texts:  # a run without a test split: transformers' fast tokenizers fail on []
        return encode_ids([], max_len, tokenizer.pad_token_id)
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


def tail_sizes(batch_size: int, multiple: int) -> tuple[int, ...]:
    """The compiled batch sizes a bucket's last scoring batch may take, largest first:
    ``batch_size`` halved while the half is a whole multiple of ``multiple`` (the device
    count, so every size still splits evenly over the mesh). At most
    ``log2(batch_size / multiple) + 1`` sizes, so at most that many shapes per bucket."""
    if multiple < 1 or batch_size % multiple:
        raise ValueError(f"batch size {batch_size} is not a multiple of {multiple}")
    sizes = [batch_size]
    while sizes[-1] % 2 == 0 and (sizes[-1] // 2) % multiple == 0:
        sizes.append(sizes[-1] // 2)
    return tuple(sizes)


def _fitting(n: int, sizes: tuple[int, ...]) -> int:
    """The smallest of ``sizes`` (largest first) that holds ``n`` rows."""
    return min(s for s in sizes if s >= n)


def scoring_batches(
    enc: Encoded,
    rows: np.ndarray,
    batch_size: int,
    buckets: tuple[int, ...],
    *,
    tail_multiple: int = 0,
) -> Iterator[Batch]:
    """Batches over ``rows`` grouped by length bucket (short first). Output order differs
    from ``rows``: use ``Batch.rows`` to put results back.

    A bucket's last batch is padded to ``batch_size`` rows when ``tail_multiple`` is 0;
    otherwise to the smallest of :func:`tail_sizes` ``(batch_size, tail_multiple)`` that
    holds it, so a short tail costs a smaller compiled batch, not empty rows."""
    sizes = tail_sizes(batch_size, tail_multiple) if tail_multiple else (batch_size,)
    for b, sel in _bucket_groups(enc, rows, buckets):
        for start in range(0, len(sel), batch_size):
            chunk = sel[start : start + batch_size]
            yield _make_batch(enc, chunk, _fitting(len(chunk), sizes), b)


def num_scoring_batches(
    enc: Encoded, rows: np.ndarray, batch_size: int, buckets: tuple[int, ...]
) -> int:
    """How many batches :func:`scoring_batches` yields (whatever ``tail_multiple``)."""
    return sum(-(-len(sel) // batch_size) for _, sel in _bucket_groups(enc, rows, buckets))


# ``train.sampler``: "bucketed" draws batches within length buckets; "random" is the
# sampler the committed study runs were made with (``config.study_config`` pins it).
SAMPLERS = ("bucketed", "random")


def _random_chunks(rows: np.ndarray, batch_size: int, rng: np.random.Generator):
    order = rng.permutation(np.asarray(rows, dtype=np.int64))
    return [order[s : s + batch_size] for s in range(0, len(order), batch_size)]


def _bucketed_chunks(
    enc: Encoded,
    rows: np.ndarray,
    batch_size: int,
    buckets: tuple[int, ...],
    rng: np.random.Generator,
) -> list[np.ndarray]:
    """Full batches within each bucket (rows shuffled within it); the buckets' leftover
    rows, short buckets first, fill the remaining batches, so an epoch has
    ``ceil(n / batch_size)`` batches as with the random sampler (and the same number of
    optimizer steps) and only those few batches span two neighbouring buckets. The batch
    order is shuffled across buckets."""
    full, leftovers = [], []
    for _, sel in _bucket_groups(enc, rows, buckets):
        sel = rng.permutation(sel)
        cut = len(sel) - len(sel) % batch_size
        full += [sel[s : s + batch_size] for s in range(0, cut, batch_size)]
        leftovers.append(sel[cut:])
    rest = np.concatenate(leftovers) if leftovers else np.zeros(0, np.int64)
    chunks = full + [rest[s : s + batch_size] for s in range(0, len(rest), batch_size)]
    return [chunks[i] for i in rng.permutation(len(chunks))]


def training_batches(
    enc: Encoded,
    rows: np.ndarray,
    batch_size: int,
    buckets: tuple[int, ...],
    rng: np.random.Generator,
    *,
    sampler: str = "random",
) -> Iterator[Batch]:
    """One seeded epoch over ``rows``, every row once, each batch padded to its bucket.

    ``sampler="random"``: batches of a random permutation (a batch pads to its longest
    row's bucket); ``"bucketed"``: batches drawn within length buckets
    (:func:`_bucketed_chunks`), so most pad to their own bucket only.
    """
    if sampler == "random":
        chunks = _random_chunks(rows, batch_size, rng)
    elif sampler == "bucketed":
        chunks = _bucketed_chunks(enc, rows, batch_size, buckets, rng)
    else:
        raise ConfigError(
            f"train.sampler={sampler!r} is not one of {SAMPLERS}; set --config.train.sampler"
        )
    for chunk in chunks:
        yield _make_batch(
            enc, chunk, batch_size, bucket_for(int(enc.lengths[chunk].max()), buckets)
        )
