"""What a resume verifies, and growing a finished run (README, "Reliability")."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from batl_jax import main as batl_main
from batl_jax.errors import StateError
from tests.run_helpers import DATA_DIR, strip_times, tiny_config
from tests.tiny_bert import save_tiny_bert

pytestmark = pytest.mark.skipif(not Path(DATA_DIR).is_dir(), reason="data dir not available")

FAST = dict(train__mode="head", analysis__enabled=False, mesh__num_devices=1)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return save_tiny_bert(tmp_path_factory.mktemp("tiny_bert"))


def _files(workdir: Path) -> dict:
    return {
        name: strip_times(workdir / name)
        for name in ("metrics.jsonl", "selected.jsonl")
        if (workdir / name).exists()
    }


def test_raising_rounds_continues_to_the_files_of_a_longer_run(model, tmp_path):
    long = tmp_path / "long"
    batl_main.run(tiny_config(model, al__rounds=3, al__strategy="entropy", **FAST), str(long))
    grown = tmp_path / "grown"
    short = batl_main.run(
        tiny_config(model, al__rounds=2, al__strategy="entropy", **FAST), str(grown)
    )
    assert [r["round"] for r in short] == [0, 1]
    rows = batl_main.run(
        tiny_config(model, al__rounds=3, al__strategy="entropy", **FAST), str(grown)
    )
    assert [r["round"] for r in rows] == [0, 1, 2]
    assert _files(grown) == _files(long)
    # config.json keeps the settings the first rounds came from; the change is logged.
    assert json.loads((grown / "config.json").read_text())["al"]["rounds"] == 2
    change = json.loads((grown / "config_changes.jsonl").read_text().splitlines()[0])
    assert change["changes"]["al.rounds"] == [2, 3] and change["round"] == 1
    # Rerunning the finished, grown run changes nothing.
    before = _files(grown)
    batl_main.run(tiny_config(model, al__rounds=3, al__strategy="entropy", **FAST), str(grown))
    assert _files(grown) == before


def test_resume_with_another_seed_and_no_config_json_is_refused(model, tmp_path):
    work = tmp_path / "w"
    batl_main.run(tiny_config(model, al__rounds=2, seed=0, **FAST), str(work))
    (work / "config.json").unlink()
    with pytest.raises(StateError, match="seed 0.*seed 5"):
        batl_main.run(tiny_config(model, al__rounds=3, seed=5, **FAST), str(work))
    with pytest.raises(StateError, match="setting that changes results"):
        batl_main.run(tiny_config(model, al__rounds=3, train__lr=5e-3, **FAST), str(work))


def test_resume_on_a_shuffled_copy_of_the_data_is_refused(model, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(Path(DATA_DIR) / "csabstruct", data / "csabstruct")
    train = data / "csabstruct" / "train.jsonl.gz"
    opener = gzip.open if train.suffix == ".gz" else open
    with opener(train, "rt") as f:
        lines = f.read().splitlines()
    work = tmp_path / "w"
    cfg = dict(data__dir=str(data), data__pool_limit=0, al__rounds=2, **FAST)
    with opener(train, "wt") as f:
        f.write("\n".join(lines[:150]) + "\n")
    batl_main.run(tiny_config(model, **cfg), str(work))
    rng = np.random.default_rng(0)
    with opener(train, "wt") as f:
        f.write("\n".join(lines[i] for i in rng.permutation(150)) + "\n")
    with pytest.raises(StateError, match="pool's ids, texts or labels differ"):
        batl_main.run(tiny_config(model, **{**cfg, "al__rounds": 3}), str(work))
