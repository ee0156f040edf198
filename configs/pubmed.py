"""The paper's PubMed 20k RCT setup: SciBERT, k = 100, 10 rounds, lr 2e-5, max_len 128.

Needs network access to the Hugging Face hub (model and data). Run:
  python -m batl_jax.main --config=configs/pubmed.py
"""

from batl_jax.config import get_base_config


def get_config():
    c = get_base_config()
    c.name = "pubmed"
    c.model.name = "allenai/scibert_scivocab_uncased"
    c.model.max_len = 128
    c.data.name = "hub"
    c.data.hub_id = "armanc/pubmed-rct20k"
    c.data.text_field = "text"
    c.data.label_field = "label"
    c.al.batch_size = 100
    c.al.rounds = 10
    c.train.lr = 2e-5
    return c
