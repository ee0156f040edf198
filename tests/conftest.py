"""Test-wide set-up: 8 fake CPU devices, set before jax is first imported."""

import atexit
import os
import shutil
import tempfile

os.environ["JAX_PLATFORMS"] = "cpu"
_flag = "--xla_force_host_platform_device_count=8"
if _flag not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + _flag).strip()
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Feature caches of test runs stay out of the user's ~/.cache, and go when the tests do.
if "BATL_CACHE_DIR" not in os.environ:
    os.environ["BATL_CACHE_DIR"] = tempfile.mkdtemp(prefix="batl_cache_")
    atexit.register(shutil.rmtree, os.environ["BATL_CACHE_DIR"], ignore_errors=True)

import jax  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_default_matmul_precision", "highest")


@pytest.fixture(scope="session")
def mesh8():
    """A 1-D ('data',) mesh over all 8 fake CPU devices."""
    from batl_jax import sharding

    assert len(jax.devices()) == 8, "tests expect 8 fake CPU devices"
    return sharding.make_mesh()


@pytest.fixture(scope="session")
def mesh1():
    """A 1-D ('data',) mesh over a single CPU device."""
    from batl_jax import sharding

    return sharding.make_mesh(num_devices=1)
