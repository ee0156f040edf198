"""Fidelity study on this CPU: CSAbstruct, MiniLM frozen (head mode), k = 100, 10 rounds.

Every strategy, BATL's control (``batl.triplet_grad=embedding_only``, the training-time
triplet loss kept off h_C) and the batch-aware BATL (``batl.batch_mode=spaced``), 10 seeds
(tables and plots in docs/results/csabstruct/):
  BATL_DATA_DIR=../shared/data python -m batl_jax.sweep --config=configs/study_csabstruct.py \\
      --strategies=rand,conf,entropy,dal,bald,batchbald,coreset,badge,alps,batl \\
      --variants=batl:batl.triplet_grad=embedding_only,batl:batl.batch_mode=spaced \\
      --seeds=10 --workdir=runs/study/csabstruct
"""

from batl_jax.config import study_config


def get_config():
    return study_config("study_csabstruct", "csabstruct", batch_size=100)
