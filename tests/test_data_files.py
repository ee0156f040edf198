"""A user's own files (data.name=files), the hub route's blank labels, the loader registry
and the Task protocol."""

from __future__ import annotations

import gzip
import json
import logging
import subprocess
import sys

import datasets
import numpy as np
import pandas as pd
import pytest

from batl_jax import data, tasks
from batl_jax.config import get_base_config
from batl_jax.data import UNLABELED
from batl_jax.errors import ConfigError, DataError
from batl_jax.tasks.relation import RelationTask

# A ticket pool: its own column names, an extra column, ids with leading zeros, two blanks.
POOL = [
    {"ticket_id": "007", "body": "printer on fire", "category": "technical", "prio": "high"},
    {"ticket_id": "8", "body": "refund please", "category": "billing", "prio": "low"},
    {"ticket_id": "9", "body": "cannot log in", "category": "", "prio": "high"},
    {"ticket_id": "10", "body": "invoice twice", "category": "billing", "prio": "NA"},
    {"ticket_id": "11", "body": "where is my parcel", "category": None, "prio": "low"},
]
TEST = [
    {"ticket_id": "t1", "body": "screen flickers", "category": "technical", "prio": "low"},
    {"ticket_id": "t2", "body": "talk to a human", "category": "other", "prio": "high"},
]


def _write(path, rows, fmt):
    """``rows`` as a file of ``fmt`` (csv, tsv, jsonl, json, parquet, csv.gz, ...)."""
    df = pd.DataFrame(rows)
    opts = {"compression": "gzip"} if fmt.endswith(".gz") else {}
    base = fmt.removesuffix(".gz")
    if base in ("csv", "tsv"):
        df.to_csv(path, sep="," if base == "csv" else "\t", index=False, **opts)
    elif base == "jsonl":
        df.to_json(path, orient="records", lines=True, **opts)
    elif base == "json":
        df.to_json(path, orient="records", **opts)
    else:
        df.to_parquet(path)
    return str(path)


def _cfg(train_file, test_file="", **data_overrides):
    c = get_base_config()
    c.data.name = "files"
    c.data.train_file = str(train_file)
    c.data.test_file = str(test_file)
    c.data.id_field = "ticket_id"
    c.data.text_field = "body"
    c.data.label_field = "category"
    for key, value in data_overrides.items():
        c.data[key] = value
    return c


def _files(tmp_path, fmt="csv", pool=POOL, test=TEST):
    train = _write(tmp_path / f"pool.{fmt}", pool, fmt)
    return train, (_write(tmp_path / f"test.{fmt}", test, fmt) if test is not None else "")


@pytest.mark.parametrize(
    "fmt", ["csv", "tsv", "jsonl", "json", "parquet", "csv.gz", "tsv.gz", "jsonl.gz"]
)
def test_round_trip(tmp_path, fmt):
    ds = data.load_dataset(_cfg(*_files(tmp_path, fmt)), seed=0)
    # Sorted distinct labels of both files: "other" only occurs in the test file.
    assert ds.name == "files" and ds.label_names == ["billing", "other", "technical"]
    assert ds.train.ids == ["007", "8", "9", "10", "11"]
    assert ds.train.texts == [r["body"] for r in POOL]
    assert ds.train.labels.tolist() == [2, 0, UNLABELED, 0, UNLABELED]
    assert ds.train.num_unlabeled == 2
    assert ds.train.columns["prio"] == ["high", "low", "high", "NA", "low"]  # "NA" stays text
    assert ds.train.columns["ticket_id"] == ["007", "8", "9", "10", "11"]
    assert ds.test.ids == ["t1", "t2"] and ds.test.labels.tolist() == [2, 1]
    assert ds.test.columns["body"] == ["screen flickers", "talk to a human"]


def test_row_numbers_numeric_labels_and_subset(tmp_path):
    rows = [{"t": f"text {i}", "y": y} for i, y in enumerate([10, 2, None, 2])]
    train = _write(tmp_path / "p.jsonl", rows, "jsonl")
    cfg = _cfg(train, id_field="", text_field="t", label_field="y", pool_limit=3)
    full = data.load_dataset(_cfg(train, id_field="", text_field="t", label_field="y"), 0)
    assert full.train.ids == ["0", "1", "2", "3"]
    assert full.label_names == ["2", "10"]  # numbers in numeric order, whole floats as ints
    assert full.train.labels.tolist() == [1, 0, UNLABELED, 0]
    assert len(full.test) == 0 and full.test.labels.shape == (0,)  # no test file
    part = data.load_dataset(cfg, 0).train
    assert len(part) == 3
    for i, rid in enumerate(part.ids):  # columns follow the rows the subset keeps
        assert part.columns["t"][i] == f"text {rid}" and part.texts[i] == f"text {rid}"


def test_explicit_label_names(tmp_path):
    ds = data.load_dataset(
        _cfg(*_files(tmp_path), label_names=("technical", "billing", "other", "spam")), 0
    )
    assert ds.label_names == ["technical", "billing", "other", "spam"]
    assert ds.train.labels.tolist() == [0, 1, UNLABELED, 1, UNLABELED]
    with pytest.raises(DataError) as e:
        data.load_dataset(_cfg(*_files(tmp_path), label_names=("technical", "billing")), 0)
    msg = str(e.value)
    assert "record 2 (id t2) has unknown label" in msg and "'other'" in msg
    assert "--config.data.label_names" in msg and "\n" not in msg
    with pytest.raises(ConfigError, match="blank or repeated"):
        data.load_dataset(_cfg(*_files(tmp_path), label_names=("a", "a")), 0)


def test_unlabeled_test_rows(tmp_path, caplog):
    blank = [{**r, "category": ""} for r in TEST]
    with caplog.at_level(logging.WARNING):
        ds = data.load_dataset(_cfg(*_files(tmp_path, test=blank)), 0)
    assert len(ds.test) == 0 and ds.label_names == ["billing", "technical"]
    assert sum("has no labels" in r.getMessage() for r in caplog.records) == 1
    half = [TEST[0], {**TEST[1], "category": None}]
    ds = data.load_dataset(_cfg(*_files(tmp_path, "jsonl", test=half)), 0)
    assert ds.test.ids == ["t1"] and ds.test.columns["prio"] == ["low"]


def _error(tmp_path, *args, **overrides) -> str:
    with pytest.raises((DataError, ConfigError)) as e:
        data.load_dataset(_cfg(*args, **overrides), 0)
    msg = str(e.value)
    assert "\n" not in msg
    return msg


def test_bad_inputs(tmp_path):
    train, test = _files(tmp_path)
    assert "missing data file" in _error(tmp_path, tmp_path / "nope.csv")
    assert "--config.data.test_file" in _error(tmp_path, train, tmp_path / "nope.csv")
    msg = _error(tmp_path, train, text_field="text")
    assert "no column 'text' (data.text_field)" in msg
    assert "ticket_id, body, category, prio" in msg and "--config.data.text_field" in msg
    assert "no column 'id' (data.id_field)" in _error(tmp_path, train, id_field="id")
    assert "needs --config.data.train_file" in _error(tmp_path, "")
    assert "cannot tell the format" in _error(tmp_path, tmp_path / "pool.xlsx")
    gz = tmp_path / "pool.parquet.gz"
    gz.write_bytes(gzip.compress(b"x"))
    assert "un-gzip it" in _error(tmp_path, gz)


@pytest.mark.parametrize(
    "row,expected",
    [
        ({"body": "  "}, "record 3 (id 9) has empty text"),
        ({"ticket_id": "8"}, "record 3 (id 8) has duplicate id"),
        ({"ticket_id": ""}, "record 3 (id None) has missing id"),
    ],
)
def test_bad_rows(tmp_path, row, expected):
    pool = [*POOL[:2], {**POOL[2], **row}, *POOL[3:]]
    msg = _error(tmp_path, *_files(tmp_path, pool=pool))
    assert expected in msg and "on_error=skip" in msg
    skipped = data.load_dataset(_cfg(*_files(tmp_path, pool=pool), on_error="skip"), 0)
    assert len(skipped.train) == len(POOL) - 1 and sum(skipped.skipped.values()) == 1


def test_no_labels_anywhere(tmp_path):
    files = _files(tmp_path, pool=[{**r, "category": None} for r in POOL], test=None)
    assert "set --config.data.label_names" in _error(tmp_path, *files)
    ds = data.load_dataset(_cfg(*files, label_names=("a", "b")), 0)
    assert ds.train.num_unlabeled == len(POOL)


def test_bad_json_line(tmp_path):
    path = tmp_path / "pool.jsonl"
    path.write_text(json.dumps(POOL[0]) + "\n{not json\n")
    assert "line 2 is not valid JSON" in _error(tmp_path, path)


def _hub(monkeypatch, labels, class_label):
    rows = {"text": [f"t{i}" for i in range(len(labels))], "label": labels}
    features = None
    if class_label:
        features = datasets.Features(
            {"text": datasets.Value("string"), "label": datasets.ClassLabel(names=["a", "b"])}
        )
    split = datasets.Dataset.from_dict(rows, features=features)
    dd = datasets.DatasetDict({"train": split, "test": split.select([0])})
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: dd)
    c = get_base_config()
    c.data.name, c.data.hub_id = "hub", "org/name"
    return c


@pytest.mark.parametrize("class_label", [False, True])
def test_hub_blank_labels_are_missing_not_a_class(monkeypatch, class_label):
    labels = [0, 1, -1] if class_label else ["a", "b", None]
    cfg = _hub(monkeypatch, labels, class_label)
    with pytest.raises(DataError, match="record 3 .* has missing label"):
        data.load_dataset(cfg, 0)
    cfg.al.oracle = "human"  # people label the pool: the row is unlabeled, not class "None"
    ds = data.load_dataset(cfg, 0)
    assert ds.label_names == ["a", "b"] and ds.train.labels.tolist() == [0, 1, UNLABELED]


def test_registry_and_no_upward_import():
    code = "import sys, batl_jax.data; assert 'batl_jax.tasks' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
    names = data.registered_names()
    assert {"ag_news", "csabstruct", "sst2", "hub", "files"} <= set(names)
    assert {"semeval", "wiki_kbp", "nyt10"} <= set(names)  # registered by batl_jax.tasks
    with pytest.raises(ValueError, match="already has a loader"):
        data.register_loader("files", lambda req: None)
    c = get_base_config()
    c.data.name = "imdb"
    with pytest.raises(ConfigError, match="unknown data.name 'imdb': use one of .*files"):
        data.load_dataset(c, 0)


def test_tasks_satisfy_protocol(tmp_path):
    ds = data.load_dataset(_cfg(*_files(tmp_path)), 0)
    task = tasks.get_task(get_base_config(), ds)
    assert isinstance(task, tasks.Task) and task.num_labels == 3
    # Unlabeled rows do not count: 2 of the 3 labeled pool rows are "billing".
    assert task.majority_rate(ds.train) == pytest.approx(2 / 3)
    relation = RelationTask(["Other", "Cause-Effect(e1,e2)"], "semeval")
    assert isinstance(relation, tasks.Task) and relation.na_index == 0
    assert np.isclose(relation.majority_rate(ds.test), 0.5)
