"""Fidelity study on this CPU: SemEval-2010 Task 8, MiniLM frozen (head mode), k = 50, 10 rounds.

All nine strategies × 5 seeds (tables and plots in docs/results/semeval/):
  BATL_DATA_DIR=../shared/data python -m batl_jax.sweep --config=configs/study_semeval.py \
      --strategies=rand,conf,entropy,dal,batchbald,coreset,badge,alps,batl --seeds=5 \
      --workdir=runs/study/semeval
"""

from batl_jax.config import study_config


def get_config():
    c = study_config("study_semeval", "semeval", batch_size=50)
    c.task.name = "relation"
    c.task.no_relation_label = "Other"
    return c
