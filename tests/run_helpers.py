"""Helpers shared by the end-to-end tests: a fast config, config files for CLI runs,
file hashes, and a small CSAbstruct-layout data dir.

Imports no JAX, so config files written by :func:`write_config_file` load quickly in
``python -m batl_jax.main`` subprocesses.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import sys
from pathlib import Path

from batl_jax import config as base

REPO = Path(__file__).resolve().parents[1]
DATA_DIR = os.environ.get("BATL_DATA_DIR", str(REPO.parent / "shared" / "data"))


def tiny_config(model_dir, **overrides):
    """A run of a few seconds: tiny model, 150-row pool, 60 test rows, k = 20, 2 rounds.

    ``overrides`` are ``section__field=value`` (``seed=...`` for top-level fields).
    """
    c = base.get_config()
    c.name = "tiny"
    c.model.name = str(model_dir)
    c.model.max_len = 32
    c.data.dir = DATA_DIR
    c.data.name = "csabstruct"
    c.data.buckets = (16, 32)
    c.data.pool_limit = 150
    c.data.test_limit = 60
    c.al.batch_size = 20
    c.al.rounds = 2
    c.train.batch_size = 16
    c.train.eval_batch_size = 64
    c.train.epochs = 1
    c.train.min_steps = 2
    c.train.lr = 1e-3
    for key, value in overrides.items():
        if "__" in key:
            section, field = key.split("__")
            c[section][field] = value
        else:
            c[key] = value
    return c


def write_config_file(path: Path, model_dir, **overrides) -> Path:
    """A configs/*.py-style file building ``tiny_config(model_dir, **overrides)``."""
    path = Path(path)
    path.write_text(
        "from tests.run_helpers import tiny_config\n\n\n"
        "def get_config():\n"
        f"    return tiny_config({str(model_dir)!r}, **{overrides!r})\n"
    )
    return path


def subprocess_env(**extra) -> dict:
    """The environment for a ``python -m batl_jax...`` child: this test session's (fake
    devices, cache dir, offline hub) plus the matmul precision conftest sets in-process,
    so child and parent compute bit-identical numbers."""
    env = {**os.environ, "JAX_DEFAULT_MATMUL_PRECISION": "highest", "PYTHONPATH": str(REPO)}
    env.update(extra)
    return env


def main_command(config_file: Path, workdir: Path, *flags: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "batl_jax.main",
        f"--config={config_file}",
        f"--workdir={workdir}",
        *flags,
    ]


def strip_times(path: Path) -> list[dict]:
    """Rows of a .jsonl file without their timing fields (the only run-to-run difference)."""
    rows = [json.loads(line) for line in Path(path).read_text().splitlines()]
    for r in rows:
        r.pop("time", None)
    return rows


def tree_hashes(root: Path) -> dict[str, str]:
    """sha256 of every file under ``root`` (relative path -> digest); {} if it is absent."""
    root = Path(root)
    if not root.exists():
        return {}
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def write_jsonl_gz(path: Path, records) -> Path:
    """Write ``records`` (dicts, or raw ``bytes`` lines) as a gzipped JSON-lines file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wb") as f:
        for r in records:
            f.write(r if isinstance(r, bytes) else (json.dumps(r) + "\n").encode())
    return path


def small_csabstruct(root: Path, train_rows: int = 200, test_rows: int = 80) -> Path:
    """A data dir with the first rows of the shared CSAbstruct (``csabstruct/`` layout)."""
    src = Path(DATA_DIR) / "csabstruct"
    for split, n in (("train", train_rows), ("test", test_rows)):
        with gzip.open(src / f"{split}.jsonl.gz", "rt") as f:
            recs = [
                {"text": r["text"], "label": r["label"]}
                for r in (json.loads(next(f)) for _ in range(n))
            ]
        write_jsonl_gz(Path(root) / "csabstruct" / f"{split}.jsonl.gz", recs)
    return Path(root)
