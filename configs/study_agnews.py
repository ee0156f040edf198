"""Fidelity study on this CPU: AG News (10k ALPS pool, official test), MiniLM frozen, k = 100.

Every strategy, BATL's control (``batl.triplet_grad=embedding_only``, the training-time
triplet loss kept off h_C) and the batch-aware BATL (``batl.batch_mode=spaced``), 10 seeds
(tables and plots in docs/results/agnews/):
  BATL_DATA_DIR=../shared/data python -m batl_jax.sweep --config=configs/study_agnews.py \\
      --strategies=rand,conf,entropy,dal,bald,batchbald,coreset,badge,alps,batl \\
      --variants=batl:batl.triplet_grad=embedding_only,batl:batl.batch_mode=spaced \\
      --seeds=10 --workdir=runs/study/agnews
"""

from batl_jax.config import study_config


def get_config():
    return study_config("study_agnews", "ag_news", batch_size=100)
