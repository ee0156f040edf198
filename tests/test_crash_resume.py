"""Crash-exact resume: SIGKILL ``batl_jax.main`` at many points, resume, compare files.

``BATL_KILL_AT`` (:mod:`batl_jax.faults`) makes the run kill itself at a named point,
exactly like a preempted VM: no cleanup, no flush. One workdir is killed in sequence
mid-training, inside selection, with a torn metrics line, inside the checkpoint commit
and before scoring; every restart resumes from the last committed
checkpoint, and the final files equal an uninterrupted run's (timing fields aside).
"""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import pytest

from batl_jax import main as batl_main
from tests.run_helpers import (
    DATA_DIR,
    REPO,
    main_command,
    strip_times,
    subprocess_env,
    tiny_config,
    write_config_file,
)
from tests.tiny_bert import save_tiny_bert

pytestmark = pytest.mark.skipif(not Path(DATA_DIR).is_dir(), reason="data dir not available")

# Three rounds (two select), BATL: training, scoring, triplet mining and selection all run.
# (The analysis metrics are off: their reference classifier is not what is tested here.)
OVERRIDES = dict(
    al__rounds=3,
    al__strategy="batl",
    train__mode="head",
    mesh__num_devices=1,
    analysis__enabled=False,
)

# (kill point, what the workdir must show afterwards). Each run resumes the one before.
KILLS = [
    ("round0:train", "no checkpoint yet"),
    ("round0:select", "no checkpoint yet"),
    ("round0:log", "torn metrics line"),
    ("round0:checkpoint", "uncommitted checkpoint 1"),
    ("round1:score", "checkpoint 1"),
]


def _steps(workdir: Path) -> list[int]:
    ckpts = workdir / "checkpoints"
    return (
        sorted(int(p.name) for p in ckpts.iterdir() if p.name.isdigit()) if ckpts.is_dir() else []
    )


def test_sigkill_at_many_points_then_resume_gives_identical_files(tmp_path):
    model = save_tiny_bert(tmp_path / "model")
    full = tmp_path / "full"
    batl_main.run(tiny_config(model, **OVERRIDES), str(full))

    config_file = write_config_file(tmp_path / "tiny_cfg.py", model, **OVERRIDES)
    work = tmp_path / "killed"
    for point, expect in KILLS:
        proc = subprocess.run(
            main_command(config_file, work),
            cwd=REPO,
            env=subprocess_env(BATL_KILL_AT=point),
            capture_output=True,
            text=True,
            timeout=240,
        )
        assert proc.returncode == -signal.SIGKILL, (point, proc.returncode, proc.stderr[-2000:])
        steps = _steps(work)
        if expect == "no checkpoint yet":
            assert steps == [], point
        elif expect == "torn metrics line":
            text = (work / "metrics.jsonl").read_text()
            assert text and not text.endswith("\n"), "the hook must leave half a line"
            assert len((work / "selected.jsonl").read_text().splitlines()) == 1
        elif expect == "uncommitted checkpoint 1":
            assert steps == []
            assert any("tmp" in p.name for p in (work / "checkpoints").iterdir())
        else:
            assert steps[-1] == int(expect.split()[-1]), (point, steps)

    proc = subprocess.run(
        main_command(config_file, work),
        cwd=REPO,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    for name in ("metrics.jsonl", "selected.jsonl"):
        assert strip_times(work / name) == strip_times(full / name), name
    assert [r["labeled"] for r in strip_times(work / "metrics.jsonl")] == [20, 40, 60]
