"""Fidelity study on this CPU: SemEval-2010 Task 8, MiniLM frozen (head mode), k = 50, 10 rounds.

All nine strategies × 3 seeds (tables and plots in docs/results/semeval/):
  BATL_DATA_DIR=../shared/data python -m batl_jax.sweep --config=configs/study_semeval.py \
      --strategies=rand,conf,entropy,dal,batchbald,coreset,badge,alps,batl --seeds=3 \
      --workdir=runs/study/semeval
"""

from configs import base


def get_config():
    c = base.get_config()
    c.name = "study_semeval"
    c.model.name = base.OFFLINE_MINILM
    c.model.pooling = "mean"  # MiniLM is a sentence-transformers model trained with mean pooling
    c.data.name = "semeval"
    c.task.name = "relation"
    c.task.no_relation_label = "Other"
    c.al.batch_size = 50
    c.al.rounds = 10
    c.train.mode = "head"
    c.train.lr = 2e-3
    c.train.epochs = 20
    c.alps.fit_mlm_head = True  # MiniLM ships no MLM head (a recorded deviation)
    return c
