"""Wiki-KBP relation extraction (CoType preprocessing; "None" = no relation), k = 50.

The data dir holds the full test set (289 sentences) but only the first 544 training
sentences (3,323 mentions; 14 with nested entity names are skipped, hence
data.on_error = skip). The paper's full train set has 23,884 sentences; use
--config.al.batch_size=200 for its second setting. Run:
  BATL_DATA_DIR=../shared/data python -m batl_jax.main --config=configs/wiki_kbp.py
"""

from batl_jax.config import OFFLINE_MINILM, get_base_config


def get_config():
    c = get_base_config()
    c.name = "wiki_kbp"
    c.model.name = OFFLINE_MINILM
    c.data.name = "wiki_kbp"
    c.data.on_error = "skip"
    c.task.name = "relation"
    c.task.no_relation_label = "None"
    c.task.p_at_n = (100, 200, 500)
    c.al.batch_size = 50
    c.al.rounds = 10
    c.train.lr = 2e-5
    return c
