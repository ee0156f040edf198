"""One run per workdir: an exclusive ``flock`` on ``<workdir>/.lock`` held for the run's life.

Two runs writing one workdir interleave their rounds in ``metrics.jsonl`` and the checkpoints
beyond repair, and both exit 0. The run that finds the lock taken stops at once, before it
writes anything, naming the process that holds it.

``flock`` belongs to the open file, so the kernel releases it when the holder exits in any
way, SIGKILL and power loss of a local disk included: a stale ``.lock`` file from a killed
run never blocks its resume. The holder's pid and host are written into the file only to
name it in the refusal; the lock itself is the ``flock``. On a clean exit the file is
removed (while still locked, see :meth:`WorkdirLock.acquire`) so a finished run's workdir
holds only the run's files, and folders the lock created are removed again while empty, so
a run refused after taking the lock leaves nothing behind.

Multi-process runs: only the process that writes the workdir (process 0) takes the lock.
"""

from __future__ import annotations

import errno
import fcntl
import os
import socket
import time
from pathlib import Path

from batl_jax.errors import LockError

LOCK_NAME = ".lock"

# Rounds of "the file I locked was unlinked by a releasing holder; open it again". One is
# the norm; the bound only turns a pathological churn of runs into an error, not a spin.
_MAX_ATTEMPTS = 50


class WorkdirLock:
    """Context manager holding the exclusive lock of ``workdir`` (created if missing).

    ``with WorkdirLock(workdir): ...`` raises :class:`~batl_jax.errors.LockError` (exit
    status 2) at once when another process, or another ``WorkdirLock`` in this process,
    holds it. I/O failures (a read-only folder, a file where the folder should be) propagate
    as ``OSError`` for the entry point to report.
    """

    def __init__(self, workdir: str | os.PathLike):
        self.workdir = Path(workdir)
        self.path = self.workdir / LOCK_NAME
        self._fd: int | None = None
        self._created: list[Path] = []  # folders acquire() made, the workdir first

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> WorkdirLock:
        if self._fd is not None:
            raise RuntimeError(f"{self.path} is already held by this WorkdirLock")
        self._created = [p for p in (self.workdir, *self.workdir.parents) if not p.exists()]
        for _ in range(_MAX_ATTEMPTS):
            self.workdir.mkdir(parents=True, exist_ok=True)
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            except FileNotFoundError:  # a releasing run removed the empty folder meanwhile
                continue
            try:
                _lock_or_refuse(fd, self.workdir)
            except BaseException:
                os.close(fd)
                raise
            # A holder releasing between our open() and flock() unlinked the file we locked;
            # a third run may already hold a new one at the same path. Only the file that is
            # still at the path counts.
            if _same_file(fd, self.path):
                try:
                    _write_holder(fd)  # a full disk fails here: unlock, or a resume in
                except BaseException:  # this process would find the lock still held
                    os.close(fd)
                    raise
                self._fd = fd
                return self
            os.close(fd)
        raise LockError(
            f"could not lock {self.path}: other runs keep starting on this workdir; "
            "run one at a time"
        )

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            # Unlink while still locked, so nobody can lock this inode and believe it current.
            self.path.unlink(missing_ok=True)
        finally:
            os.close(fd)
        for folder in self._created:  # rmdir refuses a folder the run has written into
            try:
                folder.rmdir()
            except OSError:
                break

    def __enter__(self) -> WorkdirLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def _lock_or_refuse(fd: int, workdir: Path) -> None:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            raise
        raise LockError(
            f"workdir {workdir} is in use by another run ({_holder(fd)}); wait for it to "
            "finish or stop it, then rerun the same command to resume, or use another --workdir"
        ) from None


def _same_file(fd: int, path: Path) -> bool:
    try:
        on_disk = os.stat(path)
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (mine.st_dev, mine.st_ino) == (on_disk.st_dev, on_disk.st_ino)


def _write_holder(fd: int) -> None:
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode(), 0)


def _holder(fd: int) -> str:
    """``pid N on HOST`` from the lock file; the holder writes it just after locking, so an
    empty file is given a moment to fill before the refusal says the pid is unknown."""
    for _ in range(20):
        text = os.pread(fd, 200, 0).decode(errors="replace").strip()
        if text:
            return text
        time.sleep(0.025)
    return "pid unknown"
