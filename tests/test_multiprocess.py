"""Two JAX processes on localhost (CPU, gloo collectives, one device each: a 2-device
mesh) select the same batch as one process, and only process 0 writes the workdir."""

from __future__ import annotations

import json
import socket
import subprocess
from pathlib import Path

import pytest

from batl_jax import main as batl_main
from tests.run_helpers import (
    DATA_DIR,
    REPO,
    main_command,
    subprocess_env,
    tiny_config,
    write_config_file,
)
from tests.tiny_bert import save_tiny_bert

pytestmark = pytest.mark.skipif(not Path(DATA_DIR).is_dir(), reason="data dir not available")

OVERRIDES = dict(al__strategy="batl", train__mode="head", analysis__enabled=False)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_two_processes_select_what_one_process_selects(tmp_path):
    model = save_tiny_bert(tmp_path / "model")
    single = tmp_path / "single"
    batl_main.run(tiny_config(model, mesh__num_devices=2, **OVERRIDES), str(single))

    config_file = write_config_file(tmp_path / "cfg.py", model, **OVERRIDES)
    work, port = tmp_path / "multi", _free_port()
    env = subprocess_env(XLA_FLAGS="--xla_force_host_platform_device_count=1")
    procs = [
        subprocess.Popen(
            main_command(
                config_file,
                work,
                "--config.distributed.enabled=True",
                f"--config.distributed.coordinator_address=127.0.0.1:{port}",
                "--config.distributed.num_processes=2",
                f"--config.distributed.process_id={i}",
            ),
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i in range(2)
    ]
    try:
        outs = [p.communicate(timeout=300)[0] for p in procs]
    finally:
        for p in procs:  # one failed early: do not leave the other waiting for its peer
            if p.poll() is None:
                p.kill()
                p.wait()
    for p, out in zip(procs, outs, strict=True):
        assert p.returncode == 0, out[-3000:]
        assert "2 device(s)" in out

    multi_sel, single_sel = _rows(work / "selected.jsonl"), _rows(single / "selected.jsonl")
    assert [r["rows"] for r in multi_sel] == [r["rows"] for r in single_sel]
    assert [r["ids"] for r in multi_sel] == [r["ids"] for r in single_sel]
    for a, b in zip(multi_sel, single_sel, strict=True):
        assert a["scores"]["final"] == pytest.approx(b["scores"]["final"], abs=1e-5)
    # Process 1 wrote nothing: one row per round, not two.
    assert [r["round"] for r in _rows(work / "metrics.jsonl")] == [0, 1]
    assert json.loads((work / "config.json").read_text())["distributed"]["enabled"] is True
