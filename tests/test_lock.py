"""WorkdirLock: one run per workdir, refused at once with the holder's pid, never stale."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest

from batl_jax.errors import BatlError, LockError
from batl_jax.lock import LOCK_NAME, WorkdirLock

# Holds the lock of argv[1] until stdin closes (or the process is killed).
_HOLDER = textwrap.dedent(
    """
    import sys
    from batl_jax.lock import WorkdirLock
    with WorkdirLock(sys.argv[1]):
        print("locked", flush=True)
        sys.stdin.read()
    """
)

# Tries the lock of argv[1] once, as an entry point would report it.
_CONTENDER = textwrap.dedent(
    """
    import sys
    from batl_jax.errors import BatlError
    from batl_jax.lock import WorkdirLock
    try:
        with WorkdirLock(sys.argv[1]):
            print("acquired")
    except BatlError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(e.exit_code)
    """
)


def _holder(workdir):
    proc = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(workdir)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout.readline().strip() == "locked"
    return proc


def _contend(workdir):
    return subprocess.run(
        [sys.executable, "-c", _CONTENDER, str(workdir)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_second_process_is_refused_naming_the_holder_then_resumes_after_a_kill(tmp_path):
    workdir = tmp_path / "run"
    holder = _holder(workdir)
    try:
        refused = _contend(workdir)
        assert refused.returncode == 2, refused.stderr
        lines = refused.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: workdir "), refused.stderr
        assert f"pid {holder.pid} " in lines[0] and "--workdir" in lines[0]
        assert refused.stdout == ""
    finally:
        holder.kill()  # SIGKILL: no cleanup runs, the .lock file stays behind
        holder.wait()
    assert (workdir / LOCK_NAME).exists()  # stale file...
    resumed = _contend(workdir)  # ...that never blocks
    assert resumed.returncode == 0 and resumed.stdout.strip() == "acquired", resumed.stderr


def test_clean_release_removes_the_file_and_lets_the_next_run_in(tmp_path):
    holder = _holder(tmp_path)
    holder.communicate("")  # stdin closed: the holder leaves its with-block
    assert holder.returncode == 0
    assert not (tmp_path / LOCK_NAME).exists()
    assert _contend(tmp_path).returncode == 0


def test_lock_is_exclusive_within_one_process_too(tmp_path):
    with WorkdirLock(tmp_path) as first:
        assert first.held
        assert (tmp_path / LOCK_NAME).read_text().startswith(f"pid {os.getpid()} on ")
        with pytest.raises(LockError, match=rf"pid {os.getpid()} on .*use another --workdir"):
            WorkdirLock(tmp_path).acquire()
    assert not first.held
    with WorkdirLock(tmp_path):  # released: free again
        pass


def test_lock_error_is_a_user_error_with_exit_status_2():
    assert issubclass(LockError, BatlError) and LockError.exit_code == 2


def test_missing_workdir_is_created_and_removed_again_if_nothing_was_written(tmp_path):
    with WorkdirLock(tmp_path / "a" / "b"):
        assert (tmp_path / "a" / "b" / LOCK_NAME).exists()
    assert list(tmp_path.iterdir()) == []  # a refused run leaves nothing behind
    with WorkdirLock(tmp_path / "a" / "b"):
        (tmp_path / "a" / "b" / "metrics.jsonl").write_text("{}\n")
    assert [p.name for p in (tmp_path / "a" / "b").iterdir()] == ["metrics.jsonl"]
    with WorkdirLock(tmp_path / "a" / "b"):  # an existing (now empty) folder is kept
        (tmp_path / "a" / "b" / "metrics.jsonl").unlink()
    assert (tmp_path / "a" / "b").is_dir()


def test_a_file_where_the_workdir_should_be_is_an_os_error(tmp_path):
    (tmp_path / "w").write_text("not a folder")
    with pytest.raises(OSError):
        WorkdirLock(tmp_path / "w").acquire()


def test_sigterm_of_the_holder_frees_the_lock(tmp_path):
    holder = _holder(tmp_path)
    holder.send_signal(signal.SIGTERM)
    holder.wait()
    assert _contend(tmp_path).returncode == 0
