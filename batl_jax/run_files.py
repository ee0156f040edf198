"""The run's files in ``--workdir``: config.json, metrics.jsonl and selected.jsonl
(the learning curve, curves.png, is drawn by :func:`batl_jax.plots.run_curve`).

JSON-lines files are appended one complete line at a time and flushed with fsync;
on resume they are cut back to the rounds the checkpoint covers (a torn last line
from a kill is dropped the same way) by writing a temporary file and renaming it.
They are read strictly: a damaged line before the last one, rounds out of order or
fewer rounds than the checkpoint are errors naming the file, never silent cuts.
"""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path

from batl_jax.errors import StateError

# Fields that may change between a run and its resumption without changing results.
RESUMABLE_KEYS = frozenset(
    {
        "checkpoint.keep",
        "mesh.num_devices",
        "train.eval_batch_size",
        "train.cache_features",
        "cache_dir",
        "distributed.enabled",
        "distributed.coordinator_address",
        "distributed.num_processes",
        "distributed.process_id",
        "data.dir",
        # How far a run goes: raising al.rounds or changing the stopping rule continues it
        # from where it stands (no finished round's result depends on them).
        "al.rounds",
        "al.stop",
        "al.stop_window",
        "al.stop_kappa",
        # Analysis metrics are reported, never fed back into selection (and runs made before
        # the section existed stay resumable).
        "analysis.enabled",
        "analysis.reference_epochs",
        "analysis.density_k",
    }
)


def is_primary() -> bool:
    """True on the process that writes the workdir's files (JAX process 0).

    With several JAX processes (multi-host) every process runs the same loop on a
    shared workdir; only process 0 writes config.json, the .jsonl files, queries and
    plots (Orbax coordinates checkpoint writes itself). Tools that never import JAX
    (``batl_jax.label``) are a single process by definition.
    """
    jax = sys.modules.get("jax")
    return jax is None or jax.process_index() == 0


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` via a temporary file + fsync + rename: a reader (or a
    resumed run after a kill) sees the old or the new content, never a mix."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


FINISHED = "finished.json"  # written when the run ends: rounds done and why


def mark_finished(workdir: Path, rounds_done: int, reason: str | None) -> None:
    """``finished.json`` tells other tools (``batl_jax.label``) the run is over and why
    (process 0); ``reason=None`` removes it (a finished run continues when it grows)."""
    if not is_primary():
        return
    path = Path(workdir) / FINISHED
    if reason is None:
        path.unlink(missing_ok=True)
    else:
        atomic_write_text(path, json.dumps({"rounds": rounds_done, "reason": reason}) + "\n")


def finished_info(workdir: Path) -> dict | None:
    """What ``finished.json`` says (``rounds``, ``reason``), or None while the run goes on."""
    try:
        info = json.loads((Path(workdir) / FINISHED).read_text(encoding="utf-8"))
        return {"rounds": int(info["rounds"]), "reason": str(info["reason"])}
    except (OSError, ValueError, KeyError, TypeError):
        return None


def write_config_file(workdir: Path, config_dict: dict, round_: int = 0) -> None:
    """Write config.json on the run's first start (process 0). Call it only once the config
    is known to be valid: a refused config must not claim the workdir, or fixing it would
    read as "another run". A resume with changed resumable settings keeps config.json (the
    settings the finished rounds came from) and appends the change, with the round it takes
    effect from, to ``config_changes.jsonl``."""
    if not is_primary():
        return
    text = json.dumps(config_dict, indent=2, sort_keys=True, default=str)
    path = workdir / "config.json"
    if not path.exists():
        atomic_write_text(path, text + "\n")
        return
    first = flatten(json.loads(path.read_text(encoding="utf-8")))
    now = flatten(json.loads(text))
    log_path = workdir / "config_changes.jsonl"
    if log_path.exists():
        for line in log_path.read_text(encoding="utf-8").splitlines():
            first.update({k: v[1] for k, v in json.loads(line)["changes"].items()})
    changes = {k: [first.get(k), now.get(k)] for k in sorted(set(first) | set(now))}
    changes = {k: v for k, v in changes.items() if v[0] != v[1]}
    if changes:
        with open(log_path, "a", encoding="utf-8") as f:
            f.write(json.dumps({"round": round_, "changes": changes}, sort_keys=True) + "\n")


def check_config_file(workdir: Path, config_dict: dict) -> None:
    """Refuse a workdir whose config.json belongs to a different experiment."""
    path = workdir / "config.json"
    text = json.dumps(config_dict, indent=2, sort_keys=True, default=str)
    if path.exists():
        try:
            old = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise StateError(f"{path} is not valid JSON; restore it or use a new --workdir") from e
        if not isinstance(old, dict):
            raise StateError(f"{path} is not a config object; restore it or use a new --workdir")
        a, b = flatten(old), flatten(json.loads(text))
        diff = sorted(
            k for k in set(a) | set(b) if a.get(k) != b.get(k) and k not in RESUMABLE_KEYS
        )
        if diff:
            shown = ", ".join(f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in diff[:4])
            raise StateError(
                f"workdir {workdir} holds a run with a different config ({shown}); use a new "
                "--workdir, or the same config to resume"
            )


def round_order_problem(rows: list[dict]) -> str | None:
    """What is wrong with the rows' ``round`` fields, or None when they are 0, 1, 2, ...
    in order (one row per round: two runs on one workdir leave a round twice)."""
    for i, row in enumerate(rows):
        got = row.get("round")
        if type(got) is not int or got != i:
            seen = [r.get("round") for r in rows[:i]]
            why = "a second time" if got in seen else f"where round {i} belongs"
            return f"line {i + 1} holds round {got!r} {why} (rounds must be 0, 1, 2, ... in order)"
    return None


class JsonlLog:
    """An append-only JSON-lines file whose rows carry a ``round`` field.

    Read strictly: the only line that may be unparsable is an unterminated last one, the
    torn write a kill leaves behind; any other bad line is an error, never a cut.
    """

    def __init__(self, path: Path):
        self.path = Path(path)

    def rows(self) -> list[dict]:
        """The rows, without a torn last line; :class:`StateError` names any other bad line."""
        if not self.path.exists():
            return []
        lines = self.path.read_bytes().split(b"\n")
        rows = []
        for i, line in enumerate(lines):
            torn = i == len(lines) - 1  # no newline after it: a write cut short (or b"")
            row = _parse(line)
            if row is not None:
                rows.append(row)
            elif not torn:
                raise StateError(
                    f"{self.path} line {i + 1} is not a JSON object (blank or damaged); "
                    "restore the file, or delete that line if its round is to be run again"
                )
        return rows

    def check_rounds(self, expected_rounds: int) -> list[dict]:
        """The rows, refused unless they are rounds 0, 1, 2, ... in order and at least
        ``expected_rounds`` of them (the rounds a checkpoint says are done)."""
        rows = self.rows()
        problem = round_order_problem(rows)
        if problem:
            raise StateError(
                f"{self.path}: {problem}; it was edited or written by two runs at once: "
                "restore it, or use a new --workdir"
            )
        if len(rows) < expected_rounds:
            raise StateError(
                f"{self.path} holds {len(rows)} round(s) but the checkpoint has {expected_rounds} "
                "done; restore the file, or use a new --workdir (rounds are never dropped)"
            )
        return rows

    def truncate_to(self, rounds_done: int) -> None:
        """Keep only rows with ``round < rounds_done`` (and drop a torn last line): the rows
        a killed run logged after its last checkpoint. Rows out of order are refused."""
        if not self.path.exists():
            return
        rows = self.check_rounds(0)
        if not is_primary():
            return
        text = "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows[:rounds_done])
        if text.encode("utf-8") != self.path.read_bytes():
            atomic_write_text(self.path, text)

    def append(self, row: dict) -> None:
        """Add one row (process 0); NaN and infinities are refused: they are not JSON."""
        try:
            text = json.dumps(row, sort_keys=True, allow_nan=False)
        except ValueError as e:
            bad = ", ".join(non_finite_keys(row)) or "a value"
            raise StateError(
                f"round {row.get('round')!r}: {bad} is not finite (NaN or inf), refused for "
                f"{self.path}; the training diverged or the metric is undefined: rerun with "
                "a lower train.lr in a new --workdir"
            ) from e
        if not is_primary():
            return
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(text + "\n")
            f.flush()
            os.fsync(f.fileno())


def _parse(line: bytes) -> dict | None:
    """The JSON object on ``line``, or None for anything else (blank, torn, not UTF-8)."""
    try:
        row = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    return row if isinstance(row, dict) else None


def non_finite_keys(value, prefix: str = "") -> list[str]:
    """Dotted paths of the NaN / infinite floats inside ``value`` (dicts and lists)."""
    if isinstance(value, float):
        return [] if math.isfinite(value) else [prefix or "value"]
    if isinstance(value, dict):
        items = ((f"{prefix}.{k}" if prefix else str(k), v) for k, v in value.items())
    elif isinstance(value, list | tuple):
        items = ((f"{prefix}[{i}]", v) for i, v in enumerate(value))
    else:
        return []
    return [key for path, v in items for key in non_finite_keys(v, path)]
