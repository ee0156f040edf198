"""Fidelity study on this CPU: CSAbstruct, MiniLM frozen (head mode), k = 100, 10 rounds.

All nine strategies × 5 seeds (tables and plots in docs/results/csabstruct/):
  BATL_DATA_DIR=../shared/data python -m batl_jax.sweep --config=configs/study_csabstruct.py \
      --strategies=rand,conf,entropy,dal,batchbald,coreset,badge,alps,batl --seeds=5 \
      --workdir=runs/study/csabstruct
"""

from batl_jax.config import study_config


def get_config():
    return study_config("study_csabstruct", "csabstruct", batch_size=100)
