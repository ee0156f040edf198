"""How a figure is measured: repetitions, medians, and memory.

Rules every side-by-side figure follows (``docs/benchmarks.md``, "How a figure is
made"): both sides run in the same process on the same inputs, each after a warm-up
run, then ``reps >= 3`` timed repetitions interleaved (A, B, A, B, ...) so that load
drift on a shared machine hits both sides alike; the median is reported. Memory is
either sampled in a thread (both sides of one comparison alike) or taken from a fresh
interpreter's peak resident size (one case per child, so the peak is its own).
"""

from __future__ import annotations

import os
import resource
import statistics
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

MB = 2**20
# The repository root: children run ``python -m benchmarks...`` from here.
REPO_ROOT = Path(__file__).resolve().parents[1]


def median(xs) -> float:
    """The median of ``xs``, NaN for none."""
    return float(statistics.median(xs)) if xs else float("nan")


def once(fn: Callable[[], object]) -> float:
    """Seconds one call of ``fn`` takes."""
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def timed(fn: Callable[[], object], reps: int) -> list[float]:
    """One warm-up call (compilation, first transfers), then ``reps`` timed calls."""
    fn()
    return [once(fn) for _ in range(reps)]


def interleaved(
    fns: dict[str, Callable[[], object]],
    reps: int,
    *,
    warmup: dict[str, Callable[[], object]] | None = None,
    on_rep: Callable[[str, int, float], None] | None = None,
) -> tuple[dict[str, list[float]], dict[str, float], dict[str, object]]:
    """Warm each side once, then time ``reps`` rounds of A, B, ... in turn.

    ``warmup[name]`` replaces the warm-up call of side ``name`` (default: the timed call
    itself). Returns per-side times, warm-up seconds and each side's last result.
    """
    warm_s, last = {}, {}
    for name, fn in fns.items():
        warm_s[name] = once((warmup or {}).get(name, fn))
    times: dict[str, list[float]] = {n: [] for n in fns}
    for r in range(reps):
        for name, fn in fns.items():
            t = time.perf_counter()
            last[name] = fn()
            times[name].append(time.perf_counter() - t)
            if on_rep:
                on_rep(name, r, times[name][-1])
    return times, warm_s, last


# ----------------------------------------------------------------------------- memory


def maxrss_bytes() -> int:
    """This process's peak resident size so far."""
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r if sys.platform == "darwin" else r * 1024  # bytes on macOS, KiB on Linux


def rss_bytes() -> int:
    """This process's current resident size (Linux /proc; the peak elsewhere)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return maxrss_bytes()


def device_bytes(key: str) -> int:
    """A memory statistic of the first JAX device (0 where the backend keeps none)."""
    import jax

    stats = jax.devices()[0].memory_stats() or {}
    return int(stats.get(key, 0))


class PeakRSS:
    """Peak resident memory above the level at entry, sampled every ``interval`` s.

    In-process and thread-based, so two sides of one comparison are measured the same
    way; allocations shorter than the interval can be missed.
    """

    def __init__(self, interval: float = 0.002):
        self.interval = interval
        self.peak_mb = 0.0

    def __enter__(self):
        self._base = rss_bytes()
        self._peak = self._base
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()
        return self

    def _poll(self):
        while not self._stop.is_set():
            self._peak = max(self._peak, rss_bytes())
            time.sleep(self.interval)

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self._peak = max(self._peak, rss_bytes())
        self.peak_mb = (self._peak - self._base) / MB
        return False


# ----------------------------------------------------------------------------- children


def child_env(env: dict | None = None) -> dict:
    """The environment of a child interpreter: this one's, with the repository root on
    ``PYTHONPATH`` so ``python -m benchmarks...`` resolves wherever the child starts."""
    env = dict(os.environ if env is None else env)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    return env


def module_command(module: str, *argv: str) -> list[str]:
    """``python -m MODULE ARGV...`` with this interpreter."""
    return [sys.executable, "-m", module, *argv]
