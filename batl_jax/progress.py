"""Progress of long phases: a tqdm bar on a terminal, log lines everywhere else.

tqdm draws nothing useful when stderr is a file or a pipe (a job log, ``nohup``, CI): a
30–40 s pool encoding is then silent. There :func:`progress` returns :class:`LogProgress`,
which logs ``desc: i/n (p%), eta m:ss`` at most every ``interval`` seconds and a last line
when the phase ends. A phase shorter than ``interval`` logs nothing, so the many short
passes of a round do not flood the log. Only the primary JAX process reports.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sized
from typing import Any

from tqdm.auto import tqdm

from batl_jax import run_files

log = logging.getLogger(__name__)

INTERVAL_S = 10.0


def _clock(seconds: float) -> str:
    m, s = divmod(int(round(seconds)), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class LogProgress:
    """The part of tqdm's interface batl_jax uses (iterate, ``update``, ``close``, context
    manager), reporting through :mod:`logging` instead of a bar."""

    def __init__(
        self,
        iterable: Iterable | None = None,
        *,
        total: int | None = None,
        desc: str = "",
        unit: str = "it",
        interval: float = INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
        logger: logging.Logger = log,
    ):
        if total is None and isinstance(iterable, Sized):
            total = len(iterable)
        self.iterable, self.total, self.desc, self.unit = iterable, total, desc, unit
        self.n = 0
        self._interval, self._clock, self._log = interval, clock, logger
        self._start = self._last = clock()
        self._logged_n: int | None = None  # count at the last line logged
        self._closed = False

    def __iter__(self) -> Iterator:
        if self.iterable is None:
            raise TypeError("LogProgress without an iterable: use update()")
        try:
            for item in self.iterable:
                yield item
                self.update(1)
        finally:
            self.close()

    def update(self, n: int = 1) -> None:
        self.n += n
        now = self._clock()
        if now - self._last >= self._interval:
            self._last = now
            self._logged_n = self.n
            self._log.info("%s", self.line(now))

    def line(self, now: float) -> str:
        elapsed = now - self._start
        if not self.total:
            return f"{self.desc}: {self.n} {self.unit}, {_clock(elapsed)} elapsed"
        pct = 100.0 * self.n / self.total
        text = f"{self.desc}: {self.n}/{self.total} {self.unit} ({pct:.0f}%)"
        if self.n >= self.total:
            return f"{text} in {_clock(elapsed)}"
        if self.n == 0:
            return f"{text}, {_clock(elapsed)} elapsed"
        eta = elapsed / self.n * (self.total - self.n)
        return f"{text}, eta {_clock(eta)}"

    def close(self) -> None:
        """Log the final count if the phase ran long enough to log any (and it is new)."""
        if self._closed:
            return
        self._closed = True
        if self._logged_n is not None and self._logged_n != self.n:
            self._log.info("%s", self.line(self._clock()))

    def __enter__(self) -> LogProgress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def progress(
    iterable: Iterable | None = None,
    *,
    total: int | None = None,
    desc: str = "",
    unit: str = "it",
    leave: bool = False,
    interval: float = INTERVAL_S,
) -> Any:
    """A tqdm bar when stderr is a terminal, else :class:`LogProgress`; silent (a disabled
    bar) on every process but the primary one."""
    if not run_files.is_primary():
        return tqdm(iterable, total=total, desc=desc, unit=unit, disable=True)
    if sys.stderr.isatty():
        return tqdm(iterable, total=total, desc=desc, unit=unit, leave=leave)
    return LogProgress(iterable, total=total, desc=desc, unit=unit, interval=interval)
