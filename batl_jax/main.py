"""Entry point: ``python -m batl_jax.main --config=configs/demo.py [--config.x=y] [--workdir=DIR]``.

Only wiring lives here: flags → (optional) ``jax.distributed`` → mesh → the loop.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from absl import app, flags
from absl import logging as absl_logging
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Path to a config file (configs/*.py).", lock_config=True
)
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory (default: runs/<config.name>).")


def init_distributed(cfg) -> None:
    """``jax.distributed.initialize`` when ``distributed.enabled`` (multi-host GPU/TPU/CPU).

    Each setting comes from the config, else the environment (``JAX_COORDINATOR_ADDRESS``,
    ``JAX_NUM_PROCESSES``, ``JAX_PROCESS_ID``), else JAX's own cluster detection (TPU
    slices, SLURM, Open MPI). It must run before anything touches a JAX backend, so it
    asks JAX nothing about devices first.
    """
    if not cfg.distributed.enabled:
        return
    import os

    import jax

    from batl_jax.errors import ConfigError

    if jax.distributed.is_initialized():  # a second run() in the same process
        return
    d = cfg.distributed
    kwargs = {}
    address = d.coordinator_address or os.environ.get("JAX_COORDINATOR_ADDRESS", "")
    num = d.num_processes or int(os.environ.get("JAX_NUM_PROCESSES", "0") or 0)
    pid = d.process_id if d.process_id >= 0 else int(os.environ.get("JAX_PROCESS_ID", "-1") or -1)
    if address:
        kwargs["coordinator_address"] = address
    if num:
        kwargs["num_processes"] = num
    if pid >= 0:
        kwargs["process_id"] = pid
    # Cross-process collectives on the CPU backend need gloo; GPU/TPU backends ignore this.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    try:
        jax.distributed.initialize(**kwargs)
    except (ValueError, RuntimeError) as e:
        first = (str(e).strip().splitlines() or [""])[0][:200]
        raise ConfigError(
            f"jax.distributed.initialize failed ({type(e).__name__}: {first}); set "
            "--config.distributed.coordinator_address=HOST:PORT, .num_processes and .process_id "
            "(or JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES, JAX_PROCESS_ID), or run on a "
            "cluster JAX detects (TPU VM, SLURM)"
        ) from e


def run(cfg, workdir: str | None) -> list[dict]:
    """Run (or resume) the experiment of ``cfg`` in ``workdir``; returns the metrics rows."""
    from batl_jax import sharding
    from batl_jax.errors import ConfigError
    from batl_jax import loop

    init_distributed(cfg)
    try:
        mesh = sharding.make_mesh(cfg.mesh.num_devices or None)
    except ValueError as e:
        raise ConfigError(
            f"mesh.num_devices={cfg.mesh.num_devices}: {e}; use 0 (all devices) or fewer"
        ) from e
    workdir_path = Path(workdir or Path("runs") / cfg.name)
    logging.getLogger("batl_jax").info("workdir %s, %d device(s)", workdir_path, mesh.size)
    return loop.run(cfg, workdir_path, mesh)


def main(argv) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    from batl_jax.errors import BatlError

    # Libraries (Orbax above all) log every step at INFO through absl; keep ours only.
    absl_logging.set_verbosity(absl_logging.WARNING)
    logging.getLogger("batl_jax").setLevel(logging.INFO)
    try:
        cfg = _CONFIG.value
        if cfg is not None:
            cfg.name  # noqa: B018 -- ml_collections loads the file lazily: load it now
    except Exception as e:  # a missing or broken config file; absl would print a traceback
        _fail(f"cannot load --config ({_one_line(e)}); pass a file such as configs/demo.py")
    if cfg is None:
        _fail("--config is required, e.g. --config=configs/demo.py")
    try:
        run(cfg, _WORKDIR.value)
    except BatlError as e:
        report_error(e)


def _one_line(e: BaseException) -> str:
    inner = e  # ml_collections wraps a KeyError (with a "did you mean") in an AttributeError
    while len(inner.args) == 1 and isinstance(inner.args[0], BaseException):
        inner = inner.args[0]
    text = " ".join(str(inner.args[0] if len(inner.args) == 1 else inner).split())
    if isinstance(e, (AttributeError, KeyError)):
        return f"unknown config key {text}"[:300]
    return f"{type(e).__name__}: {text}"[:300]


def _fail(message: str, code: int = 2):
    print(f"error: {message}", file=sys.stderr)
    sys.exit(code)


def report_error(e) -> None:
    """Print a BatlError as one ``error:`` line (plus indented details) and exit with its code."""
    print(f"error: {e}", file=sys.stderr)
    for line in e.details:
        print(f"  {line}", file=sys.stderr)
    sys.exit(e.exit_code)


def _parse_flags(argv):
    """absl's flag parsing, but a bad ``--config.*`` override (unknown key, wrong type)
    ends in one ``error:`` line and exit status 2 instead of a traceback."""
    try:
        return flags.FLAGS(argv)
    except (flags.Error, AttributeError, KeyError, TypeError, ValueError) as e:
        _fail(f"bad command line: {_one_line(e)}; configs/base.py lists every key and its type")


def entry() -> None:
    app.run(main, flags_parser=_parse_flags)


if __name__ == "__main__":
    entry()
