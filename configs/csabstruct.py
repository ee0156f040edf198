"""CSAbstruct (stand-in for PubMed 20k RCT), offline MiniLM, full fine-tuning, k = 100.

Run:
  BATL_DATA_DIR=../shared/data python -m batl_jax.main --config=configs/csabstruct.py
Head-only (fast on a CPU): add
  --config.train.mode=head --config.train.lr=2e-3 --config.train.epochs=20
"""

from batl_jax.config import OFFLINE_MINILM, get_base_config


def get_config():
    c = get_base_config()
    c.name = "csabstruct"
    c.model.name = OFFLINE_MINILM
    c.model.pooling = "mean"  # MiniLM is a sentence-transformers model trained with mean pooling
    c.data.name = "csabstruct"
    c.al.batch_size = 100
    c.al.rounds = 10
    return c
