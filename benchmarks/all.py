"""``python -m benchmarks all [--quick] [--smoke]``: every suite, then every ratio.

Runs ``encoder``, ``round``, ``peers`` (this package's side-by-side suites) and the
``mining`` and ``strategies`` suites, each in its own interpreter (so its memory
figures are its own) with the same ``--quick`` / ``--smoke`` flag, each writing its
JSON; then prints one summary of every ratio and writes one combined JSON (``--json``).
A suite that fails is reported and the
others still run (exit status 1). A missing peer library is a printed note, never a
failure.

GPU section: when ``jax.devices()`` shows a GPU (and not ``--no-gpu``), the same
``encoder`` and ``round`` suites run again at BERT-base size (random weights of the
bert-base-uncased shape; the PyTorch / small-text rows run on CUDA when torch has it,
else they are skipped with a note), and ``mining`` runs on a 500k pool (``--quick``:
16k anchors against the 500k pool, projected; full: exact global mining at N = 100k
and 500k).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import subprocess
import sys
import tempfile
import time

from benchmarks import machine, measure, report

CPU_SUITES = ["encoder", "round", "peers", "mining", "strategies"]


def _parse(argv):
    p = argparse.ArgumentParser(
        prog="python -m benchmarks all",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--quick", action="store_true", help="every suite's --quick")
    p.add_argument("--smoke", action="store_true", help="every suite's --smoke (CI)")
    p.add_argument("--only", default="", help="comma-separated suites to run (default: all)")
    p.add_argument("--skip", default="", help="comma-separated suites to leave out")
    p.add_argument("--no-gpu", action="store_true", help="leave out the GPU section")
    p.add_argument("--json", help="write the combined results to this JSON file")
    p.add_argument("--keep", help="also keep each suite's JSON in this folder")
    return p.parse_args(argv)


def _flags(args) -> list[str]:
    return (["--quick"] if args.quick else []) + (["--smoke"] if args.smoke else [])


def _gpu_plan(args) -> list[tuple[str, str, list[str]]]:
    """(label, suite, argv) of the GPU section."""
    model = [] if args.smoke else ["--model", "bert-base"]  # smoke: the tiny model
    plan = [
        ("gpu encoder (BERT-base)", "encoder", model + _flags(args)),
        ("gpu round (BERT-base)", "round", model + _flags(args)),
    ]
    # mining's own --quick would replace these sizes, so it gets explicit ones instead.
    if args.smoke:
        mining = ["--smoke"]
    elif args.quick:
        mining = ["--sizes", "100000", "--slice-n", "500000", "--slice", "16384"]
    else:
        mining = ["--sizes", "100000,500000", "--slice", "0"]
    plan.append(("gpu mining (500k pool)", "mining", mining))
    return plan


def _run_suite(
    suite: str, argv: list[str], out_dir: str, env: dict
) -> tuple[dict | None, str | None, float]:
    """One suite in a fresh interpreter (its memory figures and compile caches are its own;
    a crash is reported, not fatal); its output streams through."""
    path = os.path.join(out_dir, f"{suite}_{len(os.listdir(out_dir))}.json")
    cmd = measure.module_command("benchmarks", suite, *argv, "--json", path)
    sys.stdout.flush()
    t = time.perf_counter()
    rc = subprocess.run(cmd, env=env).returncode
    wall = time.perf_counter() - t
    result = None
    if os.path.exists(path):
        with open(path) as f:
            result = json.load(f)
    return result, (f"exit status {rc}" if rc else None), wall


def suite_ratios(suite: str, result: dict) -> list[tuple[str, float | None]]:
    """Every ratio of a suite's JSON, named."""
    if suite in ("encoder", "round", "peers"):
        module = importlib.import_module(f"benchmarks.{suite}")
        return module.ratios(result)
    out = []
    if suite == "mining":
        for r in result.get("rows", []):
            dense = r.get("dense_gflops_window") or max(result.get("dense_gflops", {0: 0}).values())
            if r["kind"] != "minibatch" and dense:
                out.append(
                    (
                        f"mining: {r['kind']} N={r['n']} GFLOP/s / dense matmul GFLOP/s",
                        r["gflops"] / dense,
                    )
                )
        g = {r["n"]: r["seconds"] for r in result.get("rows", []) if r["kind"] == "global"}
        for r in result.get("rows", []):
            if r["kind"] == "minibatch" and r["n"] in g:
                out.append(
                    (f"mining: global / minibatch time, N={r['n']}", g[r["n"]] / r["seconds"])
                )
    if suite == "strategies":
        for r in result.get("rows", []):
            c = r.get("case", {})
            if c.get("kernel") == "badge" and r.get("peak_extra_mb"):
                dense_mb = c["n"] * c["c"] * c["d"] * 4 / measure.MB
                out.append(
                    (
                        "strategies: dense BADGE embedding / kernel peak extra memory, "
                        + r["name"],
                        dense_mb / max(r["peak_extra_mb"], 1.0),
                    )
                )
    return out


def _plan(args) -> list[tuple[str, str, list[str]]] | None:
    """(label, suite, argv) of every run, the GPU section's included; None for a bad name."""
    only = [s for s in args.only.split(",") if s] or CPU_SUITES
    skip = {s for s in args.skip.split(",") if s}
    unknown = (set(only) | skip) - set(CPU_SUITES)
    if unknown:
        print(f"unknown suite(s) {sorted(unknown)}; choose from {CPU_SUITES}", file=sys.stderr)
        return None
    plan = [(s, s, _flags(args)) for s in only if s not in skip]
    if not machine.has_gpu():
        print("GPU section: skipped (jax.devices() shows no GPU)")
    elif not args.no_gpu:
        plan += [p for p in _gpu_plan(args) if p[1] in only and p[1] not in skip]
    return plan


def _run_plan(plan, out_dir: str, env: dict) -> tuple[dict, dict, dict, list]:
    """Every planned suite in turn: results, errors, wall times and named ratios."""
    results, errors, walls, ratios = {}, {}, {}, []
    for label, suite, sargv in plan:
        bar = "=" * 100
        print(f"\n{bar}\n== {label}: python -m benchmarks {suite} {' '.join(sargv)}\n{bar}")
        result, err, wall = _run_suite(suite, sargv, out_dir, env)
        walls[label] = wall
        if err:
            errors[label] = err
            print(f"!! {label} failed: {err}")
        if result is not None:
            results[label] = result
            try:
                ratios += [
                    (f"[{label}] {name}" if label != suite else name, v)
                    for name, v in suite_ratios(suite, result)
                ]
            except Exception as e:  # a suite's JSON changed shape: report, keep going
                errors[label] = f"ratios: {type(e).__name__}: {e}"
        print(f"== {label}: {wall:.0f} s", flush=True)
    return results, errors, walls, ratios


def _print_summary(args, ratios, walls, errors, total: float) -> None:
    size = "quick" if args.quick else "smoke" if args.smoke else "full"
    print(f"\n{'=' * 100}\nSummary: every ratio ({size} sizes)")
    print(report.table(["ratio", "value"], [[n, report.fmt(v, ".2f")] for n, v in ratios]))
    print("(batl_jax speedup = other side's median seconds / batl_jax's; > 1: batl_jax faster)")
    print(
        "wall time: "
        + ", ".join(f"{k} {v:.0f} s" for k, v in walls.items())
        + f"; total {total:.0f} s"
    )
    for label, err in errors.items():
        print(f"FAILED: {label}: {err}")


def main(argv: list[str]) -> int:
    machine.setup_environment()
    args = _parse(argv)
    t0 = time.perf_counter()
    # The suites run in children with this environment. This process only asks JAX what
    # the devices are: on a GPU it must not preallocate the memory the children need.
    env = measure.child_env()
    os.environ["XLA_PYTHON_CLIENT_PREALLOCATE"] = "false"
    info = machine.env_info()
    command = "python -m benchmarks all " + " ".join(argv)
    print(f"$ {command}".rstrip())
    report.print_header(info)
    plan = _plan(args)
    if plan is None:
        return 2
    out_dir = args.keep or tempfile.mkdtemp(prefix="batl_bench_all_")
    os.makedirs(out_dir, exist_ok=True)
    results, errors, walls, ratios = _run_plan(plan, out_dir, env)
    total = time.perf_counter() - t0
    _print_summary(args, ratios, walls, errors, total)
    payload = {
        "command": command,
        "env": info,
        "suites": results,
        "ratios": ratios,
        "wall_s": walls,
        "total_s": total,
        "errors": errors,
        "gpu_section": any(label != suite for label, suite, _ in plan),
    }
    report.write_json(args.json, payload)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
