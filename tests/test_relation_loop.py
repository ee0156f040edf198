"""A 2-round relation-extraction loop on a tiny random BERT with SemEval and Wiki-KBP rows."""

from __future__ import annotations

import pytest

from batl_jax import main as batl_main
from tests.test_loop import tiny_config
from tests.tiny_bert import save_tiny_bert


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory):
    return save_tiny_bert(tmp_path_factory.mktemp("tiny_bert_re"))


@pytest.mark.parametrize(
    "dataset,na,extra",
    [("semeval", "Other", "semeval_official_f1"), ("wiki_kbp", "None", "bag_p_at_100")],
)
def test_relation_loop_two_rounds(tiny_bert, tmp_path, dataset, na, extra):
    cfg = tiny_config(
        tiny_bert,
        data__name=dataset,
        task__name="relation",
        task__no_relation_label=na,
        al__strategy="entropy",
        model__max_len=64,
    )
    cfg.data.buckets = (32, 64)
    if dataset == "wiki_kbp":
        cfg.data.on_error = "skip"
    rows = batl_main.run(cfg, str(tmp_path / dataset))
    assert [r["round"] for r in rows] == [0, 1]
    for key in ("micro_f1", "p_at_100", "p_at_100_n", "pr_auc", extra):
        assert key in rows[-1]["test"], key
    assert 0.0 <= rows[-1]["test"]["micro_f1"] <= 1.0
