"""Relation metrics on hand-computed cases (ties, empty cases, bags, SemEval's official score)."""

import math

import numpy as np
import pytest

from batl_jax.tasks.relation_metrics import (
    bag_metrics,
    relation_metrics,
    semeval_official_macro_f1,
    semeval_undirected_macro_f1,
)


def test_basic_hand_computed():
    # Class 0 is NA. Preds: 1 (right), 0 (missed gold 2), 2 (false positive on NA), 1 (right).
    probs = np.array(
        [[0.1, 0.7, 0.2], [0.5, 0.1, 0.4], [0.2, 0.3, 0.5], [0.3, 0.6, 0.1]], dtype=np.float32
    )
    m = relation_metrics(probs, [1, 2, 0, 1], na_index=0, p_at_n=(1, 3, 5, 100))
    assert m["accuracy"] == pytest.approx(0.5)
    assert m["micro_precision"] == pytest.approx(2 / 3)
    assert m["micro_recall"] == pytest.approx(2 / 3)
    assert m["micro_f1"] == pytest.approx(2 / 3)
    assert m["macro_f1"] == pytest.approx(0.5)  # class 1: F1 1, class 2: F1 0
    assert m["macro_f1_classes"] == 2
    assert m["num_gold_facts"] == 3
    # Ranking: .7(0,1)+ .6(3,1)+ .5(2,2)- .4(1,2)+ .3(2,1)- .2(0,2)- .1(1,1)- .1(3,2)-
    assert m["p_at_1"] == 1.0 and m["p_at_1_n"] == 1
    assert m["p_at_3"] == pytest.approx(2 / 3)
    assert m["p_at_5"] == pytest.approx(3 / 5)
    # N larger than the 4 x 2 candidate pairs: clipped, and the N used is reported.
    assert m["p_at_100"] == pytest.approx(3 / 8) and m["p_at_100_n"] == 8
    # Trapezoid over (recall, precision): (1/3)*1 + (1/3)*(2/3 + 3/4)/2 = 41/72.
    assert m["pr_auc"] == pytest.approx(41 / 72)


def test_ties_are_stable_instance_then_class():
    # (0,2) and (1,1) tie at 0.5: the lower instance goes first, so P@1 = 0 (instance 0 is NA).
    probs = np.array([[0.2, 0.3, 0.5], [0.2, 0.5, 0.3]])
    m = relation_metrics(probs, [0, 1], na_index=0, p_at_n=(1, 2))
    assert m["p_at_1"] == 0.0 and m["p_at_2"] == 0.5
    # Within one instance, the lower class goes first: (0,1) before (0,2).
    m = relation_metrics(np.array([[0.0, 0.5, 0.5]]), [2], na_index=0, p_at_n=(1, 2))
    assert m["p_at_1"] == 0.0 and m["p_at_2"] == 0.5
    # Full tie: order (0,1)- (0,2)+ (1,1)+ (1,2)-; argmax ties go to class 1.
    probs = np.array([[0.2, 0.4, 0.4], [0.2, 0.4, 0.4]], dtype=np.float32)
    m = relation_metrics(probs, [2, 1], na_index=0, p_at_n=(1, 2, 3))
    assert (m["p_at_1"], m["p_at_2"], m["p_at_3"]) == (0.0, 0.5, pytest.approx(2 / 3))
    assert m["accuracy"] == 0.5
    # recall 0, 1/2, 1, 1; precision 0, 1/2, 2/3, 1/2 -> 1/8 + 7/24 = 5/12.
    assert m["pr_auc"] == pytest.approx(5 / 12)


def test_na_index_not_zero():
    # NA in the last column; the NA column is never ranked.
    probs = np.array([[0.6, 0.1, 0.3], [0.1, 0.2, 0.7]])
    m = relation_metrics(probs, [0, 2], na_index=2, p_at_n=(1, 10))
    assert m["micro_precision"] == 1.0 and m["micro_recall"] == 1.0 and m["accuracy"] == 1.0
    assert m["p_at_10_n"] == 4 and m["p_at_1"] == 1.0


def _all_finite(m):
    return all(math.isfinite(v) for v in m.values())


def test_no_predictions():
    # Every argmax is NA while gold has relations: P has no denominator -> 0.0, not NaN.
    probs = np.array([[0.9, 0.05, 0.05], [0.8, 0.1, 0.1]])
    m = relation_metrics(probs, [1, 2], na_index=0)
    assert _all_finite(m)
    assert m["micro_precision"] == m["micro_recall"] == m["micro_f1"] == 0.0
    assert m["macro_f1"] == 0.0 and m["macro_f1_classes"] == 2
    assert m["accuracy"] == 0.0
    # The ranking does not depend on argmax: (1,1).1- (1,2).1+ (0,1).05+ (0,2).05-.
    assert m["p_at_100"] == 0.5 and m["p_at_100_n"] == 4


def test_all_gold_na():
    probs = np.array([[0.2, 0.8, 0.0], [0.9, 0.05, 0.05]])
    m = relation_metrics(probs, [0, 0], na_index=0, p_at_n=(1,))
    assert _all_finite(m)
    assert m["micro_precision"] == m["micro_recall"] == m["micro_f1"] == 0.0
    assert m["pr_auc"] == 0.0 and m["p_at_1"] == 0.0 and m["num_gold_facts"] == 0
    # Class 1 is predicted (F1 0), class 2 is neither gold nor predicted (left out).
    assert m["macro_f1"] == 0.0 and m["macro_f1_classes"] == 1
    assert m["accuracy"] == 0.5


def test_all_na_predicted_and_gold():
    m = relation_metrics(np.array([[0.9, 0.1], [0.7, 0.3]]), [0, 0], na_index=0)
    assert _all_finite(m)
    assert m["accuracy"] == 1.0 and m["micro_f1"] == 0.0
    assert m["macro_f1"] == 0.0 and m["macro_f1_classes"] == 0


def test_empty_input():
    m = relation_metrics(np.zeros((0, 3)), np.zeros(0, dtype=int), na_index=0, p_at_n=(5,))
    assert _all_finite(m)
    assert m["p_at_5"] == 0.0 and m["p_at_5_n"] == 0 and m["pr_auc"] == 0.0
    b = bag_metrics(np.zeros((0, 3)), np.zeros(0, dtype=int), [], na_index=0, p_at_n=(5,))
    assert _all_finite(b) and b["bag_count"] == 0


def test_ranking_matches_brute_force():
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(5), size=40).round(2)  # rounding makes many ties
    labels = rng.integers(0, 5, size=40)
    m = relation_metrics(probs, labels, na_index=3, p_at_n=(7, 50))
    pairs = [(-probs[i, c], i, c) for i in range(40) for c in range(5) if c != 3]
    ranked = [labels[i] == c for _, i, c in sorted(pairs)]
    assert m["p_at_7"] == pytest.approx(sum(ranked[:7]) / 7)
    assert m["p_at_50"] == pytest.approx(sum(ranked[:50]) / 50)
    hits = np.cumsum(ranked)
    prec, rec = hits / np.arange(1, len(hits) + 1), hits / np.sum(labels != 3)
    assert m["pr_auc"] == pytest.approx(float(np.sum(np.diff(rec) * (prec[1:] + prec[:-1]) / 2)))
    assert 0.0 <= m["pr_auc"] <= 1.0


def test_bag_max_pooling_multi_label():
    # Bags A = {i0, i1, i2} (gold {1, 2}), B = {i3} (NA bag), C = {i4, i5} (gold {3}),
    # interleaved so the bag order is the order of first appearance: A, B, C.
    A, B, C = ("Obama", "Hawaii"), ("Paris", "France"), ("Apple", "Jobs")
    rows = [  # (key, label, probs)
        (A, 1, [0.1, 0.6, 0.2, 0.1]),
        (B, 0, [0.5, 0.1, 0.1, 0.3]),
        (A, 2, [0.2, 0.1, 0.5, 0.2]),
        (C, 3, [0.3, 0.1, 0.2, 0.4]),
        (A, 0, [0.4, 0.3, 0.2, 0.1]),
        (C, 3, [0.6, 0.3, 0.05, 0.05]),
    ]
    keys = [r[0] for r in rows]
    m = bag_metrics(
        np.array([r[2] for r in rows]), [r[1] for r in rows], keys, na_index=0, p_at_n=(2, 4, 100)
    )
    assert all(k.startswith("bag_") for k in m)
    assert m["bag_count"] == 3 and m["bag_num_gold_facts"] == 3
    # Pooled: A [.4 .6 .5 .2] -> 1 (in gold), B -> NA, C [.6 .3 .2 .4] -> NA.
    assert m["bag_micro_precision"] == 1.0
    assert m["bag_micro_recall"] == pytest.approx(1 / 3)
    assert m["bag_micro_f1"] == pytest.approx(0.5)
    # Ranking: .6(A,1)+ .5(A,2)+ .4(C,3)+ .3(B,3)- .3(C,1)- .2(A,3)- .2(C,2)- .1(B,1)- .1(B,2)-
    # (A,2) scores .5 only through max-pooling (i2's row); both A facts count as correct.
    assert m["bag_p_at_2"] == 1.0 and m["bag_p_at_4"] == 0.75
    assert m["bag_p_at_100"] == pytest.approx(1 / 3) and m["bag_p_at_100_n"] == 9
    assert m["bag_pr_auc"] == pytest.approx(2 / 3)


def test_bad_inputs_raise():
    with pytest.raises(ValueError):
        relation_metrics(np.zeros((2, 3)), [0, 3], na_index=0)
    with pytest.raises(ValueError):
        relation_metrics(np.zeros((2, 3)), [0, 1], na_index=3)
    with pytest.raises(ValueError):
        relation_metrics(np.zeros((2, 3)), [0, 1], na_index=0, p_at_n=(0,))
    with pytest.raises(ValueError):
        bag_metrics(np.zeros((2, 3)), [0, 1], [("a", "b")], na_index=0)


CE12, CE21 = "Cause-Effect(e1,e2)", "Cause-Effect(e2,e1)"
CW12, CW21 = "Component-Whole(e1,e2)", "Component-Whole(e2,e1)"


def test_semeval_directed_vs_undirected():
    gold = [CE12, CE21, CW12, "Other", "Other"]
    pred = [CE12, CE12, "Other", CW21, "Other"]
    # Directed: Cause-Effect 1 hit / 2 predicted / 2 gold -> F1 .5; Component-Whole 0 -> .25.
    assert semeval_official_macro_f1(pred, gold) == pytest.approx(0.25)
    # Undirected: Cause-Effect 2/2/2 -> 1; Component-Whole 0 -> .5.
    assert semeval_undirected_macro_f1(pred, gold) == pytest.approx(0.5)
    # A relation absent from the gold labels is not averaged (as in scorer v1.2).
    pred2 = pred[:4] + ["Message-Topic(e1,e2)"]
    assert semeval_official_macro_f1(pred2, gold) == pytest.approx(0.25)


def test_semeval_wrong_direction_only():
    gold, pred = ["Entity-Origin(e1,e2)", "Other"], ["Entity-Origin(e2,e1)", "Other"]
    assert semeval_official_macro_f1(pred, gold) == 0.0
    assert semeval_undirected_macro_f1(pred, gold) == 1.0


def test_semeval_edge_cases():
    assert semeval_official_macro_f1(["Other", CE12], ["Other", "Other"]) == 0.0
    assert semeval_official_macro_f1([], []) == 0.0
    with pytest.raises(ValueError, match="not a SemEval"):
        semeval_official_macro_f1(["Cause-Effect"], [CE12])
    with pytest.raises(ValueError):
        semeval_official_macro_f1([CE12], [CE12, CE12])
