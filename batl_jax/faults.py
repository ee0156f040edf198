"""Test hook: SIGKILL the process at a named point, to test crash-exact resume.

Set ``BATL_KILL_AT=round<r>:<point>`` and the run kills itself (SIGKILL: no cleanup,
no flush, exactly like a preempted VM) when it reaches that point of round ``r``:

==============  ==============================================================
``train``       mid-training: the round's first optimizer step dispatched
``score``       after evaluation, before the pool feature pass
``select``      after the pool feature pass, inside selection
``log``         selected.jsonl written, metrics.jsonl's row torn half-way
``checkpoint``  inside the Orbax save: every file written, the commit rename not done
``saved``       right after the round's checkpoint committed
==============  ==============================================================

Unset (the normal case) every hook is one dictionary lookup. This module is not an
API: it exists for ``tests/test_crash_resume.py``.
"""

from __future__ import annotations

import contextlib
import os
import signal

ENV = "BATL_KILL_AT"


def armed(point: str) -> bool:
    """True when ``$BATL_KILL_AT`` names ``point``."""
    return bool(point) and os.environ.get(ENV, "") == point


def kill() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def kill_point(point: str, *, torn: tuple[os.PathLike, str] | None = None) -> None:
    """Kill the process here if ``point`` is armed.

    ``torn=(path, line)`` first appends the first half of ``line`` (no newline) to
    ``path``, as a kill in the middle of a write would leave it.
    """
    if not armed(point):
        return
    if torn is not None:
        path, line = torn
        with open(path, "a", encoding="utf-8") as f:
            f.write(line[: max(1, len(line) // 2)])
            f.flush()
            os.fsync(f.fileno())
    kill()


@contextlib.contextmanager
def kill_before_commit(point: str, directory: os.PathLike):
    """While active, kill the process when Orbax renames a temporary checkpoint folder in
    ``directory`` into place (``point`` armed): the checkpoint is fully written but not
    committed, the last instant of a save."""
    if not armed(point):
        yield
        return
    real_rename, real_replace = os.rename, os.replace
    prefix = os.fspath(directory)

    def guarded(real):
        def call(src, dst, *args, **kwargs):
            if os.fspath(src).startswith(prefix):
                kill()
            return real(src, dst, *args, **kwargs)

        return call

    os.rename, os.replace = guarded(real_rename), guarded(real_replace)
    try:
        yield
    finally:
        os.rename, os.replace = real_rename, real_replace
