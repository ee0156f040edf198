"""BATL's control (``batl.triplet_grad=embedding_only``) reaches the training loss.

``tests/test_batl.py`` shows that with ``embedding_only`` the classifier head trains
bitwise as without BATL's layer; this checks that the setting travels from the config
through the strategy's model needs to the run's compiled loss.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from batl_jax import setup, sharding
from tests.run_helpers import DATA_DIR, tiny_config
from tests.tiny_bert import save_tiny_bert


@pytest.mark.skipif(not Path(DATA_DIR).is_dir(), reason="data dir not available")
@pytest.mark.parametrize("grad", ["all", "embedding_only"])
def test_triplet_grad_reaches_the_runs_loss(tmp_path, grad):
    model = save_tiny_bert(tmp_path / "model")
    cfg = tiny_config(model, al__strategy="batl", batl__triplet_grad=grad, mesh__num_devices=1)
    parts = setup.build(cfg, sharding.make_mesh(1))
    assert parts.steps.loss_cfg.triplet_grad == grad
    assert parts.steps.loss_cfg.triplet_weight == cfg.batl.train_triplet_weight
    rand_cfg = tiny_config(model, al__strategy="rand", mesh__num_devices=1)
    rand = setup.build(rand_cfg, sharding.make_mesh(1))
    assert rand.steps.loss_cfg.triplet_weight == 0
