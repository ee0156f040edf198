"""What a suite prints and writes: its header, plain tables, ratios and its JSON.

Every suite prints the machine it ran on (device, CPU model and matrix units, cores,
load, versions) above its tables and writes the same facts, every repetition's time
and its settings to ``--json PATH``; a suite's ``main`` is :func:`run_suite`.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks import machine


def fmt(x, spec: str = ".2f") -> str:
    """``x`` formatted with ``spec``; ``-`` for a missing or non-finite figure."""
    if x is None or (isinstance(x, float) and not np.isfinite(x)):
        return "-"
    if isinstance(x, str):
        return x
    return format(x, spec)


def ratio(num, den) -> float | None:
    """``num / den``, None when either side is missing, zero or not finite."""
    if num is None or den is None or not den or not np.isfinite(num) or not np.isfinite(den):
        return None
    return float(num) / float(den)


def table(headers: list[str], rows: list[list], align: str | None = None) -> str:
    """A plain text table; ``align`` has one 'l' or 'r' per column (default: first left)."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    align = align or "l" + "r" * (len(headers) - 1)
    out = []
    for j, r in enumerate(cells):
        parts = [
            c.ljust(w) if a == "l" else c.rjust(w) for c, w, a in zip(r, widths, align, strict=True)
        ]
        out.append("  ".join(parts).rstrip())
        if j == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def cpu_line(cpu: dict) -> str:
    """``cpu: MODEL   matrix units: avx512f, amx_bf16`` (or ``none``)."""
    return f"cpu: {cpu['model']}   matrix units: {cpu['matrix_features']}"


def header_lines(info: dict) -> list[str]:
    """The lines above every suite's tables, from :func:`machine.env_info`."""
    v = {k: x for k, x in info["versions"].items() if x}
    lines = [
        f"device: {info['device']}   cores: {info['cores']['usable']} usable "
        f"of {info['cores']['cpu_count']}   load {fmt(info.get('loadavg_1m'), '.1f')}   "
        f"python {info['python']} {info['machine']}",
        cpu_line(info["cpu"]),
        "versions: " + ", ".join(f"{k} {x}" for k, x in v.items()),
    ]
    if "torch_threads" in info:
        lines.append(f"torch threads: {info['torch_threads']}")
    load = info.get("loadavg_1m")
    if load is not None and load > info["cores"]["usable"]:
        lines.append(
            f"WARNING: load average {load:.1f} > {info['cores']['usable']} cores: other processes "
            "compete for the CPU; ratios are noisier, and PyTorch's OpenMP threads suffer "
            "most from oversubscription (its rows look slower than on an idle machine)"
        )
    return lines


def print_header(info: dict) -> None:
    print("\n".join(header_lines(info)))


def write_json(path: str | None, payload: dict) -> None:
    """``payload`` as indented JSON at ``path`` (nothing when no path was asked for)."""
    if not path:
        return
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        json.dump(payload, f, indent=1, default=_json_default)


def _json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


@contextlib.contextmanager
def quiet_logs():
    """Silence transformers' and small-text's info and warnings inside the block (e.g.
    small-text's "kmeans_plusplus returned identical cluster centers")."""
    import logging
    import warnings

    names = ["transformers", "small_text", "absl"]
    old = {n: logging.getLogger(n).level for n in names}
    for n in names:
        logging.getLogger(n).setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for n, lvl in old.items():
            logging.getLogger(n).setLevel(lvl)


def finish(result: dict, t0: float) -> dict:
    """Wall time and the load at the end of a suite (the start's is in ``env``)."""
    result["wall_s"] = time.perf_counter() - t0
    if hasattr(os, "getloadavg"):
        result["loadavg_end_1m"] = os.getloadavg()[0]
    return result


def run_suite(argv: list[str], parse, run) -> int:
    """A suite's ``main``: parse, refuse fewer than 3 repetitions, run, write the JSON."""
    machine.setup_environment()
    args = parse(argv)
    if args.reps < 3 and not args.smoke:
        print("--reps must be >= 3 (medians of at least 3 runs)", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    result = finish(run(args), t0)
    write_json(args.json, result)
    return 0
