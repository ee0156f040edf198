"""Where a run starts and what a resume verifies before it touches anything.

A checkpoint says how many rounds are done, which rows are labeled and, since this
check exists, a fingerprint of the pool (ids, texts, labels) and of every setting that
changes results. A resume refuses a checkpoint that does not match the data or the
config, or logs that hold fewer rounds than it (README, "Reliability").
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from pathlib import Path

import numpy as np

from batl_jax import run_files, setup, stopping
from batl_jax.checkpointing import LoopState
from batl_jax.errors import StateError
from batl_jax.seeds import initial_labeled

log = logging.getLogger(__name__)


def _digest(h) -> np.ndarray:
    return np.frombuffer(h.digest()[:8], dtype=np.int64).copy()


def fingerprint(parts: setup.Parts) -> np.ndarray:
    """``[pool, settings]``: hashes of the pool's ids, texts and labels, and of every config
    setting that changes results (all but ``run_files.RESUMABLE_KEYS``)."""
    split = parts.dataset.train
    pool = hashlib.sha256()
    for i, text in zip(split.ids, split.texts, strict=True):
        pool.update(f"{i}\x1f{text}\x1e".encode())
    pool.update(np.ascontiguousarray(split.labels, np.int64).tobytes())
    flat = run_files.flatten(json.loads(json.dumps(parts.cfg.to_dict(), default=str)))
    kept = {k: v for k, v in flat.items() if k not in run_files.RESUMABLE_KEYS}
    settings = hashlib.sha256(json.dumps(kept, sort_keys=True).encode())
    return np.concatenate([_digest(pool), _digest(settings)])


def check_state(state: LoopState, parts: setup.Parts, where: Path) -> None:
    """Refuse a checkpoint made on other data or with other settings, naming the change."""
    cfg, n = parts.cfg, len(parts.dataset.train)
    fix = "restore what changed, or use a new --workdir"
    if state.seed != cfg.seed:
        raise StateError(
            f"the checkpoint in {where} was made with seed {state.seed}, the config "
            f"says seed {cfg.seed}; {fix}"
        )
    if state.fingerprint is not None:
        now = fingerprint(parts)
        if state.fingerprint[0] != now[0]:
            raise StateError(
                f"the pool's ids, texts or labels differ from those the checkpoint in {where} "
                f"was made with (data.* or the data files changed); {fix}"
            )
        if state.fingerprint[1] != now[1]:
            raise StateError(
                f"a setting that changes results (strategy, model, data, training) differs "
                f"from the one the checkpoint in {where} was made with; {fix}"
            )
    rows = np.asarray(state.labeled)
    pending = np.asarray([] if state.pending is None else state.pending)
    if (
        (len(rows) and (rows.min() < 0 or rows.max() >= n))
        or len(np.unique(rows)) != len(rows)
        or not np.isin(pending, np.concatenate([rows, parts.held_out])).all()
        or np.isin(rows, parts.held_out).any()
        or state.round < 0
    ):
        raise StateError(
            f"checkpoint of round {state.round} in {where} does not fit the data "
            f"({len(rows)} labeled rows, pool of {n}): the data changed since the run "
            "started; restore the data (data.dir) or use a new --workdir"
        )


def check_logs(metrics, selected, state: LoopState, n: int) -> LoopState:
    """Refuse logs that hold fewer rounds than the checkpoint says are done (rows of a
    finished round are never dropped or recomputed silently); returns the state with
    ``finished`` set for a done marker written before the flag existed."""
    if len(state.labeled) == n:
        return dataclasses.replace(state, finished=True)  # the pool ran out
    done = state.round
    rows = len(selected.rows())
    finished = state.finished or (done > 0 and rows == done - 1 and state.pending is None)
    metrics.check_rounds(done)
    selected.check_rounds(done - 1 if finished else done)
    return dataclasses.replace(state, finished=finished)


def reopen(parts: setup.Parts, state: LoopState, rows: list[dict]) -> LoopState:
    """A finished run whose settings now ask for more rounds continues: its last round
    runs again (the same seeds give the same model) and this time selects. A run the
    stopping rule ended stays ended while the rule, as now set, still says stop."""
    cfg, n = parts.cfg, len(parts.pool_rows)
    if not state.finished or len(state.labeled) == n or state.round >= cfg.al.rounds:
        return state
    al = cfg.al
    if al.stop == "stabilizing" and stopping.decide_rows(rows, al.stop_window, al.stop_kappa).stop:
        return state
    log.info("continuing a finished run: rounds %d -> %d", state.round, cfg.al.rounds)
    return LoopState(state.round - 1, state.labeled, state.seed, params=state.params)


def initial_state(parts: setup.Parts, human: bool) -> LoopState:
    """Round 0's state. A human-labelled pool that already carries some labels starts
    from those rows (plus ``al.initial_size`` random ones to label, when set); otherwise
    the seeded random initial set, which people label first (``pending``). The held-out
    evaluation rows of ``al.test_size`` are never in the initial set; people label them
    first, in the same batch (``pending``, not ``labeled``: the model never trains on them)."""
    cfg, labels = parts.cfg, parts.dataset.train.labels
    n, held_out = len(labels), parts.held_out
    existing = np.flatnonzero(labels >= 0)
    if human and 0 < len(existing) < n:
        extra = max(cfg.al.initial_size, 0)
        rest = np.setdiff1d(parts.pool_rows, existing)
        picks = rest[initial_labeled(len(rest), min(extra, len(rest)), cfg.seed)]
        labeled = np.sort(np.concatenate([existing, picks]))
        pending = np.concatenate([held_out, picks])
        return LoopState(round=0, labeled=labeled, seed=cfg.seed, pending=pending)
    rest = parts.pool_rows  # every row when al.test_size is 0
    labeled = rest[initial_labeled(len(rest), setup.initial_size(cfg), cfg.seed)]
    asked = np.concatenate([held_out, labeled]) if human else None
    return LoopState(round=0, labeled=labeled, seed=cfg.seed, pending=asked)
