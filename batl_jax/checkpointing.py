"""Orbax checkpoints of the active-learning loop state, one per completed round.

The checkpoint at step ``r`` says: rounds ``0..r-1`` are finished (their rows are in
``metrics.jsonl`` / ``selected.jsonl``) and ``labeled`` is the labeled set round ``r``
trains on. Every per-round random draw is derived from ``(seed, round)``, so a resumed
run recomputes exactly what an uninterrupted one would. Orbax writes to a temporary
directory and renames it on commit, so a kill mid-save leaves the previous checkpoint.
"""

from __future__ import annotations

import dataclasses
import errno
import logging
import os
from pathlib import Path

import numpy as np
import orbax.checkpoint as ocp

from batl_jax import faults
from batl_jax.errors import StateError

log = logging.getLogger(__name__)


@dataclasses.dataclass
class LoopState:
    """What a resumed run needs: the next round and the labeled rows (dataset order ids).

    ``params`` / ``opt_state`` hold the model when training continues across rounds
    (``train.from_scratch = False``); None otherwise. ``pending`` (``al.oracle = human``)
    are the rows of ``labeled`` still waiting for a human label: the batch written to
    ``queries/`` before the run stopped; round ``round`` trains only once they all have one.
    ``finished`` marks the state after the run's last round (``round`` rounds done, the
    last without a selection; ``params`` are what that round started from).
    ``fingerprint`` identifies the pool and the settings the run was made with
    (:func:`batl_jax.resume.fingerprint`), so a resume on other data is refused.
    """

    round: int
    labeled: np.ndarray
    seed: int
    params: dict | None = None
    opt_state: dict | None = None
    pending: np.ndarray | None = None
    finished: bool = False
    fingerprint: np.ndarray | None = None

    def to_tree(self) -> dict:
        tree = {
            "round": np.asarray(self.round, np.int32),
            "labeled": np.asarray(self.labeled, np.int64),
            "seed": np.asarray(self.seed, np.int64),
        }
        if self.params is not None:
            tree["params"] = self.params
        if self.opt_state is not None:
            tree["opt_state"] = self.opt_state
        if self.pending is not None and len(self.pending):
            tree["pending"] = np.asarray(self.pending, np.int64)
        if self.finished:
            tree["finished"] = np.asarray(1, np.int32)
        if self.fingerprint is not None:
            tree["fingerprint"] = np.asarray(self.fingerprint, np.int64)
        return tree

    @classmethod
    def from_tree(cls, tree: dict) -> LoopState:
        pending, fp = tree.get("pending"), tree.get("fingerprint")
        return cls(
            round=int(tree["round"]),
            labeled=np.asarray(tree["labeled"], np.int64),
            seed=int(tree["seed"]),
            params=tree.get("params"),
            opt_state=tree.get("opt_state"),
            pending=None if pending is None else np.asarray(pending, np.int64),
            finished=bool(tree.get("finished", 0)),
            fingerprint=None if fp is None else np.asarray(fp, np.int64),
        )


class Checkpointer:
    """Thin wrapper over ``ocp.CheckpointManager`` in ``WORKDIR/checkpoints``."""

    def __init__(self, workdir: Path, keep: int = 2):
        self.directory = (Path(workdir) / "checkpoints").absolute()
        if self.directory.exists() and not self.directory.is_dir():
            # Orbax would read a file here as "no checkpoint yet": the run would start over
            # and cut the logs of the rounds already done.
            raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(self.directory))
        options = ocp.CheckpointManagerOptions(
            max_to_keep=max(1, keep), create=True, enable_async_checkpointing=False
        )
        self.manager = ocp.CheckpointManager(self.directory, options=options)

    def latest_round(self) -> int | None:
        return self.manager.latest_step()

    def save(self, state: LoopState, *, kill_point: str = "") -> None:
        """Save (every process calls it; Orbax lets process 0 write and commit).

        ``kill_point`` names the test hook of :mod:`batl_jax.faults` that kills the
        process just before Orbax commits this save.
        """
        with faults.kill_before_commit(kill_point, self.directory):
            self.manager.save(state.round, args=ocp.args.StandardSave(state.to_tree()))
            self.manager.wait_until_finished()

    def restore_latest(self) -> LoopState | None:
        step = self.manager.latest_step()
        if step is None:
            return None
        try:
            tree = self.manager.restore(step, args=ocp.args.StandardRestore())
        except Exception as e:  # orbax raises many types for damaged files
            raise StateError(
                f"checkpoint {self.directory / str(step)} cannot be read ({type(e).__name__}: "
                f"{str(e)[:200]}); delete that step's folder to resume from the one before, or "
                "start a fresh --workdir"
            ) from e
        state = LoopState.from_tree(tree)
        log.info("resuming from checkpoint of round %d", state.round)
        return state

    def close(self) -> None:
        self.manager.close()
