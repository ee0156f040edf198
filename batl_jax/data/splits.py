"""Splits and datasets: rows with an id, a text and a label index, and how records become them.

A pool row without a label carries :data:`UNLABELED`; a human oracle (README, "Labelling by
hand") supplies it. Every reader (bundled files, hub datasets, a user's own files, relation
sets) ends in a :class:`Split`, and all but the relation readers build it with
:func:`build_split`, so malformed records are reported the same way everywhere.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence

import numpy as np

from batl_jax.errors import DataError

# Label of a pool row without one: a human supplies it.
UNLABELED = -1


@dataclasses.dataclass
class Split:
    """One split: row ``i`` has id ``ids[i]``, text ``texts[i]`` and label ``labels[i]``.

    ``examples`` holds task-specific records (relation extraction); ``bags`` holds the
    bag key of each row when the dataset groups sentences into bags; ``columns`` holds
    every original column of a user's file (column name -> one value per row), so a
    labeled dataset can be written back with them.
    """

    ids: list[str]
    texts: list[str]
    labels: np.ndarray
    examples: list | None = None
    bags: list | None = None
    columns: dict[str, list] | None = None

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def num_unlabeled(self) -> int:
        """Rows whose label is :data:`UNLABELED`."""
        return int(np.count_nonzero(self.labels == UNLABELED))

    @classmethod
    def empty(cls) -> Split:
        """A split of no rows: a dataset without a labeled test set."""
        return cls(ids=[], texts=[], labels=np.zeros(0, np.int32))

    def subset(self, rows: np.ndarray) -> Split:
        def pick(xs):
            return None if xs is None else [xs[i] for i in rows]

        columns = None
        if self.columns is not None:
            columns = {name: pick(values) for name, values in self.columns.items()}
        return Split(
            ids=pick(self.ids),
            texts=pick(self.texts),
            labels=self.labels[rows],
            examples=pick(self.examples),
            bags=pick(self.bags),
            columns=columns,
        )


@dataclasses.dataclass
class Dataset:
    name: str
    label_names: list[str]
    train: Split
    test: Split
    skipped: dict[str, int] = dataclasses.field(default_factory=dict)


def cell_text(value) -> str | None:
    """A cell as text, or None when it is blank: None, NaN, or only whitespace.

    Whole floats print as integers: a label or id column with a blank cell arrives as
    floats from JSON or Parquet (``3.0``), and the user wrote ``3``.
    """
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    text = str(value).strip()
    return text or None


def default_id(record: dict, row: int) -> str | None:
    """The bundled files' id: their ``id`` or ``idx`` field, else the row number."""
    return str(record.get("id", record.get("idx", row)))


def _problem(rid, label, text, seen, allow_missing, label_names, index):
    """Why a record is unusable (a key of the skip report) or None, and its label name."""
    if rid is None:
        return "missing_id", label
    if not isinstance(text, str) or not text.strip():
        return "empty_text", label
    if rid in seen:
        return "duplicate_id", label
    if isinstance(label, str) and not label.strip():
        label = None  # a blank cell is no label, not a class named ""
    if label is None:
        return (None if allow_missing else "missing_label"), label
    if isinstance(label, (int, np.integer)) and not isinstance(label, bool):
        if 0 <= int(label) < len(label_names):
            return None, label_names[int(label)]
        return "unknown_label", label
    if not isinstance(label, str) or label not in index:
        return "unknown_label", label
    return None, label


def build_split(
    records: Sequence[dict],
    text_field: str,
    label_field: str,
    label_names: Sequence[str],
    *,
    where: str,
    on_error: str,
    skipped: dict[str, int],
    allow_missing_labels: bool = False,
    id_of: Callable[[dict, int], str | None] = default_id,
    columns: dict[str, list] | None = None,
    fix: str = "fix the record",
    evaluation: bool = False,
) -> Split:
    """Rows of one split (``evaluation``: the test split, whose rows are never skipped
    silently, so its messages do not offer ``data.on_error=skip``). A label is a name in
    ``label_names`` or its index.

    ``allow_missing_labels`` (a pool people label) keeps rows without a label as
    :data:`UNLABELED`. Ids must be unique: human labels, queries and selected.jsonl refer
    to rows by id. ``columns`` (one list per column, aligned with ``records``) follow the
    rows kept. ``fix`` is what the error message tells the user to do first.
    """
    ids: list[str] = []
    texts: list[str] = []
    labels, kept = [], []
    index = {name: i for i, name in enumerate(label_names)}
    seen: set[str] = set()
    for row, rec in enumerate(records):
        rid, text = id_of(rec, row), rec.get(text_field)
        problem, label = _problem(
            rid, rec.get(label_field), text, seen, allow_missing_labels, label_names, index
        )
        if problem:
            if on_error == "fail":
                # Skipping test rows would change what the metrics measure: no such hint.
                skip = "" if evaluation else " or set --config.data.on_error=skip"
                raise DataError(
                    f"{where}: record {row + 1} (id {rid}) has {problem.replace('_', ' ')} "
                    f"(text={str(text)[:40]!r}, label={label!r}); {fix}{skip}"
                )
            skipped[problem] = skipped.get(problem, 0) + 1
            continue
        seen.add(str(rid))
        ids.append(str(rid))
        texts.append(str(text))  # a non-blank str: _problem checked it
        labels.append(UNLABELED if label is None else index[label])
        kept.append(row)
    if not ids:
        raise DataError(f"{where}: no usable records; check the file and the field names")
    if columns is not None:
        columns = {name: [values[r] for r in kept] for name, values in columns.items()}
    return Split(ids=ids, texts=texts, labels=np.asarray(labels, np.int32), columns=columns)


def subsample(split: Split, limit: int, seed: int) -> Split:
    """A seeded random ``limit`` rows of ``split`` in their order (all when 0 or more)."""
    if not limit or limit >= len(split):
        return split
    rows = np.sort(np.random.default_rng(seed).permutation(len(split))[:limit])
    return split.subset(rows)
