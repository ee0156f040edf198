"""NA-aware relation-extraction metrics (numpy only): sentence level, bag level, SemEval official.

Conventions shared by every function here:

* Probabilities ``probs`` are ``(N, C)``; ``labels`` are ``(N,)`` class indices; ``na_index`` is
  the no-relation class ("Other" / "None" / "NA").
* The predicted class is ``argmax`` over all C classes (NA included); ``np.argmax`` breaks ties
  towards the lower class index.
* Empty cases return ``0.0``, never NaN: a precision with no predicted positives, a recall with
  no gold positives, an F1 whose P + R is 0, a P@N or PR-AUC with nothing to rank or no gold
  facts, a macro average over no classes.

Ranking metrics (DISTRE / OpenNRE style). Every (instance, non-NA relation) pair is a candidate
fact scored by that relation's probability; the NA column is never ranked. Pairs are sorted by
score, descending; ties keep a stable order: lower instance (bag) index first, then lower class
index. A pair is correct when the relation is the gold label (for bags: one of the bag's gold
labels). Over that ranking:

* ``p_at_{N}``: precision of the top N pairs; N is clipped to the number of pairs
  (N_instances x (C - 1)) and the N actually used is reported as ``p_at_{N}_n``.
* ``pr_auc``: area under the precision-recall curve traced by the ranking, recall denominator =
  the number of non-NA gold facts (with K ranked pairs, recall may stay below 1). The area is the
  **trapezoid** rule over the points (recall@k, precision@k), k = 1..K, with no extra (0, 1)
  anchor -- what OpenNRE's ``sklearn.metrics.auc(x=recall, y=precision)`` computes, so numbers
  are comparable with the distant-supervision literature.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import numpy as np

from batl_jax.tasks.relation_readers import SEMEVAL_LABELS, SEMEVAL_NA


def _check(probs, labels, na_index: int) -> tuple[np.ndarray, np.ndarray]:
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.asarray(labels)
    if probs.ndim != 2 or labels.ndim != 1 or probs.shape[0] != labels.shape[0]:
        raise ValueError(f"need probs (N, C) and labels (N,), got {probs.shape} / {labels.shape}")
    num_classes = probs.shape[1]
    if not 0 <= na_index < num_classes:
        raise ValueError(f"na_index={na_index} is not a class index for C={num_classes}")
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(
            f"labels must be in [0, {num_classes}), got {labels.min()}..{labels.max()}"
        )
    if not np.all(np.isfinite(probs)):
        raise ValueError("probs contain NaN or inf")
    return probs, labels.astype(np.int64)


def _div(a: float, b: float) -> float:
    return float(a) / float(b) if b else 0.0


def _prf(tp: int, pred_pos: int, gold_pos: int) -> tuple[float, float, float]:
    p, r = _div(tp, pred_pos), _div(tp, gold_pos)
    return p, r, _div(2 * p * r, p + r)


def _ranking_metrics(scores, correct, num_gold: int, na_index: int, p_at_n) -> dict:
    """P@N and PR-AUC over every (row, non-NA class) pair; see the module docstring."""
    scores = np.delete(scores, na_index, axis=1).reshape(-1)  # row-major: (row, class) order
    correct = np.delete(correct, na_index, axis=1).reshape(-1)
    order = np.argsort(-scores, kind="stable")  # stable sort = the documented tie order
    hits = np.cumsum(correct[order])
    k = np.arange(1, hits.size + 1)
    out = {}
    for n in p_at_n:
        if int(n) < 1:
            raise ValueError(f"p_at_n values must be >= 1, got {n}")
        used = min(int(n), hits.size)
        out[f"p_at_{n}"] = _div(hits[used - 1], used) if used else 0.0
        out[f"p_at_{n}_n"] = used
    if hits.size and num_gold:
        precision, recall = hits / k, hits / num_gold
        # Trapezoid rule written out (np.trapz was renamed across numpy versions).
        area = np.sum(np.diff(recall) * (precision[1:] + precision[:-1]) / 2.0)
        out["pr_auc"] = float(area)
    else:
        out["pr_auc"] = 0.0
    return out


def relation_metrics(probs, labels, *, na_index: int, p_at_n: Sequence[int] = (100, 200, 500)):
    """Sentence-level metrics with the no-relation class ``na_index`` treated as negative.

    Keys:

    * ``accuracy``: fraction of instances whose argmax equals the gold label (NA included).
    * ``micro_precision`` / ``micro_recall`` / ``micro_f1``: TP = pred == gold != NA; predicted
      positives = pred != NA; gold positives = gold != NA.
    * ``macro_f1``: mean of per-class F1 over the non-NA classes that occur in the gold labels
      or the predictions; a class that is neither gold nor predicted anywhere has an undefined
      F1 and is left out (so a 13-label model scored on a split with 7 labels is not penalised
      for the 6 absent ones). ``macro_f1_classes`` is the number of classes averaged.
    * ``p_at_{N}``, ``p_at_{N}_n``, ``pr_auc``: the ranking metrics of the module docstring.
    * ``num_gold_facts``: the number of non-NA gold labels (the recall denominator).
    """
    probs, labels = _check(probs, labels, na_index)
    num_classes = probs.shape[1]
    preds = probs.argmax(axis=1) if labels.size else labels
    gold_pos, pred_pos = labels != na_index, preds != na_index
    tp = int(np.sum((preds == labels) & gold_pos))
    p, r, f = _prf(tp, int(pred_pos.sum()), int(gold_pos.sum()))
    out = {
        "accuracy": _div(np.sum(preds == labels), labels.size),
        "micro_precision": p,
        "micro_recall": r,
        "micro_f1": f,
    }
    f1s = []
    for c in range(num_classes):
        n_gold, n_pred = int(np.sum(labels == c)), int(np.sum(preds == c))
        if c == na_index or (n_gold == 0 and n_pred == 0):
            continue
        f1s.append(_prf(int(np.sum((preds == c) & (labels == c))), n_pred, n_gold)[2])
    out["macro_f1"] = float(np.mean(f1s)) if f1s else 0.0
    out["macro_f1_classes"] = len(f1s)
    correct = np.zeros(probs.shape, dtype=bool)
    correct[np.arange(labels.size), labels] = True
    out.update(_ranking_metrics(probs, correct, int(gold_pos.sum()), na_index, p_at_n))
    out["num_gold_facts"] = int(gold_pos.sum())
    return out


def bag_metrics(
    probs,
    labels,
    bag_keys: Sequence[Hashable],
    *,
    na_index: int,
    p_at_n: Sequence[int] = (100, 200, 500),
):
    """Bag-level (multi-instance) metrics; every key is prefixed ``bag_``.

    Instances with equal ``bag_keys[i]`` (e.g. ``(head name, tail name)``) form a bag, numbered
    in order of first appearance (that number is the tie order of the ranking). A bag's scores
    are the element-wise max of its sentences' probabilities (all classes, NA included); its gold
    label set is the set of its sentences' non-NA labels (empty = an NA bag).

    * ``bag_p_at_{N}`` / ``bag_p_at_{N}_n`` / ``bag_pr_auc``: the ranking metrics over every
      (bag, non-NA relation) pair; a pair is correct if the relation is in the bag's gold set;
      recall denominator = the total number of (bag, gold relation) facts.
    * ``bag_micro_precision`` / ``_recall`` / ``_f1``: one prediction per bag, the argmax of the
      pooled scores; a non-NA prediction is a TP if it is in the bag's gold set. Predicted
      positives = bags predicted non-NA; gold positives = all gold facts, so a bag with two gold
      relations can contribute at most one TP (that is the cost of single-label prediction).
    * ``bag_count``, ``bag_num_gold_facts``.
    """
    probs, labels = _check(probs, labels, na_index)
    keys = list(bag_keys)
    if len(keys) != labels.size:
        raise ValueError(f"bag_keys has {len(keys)} entries for {labels.size} instances")
    if any(k is None for k in keys):  # examples without a bag would silently share one bag
        raise ValueError("bag_keys contain None: every instance needs a bag key")
    index: dict = {}
    bag_of = np.array([index.setdefault(k, len(index)) for k in keys], dtype=np.int64)
    num_bags, num_classes = len(index), probs.shape[1]
    pooled = np.full((num_bags, num_classes), -np.inf)
    np.maximum.at(pooled, bag_of, probs)
    gold = np.zeros((num_bags, num_classes), dtype=bool)
    gold[bag_of, labels] = True
    gold[:, na_index] = False
    num_facts = int(gold.sum())

    preds = pooled.argmax(axis=1) if num_bags else np.zeros(0, dtype=np.int64)
    pred_pos = preds != na_index
    tp = int(np.sum(gold[np.arange(num_bags), preds] & pred_pos))
    p, r, f = _prf(tp, int(pred_pos.sum()), num_facts)
    out = {"micro_precision": p, "micro_recall": r, "micro_f1": f}
    out.update(_ranking_metrics(pooled, gold, num_facts, na_index, p_at_n))
    out["count"], out["num_gold_facts"] = num_bags, num_facts
    return {f"bag_{k}": v for k, v in out.items()}


# --------------------------------------------------------------------------------------------
# SemEval-2010 Task 8 official scores (scorer v1.2)
# --------------------------------------------------------------------------------------------

_SEMEVAL_SET = frozenset(SEMEVAL_LABELS)


def _undirected(label: str) -> str:
    if label not in _SEMEVAL_SET:
        raise ValueError(
            f"{label!r} is not a SemEval-2010 Task 8 label (the scorer accepts only the 19 labels)"
        )
    return label.split("(", 1)[0]


def _semeval_macro_f1(pred_labels: Sequence[str], gold_labels: Sequence[str], directed: bool):
    if len(pred_labels) != len(gold_labels):
        raise ValueError(f"{len(pred_labels)} predictions for {len(gold_labels)} gold labels")
    pred_rel = [_undirected(p) for p in pred_labels]
    gold_rel = [_undirected(g) for g in gold_labels]
    # As in the scorer: average over the relations that occur in the gold labels, Other excluded.
    relations = sorted(set(gold_rel) - {SEMEVAL_NA})
    # A hit needs the exact label when directed: the right relation with the wrong direction
    # is wrong, yet it still counts as a prediction of that relation (the scorer's xDIRx).
    compared = (pred_labels, gold_labels) if directed else (pred_rel, gold_rel)
    hit = [p == g for p, g in zip(*compared, strict=True)]
    f1s = []
    for rel in relations:
        tp = sum(h and g == rel for h, g in zip(hit, gold_rel, strict=True))
        f1s.append(_prf(tp, pred_rel.count(rel), gold_rel.count(rel))[2])
    return float(np.mean(f1s)) if f1s else 0.0


def semeval_official_macro_f1(pred_labels: Sequence[str], gold_labels: Sequence[str]) -> float:
    """The official SemEval-2010 Task 8 score (scorer v1.2, evaluation (iii)), as a fraction.

    (9+1)-way classification with directionality taken into account: per relation R (direction
    stripped), P = exact-label hits / predictions whose relation is R (wrong-direction ones
    included), R = exact-label hits / gold instances of R; the score is the mean F1 over the
    relations present in the gold labels, ``Other`` excluded. The scorer prints percent; this
    returns ``[0, 1]``. Labels outside the 19 raise ``ValueError``; no gold relation -> 0.0.
    """
    return _semeval_macro_f1(pred_labels, gold_labels, directed=True)


def semeval_undirected_macro_f1(pred_labels: Sequence[str], gold_labels: Sequence[str]) -> float:
    """SemEval-2010 Task 8 scorer evaluation (ii): (9+1)-way macro-F1 with direction ignored."""
    return _semeval_macro_f1(pred_labels, gold_labels, directed=False)
