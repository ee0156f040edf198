"""AG News (the paper's setup via ALPS): bert-base-uncased, k = 100, 10 rounds, lr 2e-5.

Needs the hub for the model (or --config.model.name=/path/to/bert). Data from the data dir
(ALPS' 10k train sample as the pool, the official test set). Run:
  BATL_DATA_DIR=../shared/data python -m batl_jax.main --config=configs/agnews.py
"""

from batl_jax.config import get_base_config


def get_config():
    c = get_base_config()
    c.name = "agnews"
    c.model.name = "bert-base-uncased"
    c.data.name = "ag_news"
    c.al.batch_size = 100
    c.al.rounds = 10
    c.train.lr = 2e-5
    return c
