"""``python -m benchmarks mining``: BATL triplet mining, global vs minibatch.

Prints, in one run, for synthetic seeded features (E = 512, 5 classes):

* the dense matmul FLOP rate of this device (``jnp.dot``, median), at the
  square shape ``4096 × 512 × 4096`` and at the mining kernel's block shape;
* for each N in ``--sizes``: seconds (median of ``--reps`` after a warm-up run)
  and peak extra memory of ``global`` and ``minibatch`` mining, and the FLOP
  rate of global mining as a fraction of the dense rate (the faster shape,
  re-measured right before and after each timed run, since on a shared
  machine the load drifts over minutes). FLOPs counted: global
  ``4·N²·E`` (two passes of ``N × N × E`` multiply-adds; the elementwise work
  and the overlap of a clamped last tile are not counted); minibatch
  ``2·N·chunk·E``;
* for ``N = --slice-n`` (500k): ``--slice`` anchors mined against the full
  pool, its peak extra memory and the projected full time ``t · N / slice``.

Each case runs in a fresh subprocess, so its peak memory is its own: host
``ru_maxrss`` minus the resident size right after the inputs were created (and
the backend started), plus, on accelerators, the device's ``peak_bytes_in_use``.
``--smoke`` runs tiny sizes in-process (seconds; CI).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

import numpy as np

from benchmarks import inputs, machine, measure, report

DENSE_SHAPE = (4096, 512, 4096)


class Dense:
    """Jitted float32 ``jnp.dot`` at fixed ``(m, k, n)`` shapes, inputs built and compiled once."""

    def __init__(self, shapes):
        import jax
        import jax.numpy as jnp

        f = jax.jit(lambda a, b: jnp.dot(a, b, precision="highest"))
        self.cases = []
        for m, k, n in shapes:
            a = jax.random.normal(jax.random.key(0), (m, k), jnp.float32)
            b = jax.random.normal(jax.random.key(1), (k, n), jnp.float32)
            call = lambda a=a, b=b: f(a, b).block_until_ready()
            call()
            self.cases.append((f"{m}x{k}x{n}", 2.0 * m * k * n, call))

    def rates(self, reps: int) -> dict[str, float]:
        """Median GFLOP/s of each shape over ``reps`` calls."""
        return {
            name: flops / float(np.median(measure.timed(call, reps))) / 1e9
            for name, flops, call in self.cases
        }

    def best(self, reps: int = 3) -> float | None:
        return max(self.rates(reps).values()) if self.cases else None


def run_case(spec: dict) -> dict:
    """Run one benchmark case in this process and return its figures."""
    from batl_jax import sharding
    from batl_jax.kernels import triplet

    mesh = sharding.make_mesh()
    kind, reps = spec["kind"], spec["reps"]
    if kind == "dense":
        return {"kind": kind, "gflops": Dense(spec["shapes"]).rates(reps)}

    # The dense reference runs next to every timed run (its inputs exist before the
    # memory baseline): on a shared machine the load drifts over minutes, so each
    # run's fraction is taken against the dense rate measured around it.
    dense = Dense(spec.get("dense_shapes", []))
    n, e = spec["n"], spec["dim"]
    x, y = inputs.make_features(n, e, spec["classes"])
    base_host, base_dev = measure.rss_bytes(), measure.device_bytes("bytes_in_use")
    if kind == "global":
        fn = lambda: triplet.mine_global(x, y, mesh=mesh)
        flops, anchors = 4.0 * n * n * e, n
    elif kind == "slice":
        rows = np.arange(spec["anchors"])
        fn = lambda: triplet.mine_global(x, y, mesh=mesh, anchor_rows=rows)
        flops, anchors = 4.0 * spec["anchors"] * n * e, spec["anchors"]
    elif kind == "minibatch":
        chunk = min(triplet.DEFAULT_CHUNK, n)
        fn = lambda: triplet.mine_minibatch(x, y, mesh=mesh, chunk_size=chunk, seed=0)
        flops, anchors = 2.0 * n * chunk * e, n
    else:
        raise ValueError(f"unknown case kind {kind!r}")
    fn()  # warm-up
    times, around = [], []
    for _ in range(reps):
        before = dense.best()
        times.append(measure.once(fn))
        after = dense.best()
        if before is not None:
            around.append((before + after) / 2)
    t = float(np.median(times))
    fractions = [flops / s / 1e9 / d for s, d in zip(times, around, strict=False)]
    return {
        "kind": kind,
        "n": n,
        "dim": e,
        "anchors": anchors,
        "reps": reps,
        "seconds": t,
        "times": times,
        "gflops": flops / t / 1e9,
        "flops": flops,
        "peak_host_mb": max(0, measure.maxrss_bytes() - base_host) / measure.MB,
        "peak_device_mb": max(0, measure.device_bytes("peak_bytes_in_use") - base_dev) / measure.MB,
        "projected_full_s": t * n / anchors,
        "dense_gflops_around": around,
        "fraction_of_dense": float(np.median(fractions)) if fractions else None,
    }


def _run_isolated(spec: dict) -> dict:
    """:func:`run_case` in a fresh interpreter (its own peak memory), same environment."""
    cmd = measure.module_command("benchmarks.mining", "--case", json.dumps(spec))
    proc = subprocess.run(cmd, env=measure.child_env(), capture_output=True, text=True)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode or not lines:
        raise RuntimeError(f"case {spec} failed:\n{proc.stdout}\n{proc.stderr}")
    return json.loads(lines[-1][len("RESULT ") :])


def _parse(argv):
    p = argparse.ArgumentParser(prog="python -m benchmarks mining", description=__doc__)
    p.add_argument("--sizes", default="20000,100000", help="pool sizes N, comma-separated")
    p.add_argument("--dim", type=int, default=512, help="feature width E")
    p.add_argument("--classes", type=int, default=5)
    p.add_argument("--reps", type=int, default=3, help="timed runs per case (median)")
    p.add_argument("--big-reps", type=int, default=None, help="timed runs for N >= 100k")
    p.add_argument("--slice-n", type=int, default=500_000, help="pool size of the slice run")
    p.add_argument("--slice", type=int, default=16_384, help="anchors of the slice run (0: skip)")
    p.add_argument("--quick", action="store_true", help="smaller sizes (about a minute)")
    p.add_argument("--smoke", action="store_true", help="tiny sizes, in-process (seconds)")
    p.add_argument("--json", help="also write every figure to this JSON file")
    p.add_argument("--case", help=argparse.SUPPRESS)  # internal: one case, in a subprocess
    args = p.parse_args(argv)
    if args.quick:
        args.sizes, args.slice_n, args.slice = "5000,20000", 100_000, 4096
    if args.smoke:
        args.sizes, args.dim, args.slice_n, args.slice, args.reps = "1500", 64, 4000, 512, 1
    return args


def _table(rows: list[dict]) -> str:
    head = f"{'case':<10}{'N':>9}{'anchors':>9}{'reps':>5}{'median s':>11}"
    head += f"{'GFLOP/s':>10}{'dense':>8}{'% dense':>9}{'peak MB':>10}{'full s (proj.)':>16}"
    lines = [head, "-" * len(head)]
    for r in rows:
        peak = r["peak_host_mb"] + r["peak_device_mb"]
        frac, around = r.get("fraction_of_dense"), r.get("dense_gflops_around")
        pct = f"{100 * frac:.0f}%" if frac is not None else "-"
        ref = f"{np.median(around):.0f}" if around else "-"
        proj = f"{r['projected_full_s']:.1f}" if r["kind"] == "slice" else "-"
        lines.append(
            f"{r['kind']:<10}{r['n']:>9}{r['anchors']:>9}{r['reps']:>5}{r['seconds']:>11.3f}"
            f"{r['gflops']:>10.1f}{ref:>8}{pct:>9}{peak:>10.0f}{proj:>16}"
        )
    return "\n".join(lines)


def _measure(args) -> tuple[dict, list[dict]]:
    """The dense matmul rates, then every mining case; each case isolated unless --smoke."""
    from batl_jax.kernels import triplet

    run = run_case if args.smoke else _run_isolated
    tile = (triplet.DEFAULT_ANCHOR_TILE, args.dim, triplet.DEFAULT_POOL_TILE)
    shapes = [(256, 64, 256)] if args.smoke else [DENSE_SHAPE, tile]
    print(f"tiles: anchors {tile[0]} x pool {tile[2]}; FLOPs: global 4*N^2*E, slice 4*A*N*E")
    dense = run({"kind": "dense", "shapes": shapes, "reps": max(args.reps, 5)})["gflops"]
    for shape, rate in dense.items():
        print(f"dense jnp.dot {shape}: {rate:.1f} GFLOP/s (median)")
    rows = []
    for n in inputs.parse_ints(args.sizes):
        reps = args.big_reps if args.big_reps and n >= 100_000 else args.reps
        for kind in ("global", "minibatch"):
            spec = {"kind": kind, "n": n, "dim": args.dim, "classes": args.classes, "reps": reps}
            spec["dense_shapes"] = shapes if kind == "global" else []
            rows.append(run(spec))
            print(f"  done {kind} N={n}: {rows[-1]['seconds']:.2f} s", flush=True)
    if args.slice:
        reps = args.big_reps or args.reps
        spec = {"kind": "slice", "n": args.slice_n, "anchors": args.slice, "dim": args.dim}
        rows.append(run({**spec, "classes": args.classes, "reps": reps, "dense_shapes": shapes}))
    return dense, rows


def _print_targets(rows: list[dict]) -> None:
    for r in rows:
        if r["kind"] == "global" and r["n"] >= 100_000:
            ok = r["fraction_of_dense"] >= 0.5
            print(f"target global >= 50% dense at N={r['n']}: {'PASS' if ok else 'FAIL'}")
        if r["kind"] == "slice" and r["n"] >= 500_000:
            peak = r["peak_host_mb"] + r["peak_device_mb"]
            print(f"target slice extra memory < 2 GB: {'PASS' if peak < 2048 else 'FAIL'}")


def main(argv: list[str]) -> int:
    args = _parse(argv)
    if args.case:
        print("RESULT " + json.dumps(run_case(json.loads(args.case))), flush=True)
        return 0
    info = machine.env_info()
    report.print_header(info)
    dense, rows = _measure(args)
    print()
    print(_table(rows))
    print(
        "(dense: GFLOP/s of the faster dense shape, measured right before and after each timed"
        " run; % dense: median over runs of the run's rate / its dense rate)"
    )
    _print_targets(rows)
    report.write_json(args.json, {"env": info, "dense_gflops": dense, "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
