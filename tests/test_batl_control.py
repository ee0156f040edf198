"""BATL's control (``batl.triplet_grad=embedding_only``): its classifier is the baselines'.

MiniLM, not the tiny random BERT: there every arm predicts the majority class, so an
equality check would pass even with the control broken.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from batl_jax import main as batl_main
from batl_jax.config import OFFLINE_MINILM
from tests.run_helpers import DATA_DIR, tiny_config


@pytest.mark.skipif(not Path(DATA_DIR).is_dir(), reason="data dir not available")
def test_embedding_only_batl_starts_where_the_baselines_start(tmp_path):
    first = {}
    arms = {
        "rand": {"al__strategy": "rand"},
        "entropy": {"al__strategy": "entropy"},
        "control": {"al__strategy": "batl", "batl__triplet_grad": "embedding_only"},
        "paper": {"al__strategy": "batl", "batl__triplet_grad": "all"},
    }
    for name, over in arms.items():
        cfg = tiny_config(
            OFFLINE_MINILM,
            model__pooling="mean",
            train__mode="head",
            train__epochs=30,
            train__lr=5e-3,
            al__rounds=1,
            analysis__enabled=False,
            **over,
        )
        first[name] = batl_main.run(cfg, str(tmp_path / name))[0]["test"]
    assert first["rand"] == first["entropy"]
    assert first["control"] == first["rand"]
    assert first["paper"] != first["rand"]
