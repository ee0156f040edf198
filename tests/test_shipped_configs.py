"""Every config shipped in configs/ builds, passes the value checks a run applies, and loads
from any working directory (README, "Running an experiment")."""

import importlib.util
import subprocess
import sys

import pytest

from batl_jax import config
from batl_jax.config_checks import check_values
from tests.run_helpers import REPO

_RUNNABLE = sorted(
    p.stem
    for p in (REPO / "configs").glob("*.py")
    if p.stem != "__init__" and "def get_config" in p.read_text()
)


def test_every_runnable_config_is_listed():
    assert {"demo", "pubmed", "study_csabstruct", "study_semeval"} <= set(_RUNNABLE)
    assert not (REPO / "configs" / "base.py").exists()  # the defaults live in batl_jax.config


def _load(path):
    """The config as ``--config=path`` loads it: by file, not as a module of ``configs``."""
    spec = importlib.util.spec_from_file_location(f"shipped_config_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config()


@pytest.mark.parametrize("name", _RUNNABLE)
def test_config_builds_and_passes_checks(name):
    path = REPO / "configs" / f"{name}.py"
    assert "from configs" not in path.read_text()  # would need the checkout on sys.path
    cfg = _load(path)
    check_values(cfg)
    if name.startswith("study_"):
        # The docstring's sweep command is the one that reproduces docs/results/.
        doc = path.read_text().split('"""')[1]
        assert f"--config=configs/{name}.py" in doc
        if name.startswith("study_full_"):  # the paper's regime: every weight fine-tuned
            assert "--seeds=3" in doc and cfg.train.mode == "full"
        else:
            assert "--seeds=10" in doc and "--variants=" in doc
            assert cfg.train.mode == "head" and cfg.al.rounds == 10


def test_base_config_has_the_new_keys_with_their_defaults():
    c = config.get_base_config()
    assert (c.data.train_file, c.data.test_file, c.data.id_field) == ("", "", "")
    assert tuple(c.data.label_names) == ()
    assert (c.al.test_size, c.al.stop, c.al.stop_set_size) == (0, "none", 2000)
    assert (c.al.stop_window, c.al.stop_kappa) == (3, 0.99)
    check_values(c)
    assert config.get_base_config() is not c  # a fresh dict each call: no shared mutation


def test_config_loads_from_another_folder(tmp_path):
    """``--config=<checkout>/configs/demo.py`` from a folder outside the checkout (issue 14)."""
    code = (
        "import sys; from absl import flags; from ml_collections import config_flags; "
        "f = config_flags.DEFINE_config_file('config'); flags.FLAGS(sys.argv); "
        "print(f.value.name, f.value.model.name)"
    )
    config_file = REPO / "configs" / "study_semeval.py"
    out = subprocess.run(
        [sys.executable, "-c", code, f"--config={config_file}"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["study_semeval", config.OFFLINE_MINILM]
