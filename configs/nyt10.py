"""NYT-10 (Riedel 2010, OpenNRE's preprocessing), the paper's main relation task; k = 500.

Needs the data: OpenNRE's benchmark/download_nyt10.sh puts nyt10_train.txt and
nyt10_test.txt under DATA_DIR/nyt10 (JSON lines: text, relation, h/t with name and
char pos), or set --config.data.hub_id to a hub copy in that format. Bags are entity
pairs; bag-level P@N and PR-AUC are reported beside the sentence-level ones.
The paper's second setting: --config.al.batch_size=2000. Run (GPU recommended):
  python -m batl_jax.main --config=configs/nyt10.py --config.data.dir=DATA_DIR
"""

from batl_jax.config import get_base_config


def get_config():
    c = get_base_config()
    c.name = "nyt10"
    c.model.name = "bert-base-uncased"
    c.data.name = "nyt10"
    c.data.on_error = "skip"
    c.task.name = "relation"
    c.task.no_relation_label = "NA"
    c.task.p_at_n = (100, 200, 500, 1000)
    c.al.batch_size = 500
    c.al.rounds = 10
    c.train.lr = 2e-5
    return c
