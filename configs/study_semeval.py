"""Fidelity study on this CPU: SemEval-2010 Task 8, MiniLM frozen (head mode), k = 50, 10 rounds.

Every strategy, BATL's control (``batl.triplet_grad=embedding_only``, the training-time
triplet loss kept off h_C) and the batch-aware BATL (``batl.batch_mode=spaced``), 10 seeds
(tables and plots in docs/results/semeval/):
  BATL_DATA_DIR=../shared/data python -m batl_jax.sweep --config=configs/study_semeval.py \\
      --strategies=rand,conf,entropy,dal,bald,batchbald,coreset,badge,alps,batl \\
      --variants=batl:batl.triplet_grad=embedding_only,batl:batl.batch_mode=spaced \\
      --seeds=10 --workdir=runs/study/semeval
"""

from batl_jax.config import study_config


def get_config():
    c = study_config("study_semeval", "semeval", batch_size=50)
    c.task.name = "relation"
    c.task.no_relation_label = "Other"
    return c
