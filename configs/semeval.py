"""SemEval-2010 Task 8 relation extraction (19 directed labels, "Other" = no relation).

Offline with MiniLM; k = 50 per round (the paper's small Wiki-KBP budget). Run:
  BATL_DATA_DIR=../shared/data python -m batl_jax.main --config=configs/semeval.py \
      --config.train.mode=head
Metrics per round: micro-F1 over non-Other labels, P@N, PR-AUC, and the official
SemEval macro-F1 (directed and undirected).
"""

from batl_jax.config import OFFLINE_MINILM, get_base_config


def get_config():
    c = get_base_config()
    c.name = "semeval"
    c.model.name = OFFLINE_MINILM
    c.model.max_len = 128
    c.data.name = "semeval"
    c.task.name = "relation"
    c.task.no_relation_label = "Other"
    c.al.batch_size = 50
    c.al.rounds = 3
    c.train.lr = 2e-5
    # Head mode (frozen encoder) learns with a larger step size; full mode keeps 2e-5.
    c.train.epochs = 3
    return c
