"""Stopping active learning when predictions stabilize: the "more principled criterion" the
paper's Algorithm 1 names beside a labeling budget.

Bloodgood & Vijay-Shanker (CoNLL 2009, "A method for stopping active learning based on
stabilizing predictions and the need for user-adjustable stopping"): fix a *stop set*, a
random sample of the unlabeled pool drawn once at the start whose labels are never needed.
Every round's model predicts it; Cohen's kappa measures how much consecutive rounds'
predictions agree. Once the mean kappa over the last ``window`` agreements (they used 3)
reaches ``threshold`` (they used 0.99), further labels barely change the model, so the run
stops after that round. Bloodgood & Grothendieck (2013, "Analysis of stopping active
learning based on stabilizing predictions") bound the change in F-measure between two
models whose predictions agree with kappa ``κ > 0`` by ``4(1 − κ)/κ``; every metrics row
carries that bound beside the kappa.

Everything here is a pure function of its arguments: a resumed run recomputes the same
decision from the rows' kappas (nothing else needs saving but the last round's predictions,
see :func:`save_predictions`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from pathlib import Path
from typing import cast

import numpy as np

from batl_jax.errors import StateError

# Second SeedSequence word of the stop-set draw: no other draw of a run uses a 2-word
# entropy starting with the seed and this value, and no strategy enters it.
STOP_SET_STREAM = 0x5709
# Means of equal kappas are not always equal to the kappa in floating point
# (mean(0.99, 0.99, 0.99) = 0.98999...); a threshold is reached within this tolerance.
_TOLERANCE = 1e-12
PREDICTIONS_DIR = "stop_set"


@dataclasses.dataclass(frozen=True)
class StopDecision:
    stop: bool  # the rule is met after this round
    reason: str  # one line: why it stops, or how far it is from stopping
    mean_kappa: float | None  # mean over the last `window` agreements (None: fewer exist)


def stop_set(num_rows: int, size: int, seed: int) -> np.ndarray:
    """Sorted pool row indices of the stop set: ``min(size, num_rows)`` rows drawn without
    replacement from ``seed`` alone, so every strategy under one seed predicts the same rows."""
    if num_rows < 0 or size < 1:
        raise ValueError(f"stop_set needs num_rows >= 0 and size >= 1, got {num_rows}, {size}")
    if size >= num_rows:
        return np.arange(num_rows, dtype=np.int64)
    rng = np.random.default_rng(np.random.SeedSequence([seed, STOP_SET_STREAM]))
    return np.sort(rng.choice(num_rows, size=size, replace=False)).astype(np.int64)


def cohen_kappa(a: np.ndarray, b: np.ndarray, num_classes: int) -> float:
    """Cohen's kappa between two label vectors over classes ``0 .. num_classes-1``.

    ``(p_o - p_e) / (1 - p_e)`` with the observed agreement ``p_o`` and the agreement
    ``p_e`` expected from the two marginals (what sklearn.metrics.cohen_kappa_score
    computes). When ``p_e = 1`` both vectors are the same single class throughout; the
    ratio is 0/0 (sklearn returns NaN) and we return 1.0: the predictions did not change,
    which is exactly what the stopping rule asks about.
    """
    a = np.asarray(a)
    b = np.asarray(b)
    if a.shape != b.shape or a.ndim != 1 or a.size == 0:
        raise ValueError(f"cohen_kappa needs equal-length 1-D vectors, got {a.shape}, {b.shape}")
    if min(a.min(), b.min()) < 0 or max(a.max(), b.max()) >= num_classes:
        raise ValueError(f"cohen_kappa: labels outside 0..{num_classes - 1}")
    n = a.size
    p_o = float(np.count_nonzero(a == b)) / n
    pa = np.bincount(a, minlength=num_classes) / n
    pb = np.bincount(b, minlength=num_classes) / n
    p_e = float(np.dot(pa, pb))
    if p_e >= 1.0:
        return 1.0
    return (p_o - p_e) / (1.0 - p_e)


def f_change_bound(kappa: float | None) -> float | None:
    """Bloodgood & Grothendieck's bound ``4(1 − κ)/κ`` on the change in F-measure between
    the two models; None when there is no kappa or ``κ ≤ 0`` (no bound exists). Above 1 the
    bound says nothing an F-measure's range does not already say (κ below 0.8)."""
    if kappa is None or kappa <= 0:
        return None
    return 4.0 * (1.0 - kappa) / kappa


def decide(kappas: Sequence[float | None], window: int, threshold: float) -> StopDecision:
    """Whether to stop after the latest round, given every round's kappa so far.

    ``kappas[r]`` is the agreement of round r's predictions with round r−1's (None for the
    first round, which has nothing to agree with). Stop when the last ``window`` entries all
    exist and their mean reaches ``threshold``.
    """
    if window < 1:
        raise ValueError(f"decide needs window >= 1, got {window}")
    last = list(kappas[-window:])
    if len(last) < window or any(k is None for k in last):
        have = sum(k is not None for k in last)
        return StopDecision(False, f"{have} of {window} round agreements so far", None)
    mean = math.fsum(cast(list[float], last)) / window
    if mean + _TOLERANCE >= threshold:
        return StopDecision(
            True,
            f"predictions stabilized: mean Cohen's kappa {mean:.4f} over the last {window} "
            f"round(s) reached al.stop_kappa={threshold:g}",
            mean,
        )
    return StopDecision(
        False, f"mean kappa {mean:.4f} over the last {window} round(s) < {threshold:g}", mean
    )


def round_stop(
    previous: np.ndarray | None,
    predictions: np.ndarray,
    kappas: Sequence[float | None],
    *,
    num_classes: int,
    window: int,
    threshold: float,
) -> tuple[dict, StopDecision]:
    """One round of the rule: the metrics row's ``stop`` section and the decision.

    ``previous``: the last round's stop-set predictions (None in round 0); ``predictions``:
    this round's (argmax of its logits on the stop-set rows); ``kappas``: the earlier rows'
    ``stop.kappa`` values (:func:`kappas_of`). The decision is made whatever ``al.stop``
    says; only ``al.stop=stabilizing`` acts on it.
    """
    kappa = None if previous is None else cohen_kappa(previous, predictions, num_classes)
    decision = decide([*kappas, kappa], window, threshold)
    row = {
        "kappa": kappa,
        "f_change_bound": f_change_bound(kappa),
        "mean_kappa": decision.mean_kappa,
    }
    return row, decision


def kappas_of(rows: Sequence[dict]) -> list[float | None]:
    """Every row's ``stop.kappa`` (None where a row has none, e.g. runs made before the rule)."""
    return [(r.get("stop") or {}).get("kappa") for r in rows]


def decide_rows(rows: Sequence[dict], window: int, threshold: float) -> StopDecision:
    """The decision after the last of ``rows``: what a resumed run checks before going on."""
    return decide(kappas_of(rows), window, threshold)


def first_stop(rows: Sequence[dict], window: int, threshold: float) -> int | None:
    """Index of the first row after which the rule stops, or None (retrospective tables)."""
    kappas = kappas_of(rows)
    for i in range(len(kappas)):
        if decide(kappas[: i + 1], window, threshold).stop:
            return i
    return None


def retrospective(rows: Sequence[dict], window: int, threshold: float, metric: str) -> dict:
    """Where the rule would have stopped a finished run (rows with ``stop.kappa``): the round,
    its labeled size and test ``metric`` beside the last round's (None where it never stops)."""
    at = first_stop(rows, window, threshold)
    last = rows[-1] if rows else {}
    stopped = rows[at] if at is not None else {}
    return {
        "stop_round": at,
        "stop_labeled": stopped.get("labeled"),
        "stop_metric": (stopped.get("test") or {}).get(metric),
        "last_round": last.get("round"),
        "last_labeled": last.get("labeled"),
        "last_metric": (last.get("test") or {}).get(metric),
    }


def predictions_path(workdir: Path, round_: int) -> Path:
    return Path(workdir) / PREDICTIONS_DIR / f"round{round_:04d}.npy"


def save_predictions(workdir: Path, round_: int, predictions: np.ndarray) -> Path:
    """Keep round ``round_``'s stop-set predictions for the next round's kappa (also after a
    resume). Written to a temporary name and renamed: a kill never leaves half a file."""
    path = predictions_path(workdir, round_)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        np.save(f, np.asarray(predictions, dtype=np.int32))
    tmp.replace(path)
    return path


def load_predictions(workdir: Path, round_: int, size: int) -> np.ndarray:
    """Round ``round_``'s saved predictions; :class:`StateError` if missing or not ``size``
    long (the stop set changed, or the file is from another run)."""
    path = predictions_path(workdir, round_)
    try:
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise StateError(
            f"cannot read {path} ({e}); al.stop needs it to continue, restart in a new workdir"
        ) from e
    if arr.shape != (size,):
        raise StateError(
            f"{path} holds {arr.shape} predictions, the stop set has {size}; "
            "restart in a new workdir (al.stop_set_size changed?)"
        )
    return arr
