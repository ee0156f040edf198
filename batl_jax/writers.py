"""Per-round metrics as TensorBoard event files in the workdir (``tensorboard --logdir``).

Every ``metrics.jsonl`` row (test metrics, the stopping rule's kappa, the paper's analysis
metrics of the selected batch, phase times) becomes scalars at step = the round, one tag per
number, nested sections joined with ``/`` (``test/accuracy``, ``stop/kappa``,
``time/train_s``) so TensorBoard groups them by section. A sweep writes one event folder per
run: ``tensorboard --logdir runs/<sweep>`` shows every strategy side by side.

The events are written by tensorboardX, not ``clu.metric_writers``: clu 0.0.12 imports
TensorFlow when ``clu.metric_writers`` is imported (any of its writers, the interface
included), and TensorFlow is a ~600 MB dependency for a few scalars per round. ``RunWriter``
keeps clu's method names (``write_scalars``, ``flush``, ``close``) so a clu writer can
replace it without touching the callers.
"""

from __future__ import annotations

import math
import numbers
import os
import time
from collections.abc import Mapping
from pathlib import Path

from tensorboardX import SummaryWriter

from batl_jax import run_files

EVENTS_DIR = "tensorboard"
# Row fields that are not measurements: the step itself and the run's identity.
_NOT_SCALARS = frozenset({"round", "seed"})


def scalars_of(row: Mapping, prefix: str = "") -> dict[str, float]:
    """The row's numbers as ``{tag: value}``; None, strings, booleans, lists and non-finite
    values are left out (a round without a test split has no test scalars)."""
    out: dict[str, float] = {}
    for key, value in row.items():
        tag = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(scalars_of(value, tag + "/"))
        elif (
            isinstance(value, numbers.Real)
            and not isinstance(value, bool)
            and not (not prefix and key in _NOT_SCALARS)
            and math.isfinite(value)
        ):
            out[tag] = float(value)
    return out


class RunWriter:
    """Writes a run's rounds to ``<workdir>/tensorboard``; only on the primary process
    (elsewhere every method does nothing, like the run's other files).

    Use as a context manager or call :meth:`close`. A resumed run passes the round it
    resumes at as ``start_round``: it opens a new event file in the same folder that tells
    TensorBoard to drop what earlier files hold from that round on (rounds a killed run
    wrote past its last checkpoint are run again and written once more).
    """

    def __init__(self, workdir: Path | str, *, start_round: int = 0, primary: bool | None = None):
        self.logdir = Path(workdir) / EVENTS_DIR
        write = run_files.is_primary() if primary is None else primary
        # Event files are named by the second they are opened in: a resume within the same
        # second would overwrite the first file without a suffix of its own.
        suffix = f".{os.getpid()}.{time.time_ns()}"
        self._writer = (
            SummaryWriter(
                logdir=str(self.logdir),
                flush_secs=10,
                filename_suffix=suffix,
                purge_step=start_round,
            )
            if write
            else None
        )

    def write_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
        if self._writer is None:
            return
        for tag, value in scalars.items():
            self._writer.add_scalar(tag, value, global_step=step)

    def write_round(self, row: Mapping) -> dict[str, float]:
        """Write one metrics row at step ``row["round"]``; returns the scalars written."""
        scalars = scalars_of(row)
        self.write_scalars(int(row["round"]), scalars)
        self.flush()
        return scalars

    def flush(self) -> None:
        if self._writer is not None:
            self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def __enter__(self) -> RunWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
