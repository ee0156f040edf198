"""A user's own files: ``data.name=files`` (README, "Your own project").

``data.train_file`` is the pool and ``data.test_file`` (optional) the evaluation set, each
a CSV, TSV, JSON, JSON-lines or Parquet file (text formats may be gzipped). Columns are
named by ``data.text_field``, ``data.label_field`` and ``data.id_field`` (empty: the row
number is the id). A blank or missing label means the row is unlabeled: pool rows become
:data:`~batl_jax.data.splits.UNLABELED`, test rows are left out of the evaluation set,
and a test file without any label is no test set at all. The label names are
``data.label_names`` when given, else the sorted distinct labels of both files. Every
original column is kept in :attr:`Split.columns` for the labeled-dataset export.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from batl_jax.data.loading import DataRequest
from batl_jax.data.reading import read_table
from batl_jax.data.splits import UNLABELED, Dataset, Split, build_split, cell_text
from batl_jax.errors import ConfigError, DataError

log = logging.getLogger(__name__)


def _check_columns(columns: list[str], fields: dict[str, str], setting: str, path: str) -> None:
    """Each configured field (config key -> column name) is a column of the file."""
    for key, column in fields.items():
        if column and column not in columns:
            raise DataError(
                f"{setting}={path!r} has no column {column!r} (data.{key}); its columns are "
                f"{', '.join(columns)}: set --config.data.{key} to one of them"
            )


def _read(path: str, setting: str, req: DataRequest) -> tuple[list[dict], list[str]]:
    records, columns = read_table(Path(path).expanduser(), setting)
    fields = dict(text_field=req.text_field, label_field=req.label_field, id_field=req.id_field)
    _check_columns(columns, fields, setting, path)
    return records, columns


def _label_sort_key(name: str):
    # Numeric labels in numeric order (2 before 10); names alphabetically after them.
    try:
        return (0, int(name), "")
    except ValueError:
        return (1, 0, name)


def infer_label_names(labels) -> list[str]:
    """The sorted distinct non-blank labels (the label list when none is configured)."""
    found = {t for t in map(cell_text, labels) if t is not None}
    return sorted(found, key=_label_sort_key)


def _text(value):
    # A number or other JSON value in the text column is text to the model.
    return value if value is None or isinstance(value, str) else str(value)


def _split(
    records, columns, label_names, req: DataRequest, *, path: str, skipped, evaluation=False
) -> Split:
    """One file's rows as a split; labels are compared as text (``3`` and ``"3"`` agree)."""
    rows = [
        {"text": _text(r.get(req.text_field)), "label": cell_text(r.get(req.label_field))}
        for r in records
    ]
    if req.id_field:
        ids = [cell_text(r.get(req.id_field)) for r in records]
        id_of = lambda rec, row: ids[row]
    else:
        id_of = lambda rec, row: str(row)
    fix = "fix the record"
    if req.label_names:
        fix = "fix the record, add its label to --config.data.label_names"
    return build_split(
        rows,
        "text",
        "label",
        label_names,
        where=path,
        on_error=req.on_error,
        skipped=skipped,
        allow_missing_labels=True,
        id_of=id_of,
        columns={c: [r.get(c) for r in records] for c in columns},
        fix=fix,
        evaluation=evaluation,
    )


def _labeled_only(split: Split, path: str) -> Split:
    """The test rows that carry a label; none at all is no test set (rounds then run
    without test metrics)."""
    labeled = np.flatnonzero(split.labels != UNLABELED)
    if len(labeled) == 0:
        log.warning("data.test_file %s has no labels: rounds run without test metrics", path)
        return Split.empty()
    if len(labeled) < len(split):
        log.warning(
            "data.test_file %s: %d of %d rows have no label and are left out of the test set",
            path,
            len(split) - len(labeled),
            len(split),
        )
        return split.subset(labeled)
    return split


def load_files(req: DataRequest) -> Dataset:
    """``data.name=files``: the pool from ``data.train_file``, the test set from
    ``data.test_file`` (an empty split when there is none)."""
    if not req.train_file:
        raise ConfigError(
            "data.name=files needs --config.data.train_file=PATH (a CSV, TSV, JSON, JSON-lines "
            "or Parquet file)"
        )
    train = _read(req.train_file, "data.train_file", req)
    test = _read(req.test_file, "data.test_file", req) if req.test_file else ([], [])
    label_names = list(req.label_names)
    if not label_names:
        label_names = infer_label_names(r.get(req.label_field) for r in train[0] + test[0])
        if not label_names:
            raise DataError(
                f"no labels in column {req.label_field!r} of the data files: set "
                "--config.data.label_names to the classes people will give"
            )
        log.info("label names (sorted labels of the files): %s", ", ".join(label_names))
    skipped: dict[str, int] = {}
    pool = _split(*train, label_names, req, path=req.train_file, skipped=skipped)
    evaluation = Split.empty()
    if req.test_file:
        evaluation = _split(
            *test, label_names, req, path=req.test_file, skipped=skipped, evaluation=True
        )
        evaluation = _labeled_only(evaluation, req.test_file)
    return Dataset("files", label_names, pool, evaluation, skipped)
