"""Sentence classification: text → one of C labels; accuracy, micro-F1 and macro-F1."""

from __future__ import annotations

import numpy as np

from batl_jax.data import Encoded, Split, encode_texts
from batl_jax.tasks.base import majority_rate


def f1_scores(pred: np.ndarray, gold: np.ndarray, num_labels: int) -> dict[str, float]:
    """Accuracy, micro-F1 and macro-F1 (over labels that occur in gold or predictions)."""
    pred, gold = np.asarray(pred), np.asarray(gold)
    if len(gold) == 0:
        return {"accuracy": 0.0, "micro_f1": 0.0, "macro_f1": 0.0}
    acc = float((pred == gold).mean())
    f1s = []
    for c in range(num_labels):
        tp = int(((pred == c) & (gold == c)).sum())
        fp = int(((pred == c) & (gold != c)).sum())
        fn = int(((pred != c) & (gold == c)).sum())
        if tp + fp + fn == 0:
            continue
        f1s.append(2 * tp / (2 * tp + fp + fn))
    # Single-label multi-class: micro precision = micro recall = accuracy.
    return {"accuracy": acc, "micro_f1": acc, "macro_f1": float(np.mean(f1s)) if f1s else 0.0}


class ClassificationTask:
    """Plain sentence classification."""

    name: str = "classification"
    primary_metric: str = "accuracy"

    def __init__(self, label_names: list[str]):
        self.label_names = list(label_names)

    @property
    def num_labels(self) -> int:
        return len(self.label_names)

    def prepare_tokenizer(self, tokenizer) -> int:
        """Add task tokens to ``tokenizer``; returns how many were added (none here)."""
        return 0

    def encode(self, split: Split, tokenizer, max_len: int) -> Encoded:
        return encode_texts(split.texts, tokenizer, max_len)

    def metrics(self, probs: np.ndarray, split: Split) -> dict[str, float]:
        return f1_scores(probs.argmax(axis=1), split.labels, self.num_labels)

    def majority_rate(self, split: Split) -> float:
        return majority_rate(split.labels, self.num_labels)
