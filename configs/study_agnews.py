"""Fidelity study on this CPU: AG News (10k ALPS pool, official test), MiniLM frozen, k = 100.

All nine strategies × 5 seeds (tables and plots in docs/results/agnews/):
  BATL_DATA_DIR=../shared/data python -m batl_jax.sweep --config=configs/study_agnews.py \
      --strategies=rand,conf,entropy,dal,batchbald,coreset,badge,alps,batl --seeds=5 \
      --workdir=runs/study/agnews
"""

from batl_jax.config import study_config


def get_config():
    return study_config("study_agnews", "ag_news", batch_size=100)
