"""``batl_jax.select`` on a user's own arrays, and the README's example of it."""

from __future__ import annotations

import re

import numpy as np
import pytest

import batl_jax
from batl_jax.api import NEEDS
from batl_jax.errors import ConfigError
from tests.run_helpers import REPO


def _pool(n=211, c=4, d=16, seed=0):
    rng = np.random.default_rng(seed)
    probs = rng.dirichlet(np.ones(c), size=n)
    emb = rng.normal(size=(n, d)).astype(np.float32)
    mc = rng.dirichlet(np.ones(c), size=(5, n))
    labeled = np.zeros(n, bool)
    labeled[rng.choice(n, 13, replace=False)] = True
    return probs, emb, mc, labeled


@pytest.mark.parametrize("name", sorted(NEEDS))
def test_every_array_strategy_picks_k_unlabeled_rows(name):
    probs, emb, mc, labeled = _pool()
    sel = batl_jax.select(
        name, 7, probs=probs, embeddings=emb, mc_probs=mc, labeled=labeled, seed=3
    )
    assert len(set(sel.indices.tolist())) == 7 and not labeled[sel.indices].any()
    again = batl_jax.select(
        name, 7, probs=probs, embeddings=emb, mc_probs=mc, labeled=labeled, seed=3
    )
    np.testing.assert_array_equal(sel.indices, again.indices)


def test_entropy_picks_the_most_uncertain_rows():
    probs, _, _, labeled = _pool()
    sel = batl_jax.select("entropy", 5, probs=probs, labeled=labeled)
    ent = -(probs * np.log(probs)).sum(1)
    ent[labeled] = -np.inf
    np.testing.assert_array_equal(np.sort(sel.indices), np.sort(np.argsort(-ent)[:5]))


def test_missing_or_bad_arrays_are_one_line_errors():
    probs, emb, _, _ = _pool()
    with pytest.raises(ConfigError, match="needs mc_probs"):
        batl_jax.select("batchbald", 3, probs=probs)
    with pytest.raises(ConfigError, match="211 rows"):
        batl_jax.select("badge", 3, probs=probs, embeddings=emb[:10])
    with pytest.raises(ConfigError, match="not a batl"):
        batl_jax.select("batl", 3, probs=probs, embeddings=emb, nope=1)


def test_the_readme_example_runs(capsys):
    text = (REPO / "README.md").read_text()
    section = text[text.index("### Python API") :]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    exec(compile(code, "README.md", "exec"), {})
    out = capsys.readouterr().out
    assert "batl" in out and "entropy" in out
