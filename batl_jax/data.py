"""Datasets: read a train (pool) split and a test split, tokenise, and batch by length buckets.

Local datasets are read with the ``datasets`` library from a data dir laid out like
``shared/data`` (see its README); ``data.name = hub`` reads any hub dataset with a
text and a label column. The pool and the labeled set are index arrays over one
tokenised training split. Batches are padded to the smallest of a few fixed lengths
(``data.buckets``) so jit compiles a bounded number of shapes.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from batl_jax.errors import ConfigError, DataError

# Files per local dataset: (train file, test file, text field, label field, label names or None).
log = logging.getLogger(__name__)

# Label of a pool row without one (``al.oracle = human`` only): a human supplies it.
UNLABELED = -1

_LOCAL = {
    "ag_news": (
        "ag_news/alps_dev.jsonl.gz",
        "ag_news/alps_test.jsonl.gz",
        "text",
        "label",
        ["World", "Sports", "Business", "Sci/Tech"],
    ),
    "csabstruct": (
        "csabstruct/train.jsonl.gz",
        "csabstruct/test.jsonl.gz",
        "text",
        "label",
        ["background", "objective", "method", "result", "other"],
    ),
    "sst2": (
        "sst2/train.jsonl.gz",
        "sst2/test.jsonl.gz",
        "text",
        "label",
        ["negative", "positive"],
    ),
}


@dataclasses.dataclass
class Split:
    """One split: row ``i`` has id ``ids[i]``, text ``texts[i]`` and label ``labels[i]``.

    ``examples`` holds task-specific records (relation extraction); ``bags`` holds the
    bag key of each row when the dataset groups sentences into bags.
    """

    ids: list[str]
    texts: list[str]
    labels: np.ndarray
    examples: list | None = None
    bags: list | None = None

    def __len__(self) -> int:
        return len(self.ids)

    def subset(self, rows: np.ndarray) -> Split:
        pick = lambda xs: None if xs is None else [xs[i] for i in rows]  # noqa: E731
        return Split(
            ids=pick(self.ids),
            texts=pick(self.texts),
            labels=self.labels[rows],
            examples=pick(self.examples),
            bags=pick(self.bags),
        )


@dataclasses.dataclass
class Dataset:
    name: str
    label_names: list[str]
    train: Split
    test: Split
    skipped: dict[str, int] = dataclasses.field(default_factory=dict)


def resolve_data_dir(data_dir: str) -> Path:
    """The data dir from the config (or ``$BATL_DATA_DIR``), checked to exist."""
    data_dir = data_dir or os.environ.get("BATL_DATA_DIR", "")
    if not data_dir:
        raise DataError(
            "no data dir: set --config.data.dir=DIR or the BATL_DATA_DIR environment variable "
            "to a folder laid out like shared/data"
        )
    path = Path(data_dir).expanduser()
    if not path.is_dir():
        raise DataError(
            f"data dir {str(path)!r} does not exist: set --config.data.dir (or BATL_DATA_DIR) "
            "to the folder holding the datasets"
        )
    return path


def _read_json_records(path: Path) -> list[dict]:
    """Read a (gzipped) JSON-lines file with the ``datasets`` library."""
    import datasets

    if not path.is_file():
        raise DataError(f"missing data file {str(path)!r}: check --config.data.dir")
    try:
        # to_list() inside: pyarrow defers some checks (UTF-8) until values are read.
        return datasets.load_dataset("json", data_files=str(path), split="train").to_list()
    except Exception as e:  # datasets raises many types for unreadable files
        _diagnose_jsonl(path)  # raises a DataError naming the bad line, if it finds one
        first = (str(e).strip().splitlines() or [""])[0][:200]
        raise DataError(
            f"cannot read {str(path)!r} ({type(e).__name__}: {first}); "
            "expected JSON lines (gzip allowed)"
        ) from e


def _diagnose_jsonl(path: Path) -> None:
    """Find why a JSON-lines file does not load: the first line that is not UTF-8 or not
    JSON, or no record at all. Only runs after ``datasets`` failed, so the good path
    reads every file once."""
    import gzip
    import json

    opener = gzip.open if path.suffix == ".gz" else open
    records = 0
    try:
        with opener(path, "rb") as f:
            for number, raw in enumerate(f, start=1):
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError as e:
                    raise DataError(
                        f"{path}: line {number} is not valid UTF-8 (byte 0x{raw[e.start]:02x} at "
                        f"column {e.start + 1}); re-save the file as UTF-8"
                    ) from e
                if not line.strip():
                    continue
                try:
                    json.loads(line)
                except json.JSONDecodeError as e:
                    raise DataError(
                        f"{path}: line {number} is not valid JSON ({e.msg} at column "
                        f"{e.colno}); fix or remove that line"
                    ) from e
                records += 1
    except (OSError, EOFError) as e:  # e.g. a truncated or mislabeled .gz
        raise DataError(
            f"cannot read {path} ({type(e).__name__}: {e}); re-create the file "
            "(JSON lines, gzip allowed)"
        ) from e
    if records == 0:
        raise DataError(f"{path} has no records (empty file); put JSON lines in it")


def _build_split(
    records,
    text_field,
    label_field,
    label_names,
    *,
    where,
    on_error,
    skipped,
    allow_missing_labels=False,
):
    """Rows of one split; ``allow_missing_labels`` (a pool labeled by humans) keeps rows
    without a label as :data:`UNLABELED`. Ids must be unique: human labels, queries and
    selected.jsonl refer to rows by id."""
    ids, texts, labels = [], [], []
    index = {name: i for i, name in enumerate(label_names)}
    seen: set[str] = set()
    for row, rec in enumerate(records):
        rid = str(rec.get("id", rec.get("idx", row)))
        text, label = rec.get(text_field), rec.get(label_field)
        problem = None
        if not isinstance(text, str) or not text.strip():
            problem = "empty_text"
        elif rid in seen:
            problem = "duplicate_id"
        elif label is None and allow_missing_labels:
            label = None
        elif isinstance(label, (int, np.integer)) and not isinstance(label, bool):
            if not 0 <= int(label) < len(label_names):
                problem = "unknown_label"
            else:
                label = label_names[int(label)]
        elif not isinstance(label, str) or label not in index:
            problem = "unknown_label" if label is not None else "missing_label"
        if problem:
            if on_error == "fail":
                raise DataError(
                    f"{where}: record {row + 1} (id {rid}) has {problem.replace('_', ' ')} "
                    f"(text={str(text)[:40]!r}, label={label!r}); fix the record or set "
                    "--config.data.on_error=skip"
                )
            skipped[problem] = skipped.get(problem, 0) + 1
            continue
        seen.add(rid)
        ids.append(rid)
        texts.append(text)
        labels.append(UNLABELED if label is None else index[label])
    if not ids:
        raise DataError(f"{where}: no usable records; check the file and the field names")
    return Split(ids=ids, texts=texts, labels=np.asarray(labels, np.int32))


def _subsample(split: Split, limit: int, seed: int) -> Split:
    if not limit or limit >= len(split):
        return split
    rows = np.sort(np.random.default_rng(seed).permutation(len(split))[:limit])
    return split.subset(rows)


def load_dataset(cfg, seed: int) -> Dataset:
    """Load the train (pool) and test splits named by ``cfg.data`` (a ConfigDict)."""
    name, on_error = cfg.data.name, cfg.data.on_error
    if on_error not in ("fail", "skip"):
        raise ConfigError(f"data.on_error={on_error!r}: use 'fail' or 'skip'")
    skipped: dict[str, int] = {}
    if name in _LOCAL:
        train_file, test_file, text_f, label_f, label_names = _LOCAL[name]
        root = resolve_data_dir(cfg.data.dir)
        splits = []
        for f in (train_file, test_file):
            recs = _read_json_records(root / f)
            # Humans label the pool (al.oracle=human): its rows may come unlabeled.
            ok = f == train_file and cfg.al.oracle == "human"
            kw = dict(where=f, on_error=on_error, skipped=skipped, allow_missing_labels=ok)
            splits.append(_build_split(recs, text_f, label_f, label_names, **kw))
        ds = Dataset(name, label_names, splits[0], splits[1], skipped)
    elif name in ("semeval", "wiki_kbp", "nyt10"):
        from batl_jax.tasks import relation

        ds = relation.load_relation_dataset(cfg, skipped)
    elif name == "hub":
        ds = _load_hub(cfg, skipped)
    else:
        raise ConfigError(
            f"unknown data.name {name!r}: use one of ag_news, csabstruct, sst2, semeval, "
            "wiki_kbp, nyt10, hub"
        )
    if skipped:
        log.warning("skipped malformed records: %s", skipped)
    ds.train = _subsample(ds.train, cfg.data.pool_limit, seed)
    ds.test = _subsample(ds.test, cfg.data.test_limit, seed + 1)
    return ds


def _load_hub(cfg, skipped) -> Dataset:
    import datasets

    if not cfg.data.hub_id:
        raise ConfigError("data.name=hub needs --config.data.hub_id=ORG/NAME")
    try:
        dd = datasets.load_dataset(cfg.data.hub_id, cfg.data.hub_config or None)
    except Exception as e:
        raise DataError(
            f"cannot load hub dataset {cfg.data.hub_id!r} ({type(e).__name__}: {e}); check the "
            "id and network access, or use a local data dir"
        ) from e
    splits = {}
    for key in (cfg.data.train_split, cfg.data.test_split):
        if key not in dd:
            raise DataError(
                f"hub dataset {cfg.data.hub_id!r} has no split {key!r} "
                f"(has {sorted(dd)}); set data.train_split / data.test_split"
            )
        splits[key] = dd[key]
    feature = splits[cfg.data.train_split].features.get(cfg.data.label_field)
    if feature is not None and hasattr(feature, "names"):
        label_names = list(feature.names)
    else:
        label_names = sorted({str(x) for x in splits[cfg.data.train_split][cfg.data.label_field]})
    built = []
    for key in (cfg.data.train_split, cfg.data.test_split):
        recs = splits[key].to_list()
        if not (feature is not None and hasattr(feature, "names")):
            for r in recs:
                r[cfg.data.label_field] = str(r[cfg.data.label_field])
        built.append(
            _build_split(
                recs,
                cfg.data.text_field,
                cfg.data.label_field,
                label_names,
                where=f"{cfg.data.hub_id}:{key}",
                on_error=cfg.data.on_error,
                skipped=skipped,
            )
        )
    return Dataset(cfg.data.hub_id, label_names, built[0], built[1], skipped)


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
