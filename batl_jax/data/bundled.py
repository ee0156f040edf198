"""The bundled classification datasets (AG News, CSAbstruct, SST-2) and hub datasets.

Bundled datasets are read from a data dir laid out like ``shared/data`` (see its README);
``data.name=hub`` reads any hub dataset with a text and a label column. A row without a
label is refused unless people label the pool (``al.oracle=human``); then it is
:data:`~batl_jax.data.splits.UNLABELED`, never a class of its own.
"""

from __future__ import annotations

from batl_jax.data.loading import DataRequest, resolve_data_dir
from batl_jax.data.reading import read_json_records
from batl_jax.data.splits import Dataset, build_split, cell_text
from batl_jax.errors import ConfigError, DataError

# Files per bundled dataset: (train file, test file, text field, label field, label names).
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
BUNDLED = tuple(_LOCAL)


def load_bundled(req: DataRequest) -> Dataset:
    """``data.name`` in :data:`BUNDLED`: its two JSON-lines files under ``data.dir``."""
    train_file, test_file, text_f, label_f, label_names = _LOCAL[req.name]
    root = resolve_data_dir(req.data_dir)
    skipped: dict[str, int] = {}
    splits = []
    for f in (train_file, test_file):
        recs = read_json_records(root / f, "check --config.data.dir")
        splits.append(
            build_split(
                recs,
                text_f,
                label_f,
                label_names,
                where=f,
                on_error=req.on_error,
                skipped=skipped,
                allow_missing_labels=f == train_file and req.allow_unlabeled_pool,
            )
        )
    return Dataset(req.name, list(label_names), splits[0], splits[1], skipped)


def _hub_splits(req: DataRequest) -> dict:
    import datasets

    if not req.hub_id:
        raise ConfigError("data.name=hub needs --config.data.hub_id=ORG/NAME")
    try:
        dd = datasets.load_dataset(req.hub_id, req.hub_config or None)
    except Exception as e:
        raise DataError(
            f"cannot load hub dataset {req.hub_id!r} ({type(e).__name__}: {e}); check the "
            "id and network access, or use a local data dir"
        ) from e
    for key in (req.train_split, req.test_split):
        if key not in dd:
            raise DataError(
                f"hub dataset {req.hub_id!r} has no split {key!r} "
                f"(has {sorted(dd)}); set data.train_split / data.test_split"
            )
    return {key: dd[key] for key in (req.train_split, req.test_split)}


def load_hub(req: DataRequest) -> Dataset:
    """``data.name=hub``: label names from a ``ClassLabel`` column, else the sorted
    distinct labels of the train split. Blank labels (and ``ClassLabel``'s -1) are missing
    labels, refused unless people label the pool."""
    splits = _hub_splits(req)
    feature = splits[req.train_split].features.get(req.label_field)
    class_label = feature is not None and hasattr(feature, "names")
    if class_label:
        label_names = list(feature.names)
    else:
        found = {cell_text(x) for x in splits[req.train_split][req.label_field]}
        label_names = sorted(found - {None})
    skipped: dict[str, int] = {}
    built = []
    for key in (req.train_split, req.test_split):
        recs = splits[key].to_list()
        for r in recs:
            label = r.get(req.label_field)
            if class_label:
                r[req.label_field] = None if label == -1 else label
            else:
                r[req.label_field] = cell_text(label)
        built.append(
            build_split(
                recs,
                req.text_field,
                req.label_field,
                label_names,
                where=f"{req.hub_id}:{key}",
                on_error=req.on_error,
                skipped=skipped,
                allow_missing_labels=key == req.train_split and req.allow_unlabeled_pool,
            )
        )
    return Dataset(req.hub_id, label_names, built[0], built[1], skipped)
