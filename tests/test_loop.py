"""End-to-end active-learning loop on a tiny random BERT and real CSAbstruct rows."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from batl_jax import main as batl_main
from batl_jax.errors import ConfigError, DataError, ModelError
from tests.run_helpers import DATA_DIR, REPO, tiny_config
from tests.tiny_bert import save_tiny_bert


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory):
    return save_tiny_bert(tmp_path_factory.mktemp("tiny_bert"))


def _strip_times(path: Path) -> list[dict]:
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    for r in rows:
        r.pop("time", None)
    return rows


@pytest.mark.skipif(not Path(DATA_DIR).is_dir(), reason="data dir not available")
def test_two_rounds_same_on_one_and_eight_devices(tiny_bert, tmp_path):
    rows = {}
    for n in (1, 8):
        cfg = tiny_config(tiny_bert, mesh__num_devices=n)
        rows[n] = batl_main.run(cfg, str(tmp_path / f"dev{n}"))
    assert [r["round"] for r in rows[1]] == [0, 1]
    assert [r["labeled"] for r in rows[1]] == [20, 40]
    sel1 = _strip_times(tmp_path / "dev1" / "selected.jsonl")
    sel8 = _strip_times(tmp_path / "dev8" / "selected.jsonl")
    assert sel1 == sel8
    for a, b in zip(rows[1], rows[8], strict=True):
        for key in a["test"]:
            assert a["test"][key] == pytest.approx(b["test"][key], abs=2e-2)
    assert (tmp_path / "dev1" / "curves.png").exists()


@pytest.mark.skipif(not Path(DATA_DIR).is_dir(), reason="data dir not available")
def test_resume_after_crash_gives_identical_files(tiny_bert, tmp_path):
    cfg = tiny_config(tiny_bert, al__rounds=3, al__strategy="entropy", train__mode="head")
    full = tmp_path / "full"
    batl_main.run(cfg, str(full))
    crashed = tmp_path / "crashed"
    shutil.copytree(full, crashed)
    # A crash inside round 2: its checkpoint (and the done marker) never written, a torn
    # line at the end of metrics.jsonl.
    ckpts = sorted(int(p.name) for p in (crashed / "checkpoints").iterdir() if p.name.isdigit())
    for step in ckpts:
        if step >= 2:
            shutil.rmtree(crashed / "checkpoints" / str(step))
    with open(crashed / "metrics.jsonl", "a") as f:
        f.write('{"round": 2, "labe')
    batl_main.run(cfg, str(crashed))
    for name in ("metrics.jsonl", "selected.jsonl"):
        assert _strip_times(full / name) == _strip_times(crashed / name)


@pytest.mark.skipif(not Path(DATA_DIR).is_dir(), reason="data dir not available")
def test_bad_inputs_raise_clear_errors(tiny_bert, tmp_path):
    with pytest.raises(ConfigError, match="al.batch_size"):
        batl_main.run(tiny_config(tiny_bert, al__batch_size=1000), str(tmp_path / "a"))
    with pytest.raises(DataError, match="data.dir"):
        batl_main.run(tiny_config(tiny_bert, data__dir=str(tmp_path / "nope")), str(tmp_path / "b"))
    empty = tmp_path / "empty_model"
    empty.mkdir()
    with pytest.raises(ModelError, match="config.json"):
        batl_main.run(tiny_config(empty), str(tmp_path / "c"))
    with pytest.raises(ConfigError, match="strategy"):
        batl_main.run(tiny_config(tiny_bert, al__strategy="nope"), str(tmp_path / "d"))


def test_cli_config_typo_exits_nonzero_with_one_line(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "batl_jax.main",
            "--config=configs/demo.py",
            "--config.al.stratgy=batl",
            f"--workdir={tmp_path}",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode != 0
    assert "stratgy" in proc.stderr
    assert not (tmp_path / "config.json").exists()


@pytest.mark.skipif(not Path(DATA_DIR).is_dir(), reason="data dir not available")
def test_cli_batch_size_too_large_exits_2(tiny_bert, tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "batl_jax.main",
            "--config=configs/demo.py",
            f"--config.model.name={tiny_bert}",
            "--config.al.batch_size=100000",
            f"--config.data.dir={DATA_DIR}",
            f"--workdir={tmp_path}",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "XLA_FLAGS": ""},
    )
    assert proc.returncode == 2, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: al.batch_size=100000") and "lower" in last


def test_initial_set_same_for_every_strategy():
    from batl_jax.seeds import initial_labeled

    a = initial_labeled(1000, 50, seed=3)
    assert np.array_equal(a, initial_labeled(1000, 50, seed=3))
    assert not np.array_equal(a, initial_labeled(1000, 50, seed=4))
    assert len(np.unique(a)) == 50


@pytest.mark.skipif(not Path(DATA_DIR).is_dir(), reason="data dir not available")
@pytest.mark.parametrize(
    "strategy", ["conf", "dal", "bald", "batchbald", "coreset", "badge", "batl", "alps"]
)
def test_every_strategy_runs_in_the_loop(tiny_bert, tmp_path, strategy):
    cfg = tiny_config(tiny_bert, al__strategy=strategy, train__mode="head")
    cfg.bald.mc_samples = 4
    cfg.dal.steps = 30
    cfg.alps.fit_mlm_head = True  # the tiny BertModel has no MLM head
    cfg.alps.fit_steps = 3
    rows = batl_main.run(cfg, str(tmp_path / strategy))
    assert [r["labeled"] for r in rows] == [20, 40]
    sel = [json.loads(line) for line in (tmp_path / strategy / "selected.jsonl").open()]
    assert len(sel) == 1 and len(set(sel[0]["rows"])) == 20
    if strategy == "batl":
        assert {"final", "target", "triplet"} <= set(sel[0]["scores"])


@pytest.mark.skipif(not Path(DATA_DIR).is_dir(), reason="data dir not available")
def test_alps_without_mlm_head_is_refused_with_the_fix(tiny_bert, tmp_path):
    with pytest.raises(ModelError, match="fit_mlm_head"):
        batl_main.run(tiny_config(tiny_bert, al__strategy="alps"), str(tmp_path / "alps"))


@pytest.mark.skipif(not Path(DATA_DIR).is_dir(), reason="data dir not available")
def test_alps_cold_start_with_an_mlm_head(tmp_path):
    model = save_tiny_bert(tmp_path / "mlm", with_mlm_head=True)
    cfg = tiny_config(model, al__strategy="alps", al__initial_size=0, train__mode="head")
    rows = batl_main.run(cfg, str(tmp_path / "run"))
    assert [r["labeled"] for r in rows] == [0, 20]
    assert not (tmp_path / "run" / "run_info.json").exists()
