"""Every config shipped in configs/ builds and passes the value checks a run applies."""

import importlib
import sys

import pytest

from batl_jax.config_checks import check_values
from tests.run_helpers import REPO

_RUNNABLE = sorted(
    p.stem
    for p in (REPO / "configs").glob("*.py")
    if p.stem not in {"__init__", "study"} and "def get_config" in p.read_text()
)


def test_every_runnable_config_is_listed():
    assert {"base", "demo", "pubmed", "study_csabstruct", "study_semeval"} <= set(_RUNNABLE)


@pytest.mark.parametrize("name", _RUNNABLE)
def test_config_builds_and_passes_checks(name, monkeypatch):
    monkeypatch.syspath_prepend(str(REPO))
    module = importlib.import_module(f"configs.{name}")
    cfg = module.get_config()
    check_values(cfg)
    if name.startswith("study_"):
        # The docstring's sweep command is the one that reproduces docs/results/.
        assert f"--config=configs/{name}.py" in module.__doc__
        assert "--seeds=5" in module.__doc__
        assert cfg.train.mode == "head" and cfg.al.rounds == 10
    sys.modules.pop(f"configs.{name}", None)
