"""Datasets: read a train (pool) split and a test split, tokenise, and batch by length buckets.

``load_dataset(cfg, seed)`` picks the reader registered for ``data.name``: the bundled
sets under ``data.dir`` (:mod:`.bundled`), ``hub`` ids, a user's own ``files``
(:mod:`.files`), and the sets task packages register (relation extraction). The pool and
the labeled set are index arrays over one tokenised training split; batches are padded
to the smallest of a few fixed lengths (:mod:`.encoding`).
"""

from batl_jax.data.bundled import BUNDLED, load_bundled, load_hub
from batl_jax.data.encoding import (
    DEFAULT_BUCKETS,
    Batch,
    Encoded,
    bucket_for,
    check_buckets,
    encode_ids,
    encode_texts,
    num_scoring_batches,
    scoring_batches,
    training_batches,
)
from batl_jax.data.files import load_files
from batl_jax.data.loading import (
    DataRequest,
    load_dataset,
    register_loader,
    registered_names,
    resolve_data_dir,
)
from batl_jax.data.splits import UNLABELED, Dataset, Split

for _name in BUNDLED:
    register_loader(_name, load_bundled)
register_loader("hub", load_hub)
register_loader("files", load_files)

__all__ = [
    "DEFAULT_BUCKETS",
    "UNLABELED",
    "Batch",
    "DataRequest",
    "Dataset",
    "Encoded",
    "Split",
    "bucket_for",
    "check_buckets",
    "encode_ids",
    "encode_texts",
    "load_dataset",
    "num_scoring_batches",
    "register_loader",
    "registered_names",
    "resolve_data_dir",
    "scoring_batches",
    "training_batches",
]
