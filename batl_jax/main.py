"""Entry point: ``python -m batl_jax.main --config=configs/demo.py [--config.x=y] [--workdir=DIR]``
(console script ``batl-jax``).

Only wiring lives here: flags → (optional) ``jax.distributed`` → mesh → the loop, and the one
place where what a user can cause becomes one line and an exit status (:func:`exit_status`):
a :class:`~batl_jax.errors.BatlError` or an I/O failure ``error: ...`` with status 2, SIGINT
and SIGTERM one line saying the run resumes (130, 143). A bug keeps its traceback.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import signal
import sys
import threading
import traceback
from pathlib import Path
from typing import Any

from absl import app, flags
from absl import logging as absl_logging
from ml_collections import config_flags

INTERRUPTED = "interrupted; rerun the same command to resume"

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Path to a config file (configs/*.py).", lock_config=True
)
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory (default: runs/<config.name>).")

log = logging.getLogger("batl_jax")


class Terminated(BaseException):
    """SIGTERM, raised in the main thread as KeyboardInterrupt is for SIGINT.

    A BaseException, so no ``except Exception`` on the way up swallows it, and every
    ``finally`` and context manager (the workdir lock above all) runs before the exit.
    """


_SIGNAL_EXCEPTIONS = {signal.SIGINT: KeyboardInterrupt, signal.SIGTERM: Terminated}
_previous_unraisablehook = sys.unraisablehook
_REDELIVER_S = 0.05


def _on_signal(signum, frame):
    raise _SIGNAL_EXCEPTIONS[signum]


def _redeliver_swallowed(unraisable) -> None:
    """Python ignores an exception raised where it cannot propagate (a gc callback such as
    JAX's, a ``__del__``) and reports it here: a signal handled there would be lost and the
    run would go on to the end, so send it to the main thread again, from a helper thread a
    moment later, when the main thread has left the place that ignored it."""
    for signum, exception in _SIGNAL_EXCEPTIONS.items():
        if unraisable.exc_type is not None and issubclass(unraisable.exc_type, exception):
            main_thread = threading.main_thread().ident
            again = threading.Timer(_REDELIVER_S, signal.pthread_kill, (main_thread, signum))
            again.daemon = True
            again.start()
            return
    _previous_unraisablehook(unraisable)


def install_signal_handlers() -> None:
    """SIGINT and SIGTERM unwind the run as exceptions that always arrive, so both end in
    :data:`INTERRUPTED` after every ``finally`` ran (main thread only)."""
    for signum in _SIGNAL_EXCEPTIONS:
        signal.signal(signum, _on_signal)
    sys.unraisablehook = _redeliver_swallowed


def _uninstall_signal_handlers() -> None:
    """Back to Python's defaults once the run has ended: a second Ctrl-C or SIGTERM while
    the interpreter exits acts at once."""
    if sys.unraisablehook is _redeliver_swallowed:
        sys.unraisablehook = _previous_unraisablehook
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


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
    kwargs: dict[str, Any] = {}
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


def backend_line(mesh) -> str:
    """Backend, device kind and counts: what the run computes on, stated before anything else."""
    import jax

    kinds = ", ".join(sorted({d.device_kind for d in jax.devices()}))
    return (
        f"JAX backend {jax.default_backend()}: {jax.device_count()} device(s) ({kinds}), "
        f"{jax.local_device_count()} local, {jax.process_count()} process(es), mesh of {mesh.size}"
    )


def run(cfg, workdir: str | None) -> list[dict]:
    """Run (or resume) the experiment of ``cfg`` in ``workdir``; returns the metrics rows."""
    from batl_jax.config_checks import check_values
    from batl_jax.errors import ConfigError

    # Before the lines below read sections an override may have replaced, and before the
    # seconds that importing JAX takes.
    check_values(cfg)
    from batl_jax import loop, sharding

    init_distributed(cfg)
    try:
        mesh = sharding.make_mesh(cfg.mesh.num_devices or None)
    except ValueError as e:
        raise ConfigError(
            f"mesh.num_devices={cfg.mesh.num_devices}: {e}; use 0 (all devices) or fewer"
        ) from e
    workdir_path = Path(workdir or Path("runs") / cfg.name)
    log.info("%s; workdir %s", backend_line(mesh), workdir_path)
    return loop.run(cfg, workdir_path, mesh)


# ----------------------------------------------------------------------------- errors


def exit_status(e: BaseException) -> tuple[int, list[str]] | None:
    """The exit status and stderr lines for what a user can cause or fix; None for a bug.

    The only mapping from exceptions to exit statuses of the package's entry points.
    """
    from batl_jax.errors import BatlError

    if isinstance(e, KeyboardInterrupt):
        return 128 + signal.SIGINT, [INTERRUPTED]
    if isinstance(e, Terminated):
        return 128 + signal.SIGTERM, [INTERRUPTED]
    if isinstance(e, BatlError):
        return e.exit_code, [f"error: {e}"] + [f"  {line}" for line in e.details]
    cause: BaseException | None = e
    while cause is not None and not isinstance(cause, OSError):
        cause = cause.__cause__  # an explicit ``raise ... from`` an I/O failure
    if cause is not None:
        return (1 if cause.errno == errno.EIO else 2), [f"error: {describe_os_error(cause)}"]
    return None


_OS_FIXES = {
    (errno.EACCES, errno.EPERM, errno.EROFS): "make it writable or choose another --workdir",
    (errno.ENOSPC, errno.EDQUOT): "free some space, then rerun the same command to resume",
    (errno.ENOTDIR, errno.EEXIST, errno.EISDIR): (
        "a file stands where a folder should be (or the reverse): move it away or choose "
        "another --workdir"
    ),
    (errno.EIO,): "the disk failed; check it, then rerun the same command to resume",
}


def describe_os_error(e: OSError) -> str:
    """``<reason>: <path>; <fix>`` for an I/O failure, on one line."""
    fix = next((f for codes, f in _OS_FIXES.items() if e.errno in codes), None)
    fix = fix or "check the path and the disk, then rerun the same command to resume"
    reason = e.strerror or " ".join(str(e).split()) or type(e).__name__
    where = ", ".join(str(f) for f in (e.filename, e.filename2) if f is not None)
    return f"{reason}: {where}; {fix}" if where else f"{reason}; {fix}"


@contextlib.contextmanager
def reported_errors():
    """Print what :func:`exit_status` maps as its lines and exit with its status."""
    try:
        yield
    except BaseException as e:
        _uninstall_signal_handlers()
        sys.exit(report_exception(e))
    else:
        _uninstall_signal_handlers()


def report_exception(e: BaseException) -> int:
    """Print what :func:`exit_status` maps ``e`` to and return its status; re-raise a bug."""
    status = exit_status(e)
    if status is None:
        raise e
    code, lines = status
    for line in lines:
        print(line, file=sys.stderr)
    return code


def _one_line(e: BaseException) -> str:
    inner = e  # ml_collections wraps a KeyError (with a "did you mean") in an AttributeError
    while len(inner.args) == 1 and isinstance(inner.args[0], BaseException):
        inner = inner.args[0]
    text = " ".join(str(inner.args[0] if len(inner.args) == 1 else inner).split())
    if isinstance(e, (AttributeError, KeyError)):
        return f"unknown config key {text}"[:300]
    return f"{type(e).__name__}: {text}"[:300]


def _config_argument(argv: list[str]) -> str:
    """The --config path as typed (the flag holds no value when loading it failed)."""
    for flag, value in zip(argv, argv[1:] + [""], strict=True):
        if flag.startswith(("--config=", "-config=")):
            return flag.split("=", 1)[1]
        if flag in ("--config", "-config"):
            return value
    return ""


def config_error_message(e: Exception) -> str:
    """One line for a --config file that does not load or a --config.* override that fails."""
    if isinstance(e, SyntaxError):
        return (
            f"cannot load --config={e.filename}: syntax error at line {e.lineno} ({e.msg}); "
            "fix the file"
        )
    path = Path(_config_argument(sys.argv))
    inner = e.__context__ if isinstance(e, flags.IllegalFlagValueError) else None
    while inner is not None and inner.__context__ is not None:
        inner = inner.__context__  # absl rewraps what the file's get_config raised (twice)
    if isinstance(inner, Exception) and "whilst parsing config file" in str(e):
        return config_error_message(inner)
    frames = traceback.extract_tb(e.__traceback__)
    # Raised by the file's own code (its get_config or a helper it calls): the file's error.
    in_file = path.is_file() and any(Path(f.filename).resolve() == path.resolve() for f in frames)
    if isinstance(e, AttributeError) and "get_config" in str(e) and not in_file:
        return (
            f"cannot load --config={path} (it defines no get_config()); define get_config() "
            "returning the config, as configs/demo.py does"
        )
    if not in_file and isinstance(
        e, (flags.Error, AttributeError, KeyError, TypeError, ValueError)
    ):
        return f"bad command line: {_one_line(e)}; batl_jax/config.py lists every key and its type"
    if isinstance(e, OSError):  # ml_collections wraps a missing file in a bare OSError
        reason = _one_line(e) if path.is_file() else "a folder" if path.is_dir() else "no such file"
        return f"cannot load --config={path} ({reason}); pass a file such as configs/demo.py"
    where = f" at {Path(frames[-1].filename).name} line {frames[-1].lineno}" if frames else ""
    text = _one_line(e) if not in_file else f"{type(e).__name__}: {' '.join(str(e).split())}"
    return f"cannot load --config={path} ({text[:300]}{where}); fix its get_config()"


# ----------------------------------------------------------------------------- entry


def main(argv) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    from batl_jax.errors import ConfigError

    # Libraries (Orbax above all) log every step at INFO through absl; keep ours only.
    absl_logging.set_verbosity(absl_logging.WARNING)
    log.setLevel(logging.INFO)
    install_signal_handlers()
    with reported_errors():
        try:
            cfg = _CONFIG.value
            if cfg is not None:
                cfg.name  # noqa: B018 -- a lazily loaded config file loads (or fails) here
        except Exception as e:
            raise ConfigError(config_error_message(e)) from e
        if cfg is None:
            raise ConfigError("--config is required, e.g. --config=configs/demo.py")
        run(cfg, _WORKDIR.value)


def _parse_flags(argv):
    """absl's flag parsing (which loads the --config file and applies ``--config.*``), but a
    broken file or a bad override ends in one ``error:`` line and exit status 2."""
    try:
        return flags.FLAGS(argv)
    except Exception as e:  # the user's config file runs here: anything it raises is theirs
        print(f"error: {config_error_message(e)}", file=sys.stderr)
        sys.exit(2)


def entry() -> None:
    app.run(main, flags_parser=_parse_flags)


if __name__ == "__main__":
    entry()
