"""batl_jax.main as users meet it: the first log line, one line for every input or I/O
problem and for SIGINT/SIGTERM, never a traceback (subprocesses where the exit matters)."""

from __future__ import annotations

import errno
import re
import signal
import subprocess
import sys
import textwrap

import pytest

from batl_jax import main as batl_main
from batl_jax.errors import DataError
from tests.run_helpers import REPO, main_command, subprocess_env, tiny_config, write_config_file
from tests.tiny_bert import save_tiny_bert


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_tiny_bert(tmp_path_factory.mktemp("tiny_bert"))


def _main(*args: str, cwd=REPO) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "batl_jax.main", *args],
        cwd=cwd,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_ends_the_run_with_one_line_saying_it_resumes(model_dir, tmp_path, signum):
    config = write_config_file(tmp_path / "cfg.py", model_dir)
    proc = subprocess.Popen(
        main_command(config, tmp_path / "run"),
        cwd=REPO,
        env=subprocess_env(),
        stderr=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    first = proc.stderr.readline()  # the run is under way once it has said where it runs
    proc.send_signal(signum)
    _, rest = proc.communicate(timeout=300)
    # The first log line names the backend, the device kind and the device count.
    assert "JAX backend cpu: 8 device(s) (cpu)" in first, first + rest
    assert proc.returncode == 128 + signum, rest
    assert "Traceback" not in rest and "KeyboardInterrupt" not in rest, rest
    assert rest.strip().splitlines()[-1] == batl_main.INTERRUPTED


# A signal handled inside a __del__ (or a gc callback, as JAX registers one): Python ignores
# the handler's exception there, and the run used to go on to its end and exit 0.
_SWALLOWED = textwrap.dedent(
    """
    import os, signal, sys, time
    from batl_jax import main
    main.install_signal_handlers()
    class Swallows:
        def __del__(self):
            os.kill(os.getpid(), getattr(signal, sys.argv[1]))
    with main.reported_errors():
        Swallows()
        time.sleep(60)
    print("not interrupted")
    """
)


@pytest.mark.parametrize("name, status", [("SIGINT", 130), ("SIGTERM", 143)])
def test_a_signal_python_ignores_where_it_lands_is_delivered_again(name, status):
    out = subprocess.run(
        [sys.executable, "-c", _SWALLOWED, name], capture_output=True, text=True, timeout=50
    )
    assert out.returncode == status and out.stdout == "", out.stdout + out.stderr
    assert out.stderr == batl_main.INTERRUPTED + "\n"


@pytest.mark.parametrize(
    "source, override, expected",
    [
        (
            "def get_config(:\n",
            None,
            r"^error: cannot load --config=.*cfg\.py: syntax error at line 1 .*fix the file$",
        ),
        (
            "def get_config():\n    raise RuntimeError('boom')\n",
            None,
            r"^error: cannot load --config=.*cfg\.py \(RuntimeError: boom at cfg\.py line 2\)",
        ),
        (None, "--config.model={'name': 'x'}", r"^error: model lacks .*--config\.model\.\w+="),
        (None, "--config.train.lr=nan", r"^error: train\.lr=nan is not a number: set "),
        (None, "--config.seed=9223372036854775808", r"^error: seed=.*< 2\*\*63$"),
    ],
    ids=["syntax", "get_config_raises", "section_override", "nan", "seed"],
)
def test_config_problems_are_one_line_and_exit_2(model_dir, tmp_path, source, override, expected):
    config = tmp_path / "cfg.py"
    if source is None:
        write_config_file(config, model_dir)
    else:
        config.write_text(source)
    out = _main(f"--config={config}", f"--workdir={tmp_path / 'run'}", *filter(None, [override]))
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 or "JAX backend" not in lines[-1], out.stderr
    assert lines[-1].startswith("error: ") and "Traceback" not in out.stderr, out.stderr
    assert re.search(expected, lines[-1]), lines[-1]
    assert not (tmp_path / "run").exists()


def test_shipped_config_runs_from_another_folder(tmp_path):
    """Issue 14: --config=<checkout>/configs/demo.py from outside the checkout gets as far
    as its value checks (a NaN override stops it there, before any JAX work)."""
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "batl_jax.main",
            f"--config={REPO / 'configs' / 'demo.py'}",
            "--config.train.lr=nan",
        ],
        cwd=tmp_path,
        env={k: v for k, v in subprocess_env().items() if k != "PYTHONPATH"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 2 and "train.lr=nan" in out.stderr, out.stderr


def test_a_file_where_the_workdir_should_be_is_one_line(model_dir, tmp_path, capsys):
    workdir = tmp_path / "run"
    workdir.write_text("a file, not a folder")
    with pytest.raises(SystemExit) as exit_info, batl_main.reported_errors():
        batl_main.run(tiny_config(model_dir), str(workdir))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and str(workdir) in err[0], err
    assert "another --workdir" in err[0]
    assert workdir.read_text() == "a file, not a folder"


@pytest.mark.parametrize(
    "code, fix",
    [
        (errno.EROFS, "writable"),
        (errno.EACCES, "writable"),
        (errno.ENOSPC, "free some space"),
        (errno.ENOTDIR, "a file stands where a folder should be"),
        (errno.EEXIST, "a file stands where a folder should be"),
        (errno.ELOOP, "check the path"),
    ],
)
def test_os_errors_map_to_one_line_naming_path_and_fix(code, fix):
    e = OSError(code, "reason text", "/some/where/metrics.jsonl")
    status, lines = batl_main.exit_status(e)
    assert status == 2 and len(lines) == 1
    assert (
        lines[0].startswith("error: reason text: /some/where/metrics.jsonl; ") and fix in lines[0]
    )


def test_exit_status_mapping():
    assert batl_main.exit_status(KeyboardInterrupt()) == (130, [batl_main.INTERRUPTED])
    assert batl_main.exit_status(batl_main.Terminated()) == (143, [batl_main.INTERRUPTED])
    assert batl_main.exit_status(DataError("bad; fix", details=["a"])) == (
        2,
        ["error: bad; fix", "  a"],
    )
    assert batl_main.exit_status(OSError(errno.EIO, "I/O error", "f"))[0] == 1
    wrapped = RuntimeError("orbax failed")
    wrapped.__cause__ = OSError(errno.ENOSPC, "No space left on device", "ckpt")
    assert batl_main.exit_status(wrapped)[0] == 2
    assert batl_main.exit_status(ZeroDivisionError()) is None  # a bug keeps its traceback
    assert batl_main.exit_status(SystemExit(0)) is None


def test_a_missing_config_file_is_one_line(tmp_path):
    out = _main("--config=nope.py", cwd=tmp_path)
    assert out.returncode == 2
    assert out.stderr.strip() == (
        "error: cannot load --config=nope.py (no such file); pass a file such as configs/demo.py"
    )
