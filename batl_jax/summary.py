"""The end-of-run summary: what a run achieved, why it ended, what it cost, where its files are.

Printed after the last round of ``python -m batl_jax.main`` (and of every run of a sweep). The
learning-curve AUC is the same number ``python -m batl_jax.report`` tabulates
(:func:`batl_jax.results.curve_area`), so a run's summary and the report never disagree.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from batl_jax import results

# Files a run may leave in its workdir, in the order the summary names them.
RUN_FILES = (
    ("metrics.jsonl", "one row per round"),
    ("selected.jsonl", "each round's picks"),
    ("curves.png", "learning curve"),
    ("config.json", "the config"),
    ("run_info.json", "deviations"),
    ("tensorboard", "TensorBoard events"),
    ("stop_set", "stop-set predictions"),
    ("checkpoints", "resume state"),
)


def _metric(key: str, value) -> str:
    """Fractions in %, counts (``p_at_100_n``) as they are."""
    if value is None:
        return f"{key} -"
    if key.endswith("_n") or float(value) > 1.0:
        return f"{key} {value:g}"
    return f"{key} {100.0 * float(value):.2f}%"


def phase_times(rows: Sequence[dict]) -> dict[str, float]:
    """Seconds per phase summed over the rows' ``time`` sections (first-seen order)."""
    out: dict[str, float] = {}
    for row in rows:
        for key, seconds in (row.get("time") or {}).items():
            if seconds is not None and math.isfinite(seconds):
                out[key] = out.get(key, 0.0) + float(seconds)
    return out


def _phase_line(rows: Sequence[dict]) -> str:
    times = phase_times(rows)
    if not times:
        return "time: not recorded"
    parts = [f"{k.removesuffix('_s')} {v:.1f} s" for k, v in times.items()]
    return f"time: {', '.join(parts)}; total {sum(times.values()):.1f} s"


def _stop_line(row: dict) -> str | None:
    stop = row.get("stop") or {}
    kappa = stop.get("kappa")
    if kappa is None:
        return None
    bound = stop.get("f_change_bound")
    text = f"stop-set agreement with the previous round: kappa {kappa:.4f}"
    if bound is not None:
        text += f" (F-measure changes by at most {bound:.4f})"
    if stop.get("mean_kappa") is not None:
        text += f", window mean {stop['mean_kappa']:.4f}"
    return text


def _files_line(workdir: Path) -> str:
    present = [f"{name} ({what})" for name, what in RUN_FILES if (workdir / name).exists()]
    if not present:
        return f"files: none yet in {workdir}"
    text = f"files in {workdir}: " + ", ".join(present)
    if (workdir / "tensorboard").exists():
        text += f"; view with: tensorboard --logdir {workdir}"
    return text


def summary(
    rows: Sequence[dict], *, workdir: Path | str, stop_reason: str, primary_metric: str
) -> str:
    """The summary as lines of text (no trailing newline) for ``rows`` of one run."""
    workdir = Path(workdir)
    if not rows:
        return "\n".join([f"no round finished: {stop_reason}", _files_line(workdir)])
    last = rows[-1]
    lines = [f"run ended after round {last['round']}, {last['labeled']} labeled: {stop_reason}"]
    test = last.get("test") or {}
    if test:
        ordered = [primary_metric] + sorted(k for k in test if k != primary_metric)
        lines.append(
            "final test: " + ", ".join(_metric(k, test.get(k)) for k in ordered if k in test)
        )
        auc = results.curve_area(results.Run(workdir, {}, list(rows)), primary_metric)
        if auc is not None:
            lines.append(
                f"learning-curve AUC ({primary_metric} over labeled size, trapezoid / "
                f"labeled range): {100.0 * auc:.2f}%"
            )
    else:
        lines.append("final test: no labeled test split (no test metrics)")
    stop_line = _stop_line(last)
    if stop_line:
        lines.append(stop_line)
    lines += [_phase_line(rows), _files_line(workdir)]
    return "\n".join(lines)
