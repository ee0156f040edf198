"""``al.test_size``: a seeded evaluation set drawn from the pool, labelled by people first,
never selected or trained on, and the test set of every round (issue 14, item 2)."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from batl_jax import main as batl_main
from batl_jax import seeds
from batl_jax.errors import ConfigError
from tests.test_project_end_to_end import _label_batch, project, project_config
from tests.tiny_bert import save_tiny_bert


def _no_test_file(model, train, **over):
    cfg = project_config(model, train, train, train__mode="head", **over)
    cfg.data.test_file = ""
    return cfg


def test_evaluation_rows_are_seeded_unlabeled_rows_and_empty_without_the_setting():
    labels = np.array([0, 1, -1, -1, 2, -1, -1, -1, -1, -1])
    rows = seeds.evaluation_rows(labels, 4, seed=3)
    assert len(rows) == 4 and (labels[rows] == -1).all() and list(rows) == sorted(rows)
    assert list(rows) == list(seeds.evaluation_rows(labels, 4, seed=3))
    assert list(rows) != list(seeds.evaluation_rows(labels, 4, seed=4))
    full = seeds.evaluation_rows(np.arange(10) % 3, 5, seed=3)  # all labeled: any row
    assert len(set(full.tolist())) == 5
    assert seeds.evaluation_rows(labels, 0, seed=3).size == 0


def test_people_label_the_evaluation_set_first_and_every_round_is_tested_on_it(tmp_path, capsys):
    from batl_jax import labeled_dataset

    model = save_tiny_bert(tmp_path / "bert")
    train, _, gold = project(tmp_path / "data")  # 60 tickets, 9 labeled
    cfg = _no_test_file(model, train, al__oracle="human", al__test_size=12, al__rounds=2)
    work = tmp_path / "work"

    # First the evaluation set: 12 unlabeled rows, no training yet.
    assert batl_main.run(cfg, str(work)) == []
    assert "initial set (round -1): 12 samples to label" in capsys.readouterr().out
    batch = [json.loads(x) for x in (work / "queries" / "round_-1.jsonl").open()]
    held_out = seeds.evaluation_rows(np.array([0] * 9 + [-1] * 51), 12, cfg.seed)
    assert sorted(r["row"] for r in batch) == held_out.tolist()
    _label_batch(work, tmp_path, gold, -1, capsys)

    # Round 0 trains on the 9 existing labels and is tested on the 12 people labelled.
    rows = batl_main.run(cfg, str(work))
    assert [r["labeled"] for r in rows] == [9] and set(rows[0]["test"]) >= {"accuracy"}
    assert rows[0]["test_majority_rate"] == pytest.approx(
        max(np.unique([gold[r["id"]] for r in batch], return_counts=True)[1]) / 12
    )
    _label_batch(work, tmp_path, gold, 0, capsys)
    rows = batl_main.run(cfg, str(work))
    assert [r["labeled"] for r in rows] == [9, 19] and all(r["test"] for r in rows)
    picked = [
        row for rec in map(json.loads, (work / "selected.jsonl").open()) for row in rec["rows"]
    ]
    assert len(picked) == 10 and not set(picked) & set(held_out.tolist())

    out = tmp_path / "labeled.csv"
    labeled_dataset.write(work, out)
    got = list(csv.DictReader(out.open()))
    evaluation = [r for r in got if r["split"] == "evaluation"]
    assert len(got) == 19 + 12 and len(evaluation) == 12
    assert {(r["round"], r["source"]) for r in evaluation} == {("-1", "human")}


def test_a_simulated_run_keeps_the_evaluation_rows_out_of_the_pool(tmp_path):
    model = save_tiny_bert(tmp_path / "bert")
    train, _, _ = project(tmp_path / "data", known=60)
    cfg = _no_test_file(model, train, al__test_size=15, al__rounds=3)
    work = tmp_path / "work"
    rows = batl_main.run(cfg, str(work))
    assert [r["labeled"] for r in rows] == [10, 20, 30] and all(r["test"] for r in rows)
    held_out = set(seeds.evaluation_rows(np.zeros(60), 15, cfg.seed).tolist())
    picked = [
        row for rec in map(json.loads, (work / "selected.jsonl").open()) for row in rec["rows"]
    ]
    assert len(picked) == 20 and not set(picked) & held_out


@pytest.mark.parametrize(
    ("over", "why"),
    [
        ({"al__test_size": 5, "with_test": True}, "has a labeled test split"),
        ({"al__test_size": 45}, "more than the pool can spare"),
    ],
)
def test_test_size_is_refused_where_it_cannot_work(tmp_path, over, why):
    from batl_jax import setup, sharding

    model = save_tiny_bert(tmp_path / "bert")
    train, test, _ = project(tmp_path / "data", known=60)
    with_test = over.pop("with_test", False)
    cfg = _no_test_file(model, train, **over)
    if with_test:
        cfg.data.test_file = str(test)
    with pytest.raises(ConfigError, match=why):
        setup.build(cfg, sharding.make_mesh())
