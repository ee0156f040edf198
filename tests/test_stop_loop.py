"""The stabilizing-predictions rule inside the loop (Bloodgood & Vijay-Shanker 2009).

The round model's stop-set predictions are replaced by a synthetic sequence, so the
round where the rule fires is known in advance.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from batl_jax import main as batl_main
from batl_jax import rounds
from tests.run_helpers import DATA_DIR, tiny_config
from tests.tiny_bert import save_tiny_bert

pytestmark = pytest.mark.skipif(not Path(DATA_DIR).is_dir(), reason="data dir not available")

FAST = dict(train__mode="head", analysis__enabled=False, mesh__num_devices=1, al__rounds=6)
STOP = dict(al__stop="stabilizing", al__stop_window=2, al__stop_kappa=0.99, **FAST)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return save_tiny_bert(tmp_path_factory.mktemp("tiny_bert"))


def _synthetic(monkeypatch, settle_at: int | None):
    """Stop-set labels that change every round until ``settle_at``, then stay (None: never)."""

    def fake(parts, fit_result, feats=None):
        r = fake.calls  # one call per round run in this test
        fake.calls += 1
        size = len(parts.stop_rows)
        k = parts.task.num_labels
        frozen = settle_at is not None and r >= settle_at
        seed = settle_at if frozen else 100 + r
        return np.random.default_rng(seed).integers(0, k, size).astype(np.int32)

    fake.calls = 0
    monkeypatch.setattr(rounds, "stop_predictions", fake)
    return fake


def _rows(workdir: Path) -> list[dict]:
    return [json.loads(x) for x in (workdir / "metrics.jsonl").read_text().splitlines()]


def test_predictions_that_settle_stop_the_run_and_it_stays_stopped(model, tmp_path, monkeypatch):
    _synthetic(monkeypatch, settle_at=1)
    work = tmp_path / "w"
    rows = batl_main.run(tiny_config(model, **STOP), str(work))
    # Round 1 settles: kappa(1,2) = kappa(2,3) = 1, and the mean of the last two reaches 0.99
    # after round 3, which is then the run's last round (it selects nothing).
    assert [r["round"] for r in rows] == [0, 1, 2, 3]
    assert rows[0]["stop"]["kappa"] is None
    assert [r["stop"]["kappa"] for r in rows[2:]] == [1.0, 1.0]
    assert rows[3]["stop"]["mean_kappa"] == pytest.approx(1.0)
    assert rows[3]["stop"]["f_change_bound"] == 0.0
    selected = (work / "selected.jsonl").read_text().splitlines()
    assert len(selected) == 3 and (work / "model" / "params.safetensors").is_file()
    # Resuming the stopped run does not restart it.
    again = batl_main.run(tiny_config(model, **STOP), str(work))
    assert [r["round"] for r in again] == [0, 1, 2, 3]
    # Switching the rule off continues to al.rounds.
    grown = batl_main.run(tiny_config(model, **{**STOP, "al__stop": "none"}), str(work))
    assert [r["round"] for r in grown] == [0, 1, 2, 3, 4, 5]


def test_predictions_that_keep_changing_never_stop(model, tmp_path, monkeypatch):
    _synthetic(monkeypatch, settle_at=None)
    rows = batl_main.run(tiny_config(model, **STOP), str(tmp_path / "w"))
    assert [r["round"] for r in rows] == [0, 1, 2, 3, 4, 5]
    kappas = [r["stop"]["kappa"] for r in rows[1:]]
    assert all(k is not None and k < 0.5 for k in kappas)
