"""The run's files in ``--workdir``: config.json, metrics.jsonl, selected.jsonl, curves.png.

JSON-lines files are appended one complete line at a time and flushed with fsync;
on resume they are cut back to the rounds the checkpoint covers (a torn last line
from a kill is dropped the same way) by writing a temporary file and renaming it.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from batl_jax.errors import StateError

# Fields that may change between a run and its resumption without changing results.
_RESUMABLE_KEYS = {
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
    # Analysis metrics are reported, never fed back into selection (and runs made before
    # the section existed stay resumable).
    "analysis.enabled",
    "analysis.reference_epochs",
    "analysis.density_k",
}


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


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def write_or_check_config(workdir: Path, config_dict: dict) -> None:
    """Write config.json, or check that an existing one belongs to the same experiment."""
    check_config_file(workdir, config_dict)
    write_config_file(workdir, config_dict)


def write_config_file(workdir: Path, config_dict: dict) -> None:
    """Write config.json (process 0). Call it only once the config is known to be valid:
    a refused config must not claim the workdir, or fixing it would read as "another run"."""
    if is_primary():
        text = json.dumps(config_dict, indent=2, sort_keys=True, default=str)
        atomic_write_text(workdir / "config.json", text + "\n")


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
        a, b = _flatten(old), _flatten(json.loads(text))
        diff = sorted(
            k for k in set(a) | set(b) if a.get(k) != b.get(k) and k not in _RESUMABLE_KEYS
        )
        if diff:
            shown = ", ".join(f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in diff[:4])
            raise StateError(
                f"workdir {workdir} holds a run with a different config ({shown}); use a new "
                "--workdir, or the same config to resume"
            )


class JsonlLog:
    """An append-only JSON-lines file whose rows carry a ``round`` field."""

    def __init__(self, path: Path):
        self.path = Path(path)

    def rows(self) -> list[dict]:
        if not self.path.exists():
            return []
        rows = []
        # errors="replace": a kill can cut a line mid-character; that line is dropped below.
        for line in self.path.read_bytes().decode("utf-8", errors="replace").splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                break  # a torn last line from a kill: everything after it is dropped
            if not isinstance(row, dict):
                break
            rows.append(row)
        return rows

    def truncate_to(self, rounds_done: int) -> None:
        """Keep only rows with ``round < rounds_done`` (and drop a torn last line)."""
        if not self.path.exists() or not is_primary():
            return
        keep = [r for r in self.rows() if r.get("round", -1) < rounds_done]
        text = "".join(json.dumps(r, sort_keys=True) + "\n" for r in keep)
        if text.encode("utf-8") != self.path.read_bytes():
            atomic_write_text(self.path, text)

    def append(self, row: dict) -> None:
        if not is_primary():
            return
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(row, sort_keys=True) + "\n")
            f.flush()
            os.fsync(f.fileno())


def plot_curves(workdir: Path, rows: list[dict], metric: str, title: str) -> None:
    """Learning curve: the test ``metric`` against the labeled-set size."""
    if not is_primary():
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xs = [r["labeled"] for r in rows if metric in r.get("test", {})]
    ys = [r["test"][metric] for r in rows if metric in r.get("test", {})]
    if not xs:
        return
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(xs, ys, marker="o")
    ax.set_xlabel("labeled samples")
    ax.set_ylabel(f"test {metric}")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    tmp = workdir / "curves.tmp.png"
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    os.replace(tmp, workdir / "curves.png")
