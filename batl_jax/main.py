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
    """``jax.distributed.initialize`` when ``distributed.enabled`` (multi-host GPU/TPU)."""
    if not cfg.distributed.enabled:
        return
    import jax

    kwargs = {}
    if cfg.distributed.coordinator_address:
        kwargs["coordinator_address"] = cfg.distributed.coordinator_address
    if cfg.distributed.num_processes:
        kwargs["num_processes"] = cfg.distributed.num_processes
    if cfg.distributed.process_id >= 0:
        kwargs["process_id"] = cfg.distributed.process_id
    if jax.default_backend() == "cpu" or "cpu" in str(jax.config.jax_platforms or ""):
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(**kwargs)


def run(cfg, workdir: str | None) -> list[dict]:
    """Run (or resume) the experiment of ``cfg`` in ``workdir``; returns the metrics rows."""
    from batl_jax import sharding
    from batl_jax.loop import Experiment

    init_distributed(cfg)
    mesh = sharding.make_mesh(cfg.mesh.num_devices or None)
    workdir_path = Path(workdir or Path("runs") / cfg.name)
    logging.getLogger("batl_jax").info("workdir %s, %d device(s)", workdir_path, mesh.size)
    return Experiment(cfg, workdir_path, mesh).run()


def main(argv) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    from batl_jax.errors import BatlError

    # Libraries (Orbax above all) log every step at INFO through absl; keep ours only.
    absl_logging.set_verbosity(absl_logging.WARNING)
    logging.getLogger("batl_jax").setLevel(logging.INFO)
    cfg = _CONFIG.value
    if cfg is None:
        print("error: --config is required, e.g. --config=configs/demo.py", file=sys.stderr)
        sys.exit(2)
    try:
        run(cfg, _WORKDIR.value)
    except BatlError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(e.exit_code)


def entry() -> None:
    app.run(main)


if __name__ == "__main__":
    entry()
