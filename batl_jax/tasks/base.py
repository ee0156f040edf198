"""What the active-learning loop asks of a task (README, "Architecture").

A task turns a split's rows into model inputs, adds the tokens it needs to the
tokenizer, and scores predicted probabilities against a split's labels. Classification
and relation extraction implement it; :func:`batl_jax.tasks.get_task` picks one.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

from batl_jax.data import UNLABELED, Encoded, Split


@runtime_checkable
class Task(Protocol):
    """A task of the loop: ``label_names[i]`` is the name of output ``i``."""

    name: str
    label_names: list[str]
    primary_metric: str  # the key of ``metrics`` that learning curves plot

    @property
    def num_labels(self) -> int: ...

    def prepare_tokenizer(self, tokenizer) -> int:
        """Add the task's tokens; returns how many rows the embedding table must grow."""
        ...

    def encode(self, split: Split, tokenizer, max_len: int) -> Encoded:
        """Token ids of every row of ``split``, at most ``max_len`` per row."""
        ...

    def metrics(self, probs: np.ndarray, split: Split) -> dict[str, float]:
        """Scores of ``probs`` (rows x labels) against ``split``'s labels."""
        ...

    def majority_rate(self, split: Split) -> float:
        """The accuracy of always predicting ``split``'s most frequent label."""
        ...


def majority_rate(labels: np.ndarray, num_labels: int) -> float:
    """Share of the most frequent label among the labeled rows (0 when none is)."""
    labels = np.asarray(labels)
    counts = np.bincount(labels[labels != UNLABELED], minlength=num_labels)
    return float(counts.max() / max(1, counts.sum()))
