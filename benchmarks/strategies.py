"""``python -m benchmarks strategies``: time and peak memory of each selection kernel.

Cases: CORESET k-center, BADGE k-means++, ALPS-like k-means (128-dim vectors; the
kernel's default restarts, at most ``iters`` Lloyd iterations each), BALD top-k and
BatchBALD, on synthetic pools of N = 20k and 200k rows
(d = 768 features, C = 5 and 53 classes, k = 100 and 2,000 picks).

Each case runs in a fresh subprocess so its peak RSS is its own: the child
makes its inputs (in place, no large temporaries), records
``ru_maxrss`` as the baseline, runs the selection once (host → device copy,
compilation and the run; wall-clock seconds) and reports ``ru_maxrss − baseline``
as the peak extra memory. The materialised BADGE embedding at
N = 200k, C = 53, d = 768 would need ``N·C·d·4`` bytes = 33 GB; the factored
kernel must stay under 4 GB.

The child starts the JAX runtime before taking the baseline, so the figure is
the kernel's own memory: device copies of the inputs, compilation, buffers.

Two cases compare with the claims of the paper's peers: BatchBALD against baal's
``BatchBALD`` heuristic (baal 2.x, PyTorch + NumPy) on the same MC probabilities (N = 5k,
C = 5, 20 MC samples, k = 100; ``--baal-n`` to shrink N), each in its own child, with
the agreement of their picks; and BADGE at NYT-10's shape (N = 200k, C = 53, d = 768,
k = 500). Both samplers estimate the joint entropy: batl_jax's exactly while ``C^n``
fits ``max_configs`` (the first 6 picks at C = 5), then from 1,000 sampled
configurations; baal from 500 configurations drawn from the batch so far at every step
after the first (its default ``num_draw``). Both start from BALD's top row.

Options: ``--quick`` (N = 20k, k = 100 only), ``--smoke`` (tiny, seconds, for CI;
all cases share one child, so only its first memory figure is clean),
``--probe`` (only a small case, N = 500, k = 7, that shows whether the two part ways
by their sampling: batl_jax at two keys and with 20x its samples, baal at two torch seeds
and with 16x its draws; about 15 minutes, baal's 8,000 draws most of it),
``--json PATH`` (write the results), ``--devices N`` (fake CPU devices per child,
default 1), ``--only SUBSTR`` (cases whose name contains it), ``--timeout S``
(per case).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import time

import numpy as np

from benchmarks import inputs, machine, measure, report
from benchmarks.machine import INSTALL_HINT

K_MC = 20  # MC-dropout passes for BALD / BatchBALD
ALPS_DIM = 128
BATCHBALD_K = 10  # BatchBALD's greedy batch is small: 6 exact steps at C=5, then sampled
# The baal comparison (docs/benchmarks.md): its sizes, and NYT-10's BADGE shape.
BAAL_CASE = dict(n=5000, c=5, k=100, mc=K_MC)
NYT10_BADGE = dict(kernel="badge", n=200_000, d=768, c=53, k=500)
BAAL_DRAWS = 500  # baal's own ``num_draw`` default: the comparison runs baal as shipped


def baal_cases(n: int) -> list[dict]:
    """batl_jax's BatchBALD and baal's on the same MC probabilities (one child each)."""
    case = {**BAAL_CASE, "n": n}
    return [dict(kernel="batchbald", **case), dict(kernel="baal_batchbald", **case)]


# Why the two part ways: at C = 5 batl_jax's first 6 picks are exact, so a small case with
# k = 7 shows whether baal, given more draws, converges to them (``--probe``).
PROBE_CASE = dict(n=500, c=5, k=7, mc=K_MC)


def probe_cases() -> list[dict]:
    """batl_jax at two keys and 20x its samples; baal at two torch seeds and 16x its draws."""
    ours = [dict(kernel="batchbald", **PROBE_CASE, seed=s) for s in (0, 1)]
    ours.append(dict(kernel="batchbald", **PROBE_CASE, seed=0, samples=20_000))
    baal = [dict(kernel="baal_batchbald", **PROBE_CASE, seed=s) for s in (0, 1)]
    baal.append(dict(kernel="baal_batchbald", **PROBE_CASE, seed=0, draws=8000))
    return ours + baal


def _cases(quick: bool, smoke: bool, baal_n: int = BAAL_CASE["n"]) -> list[dict]:
    if smoke:
        n, d, k = 500, 32, 5
        return [
            dict(kernel="kcenter", n=n, d=d, k=k, labeled=50),
            dict(kernel="badge", n=n, d=d, c=5, k=k),
            dict(kernel="kmeans", n=n, d=16, k=k, iters=3),
            dict(kernel="bald", n=n, c=5, k=k, mc=4),
            dict(kernel="batchbald", n=n, c=3, k=4, mc=4),
            dict(kernel="baal_batchbald", n=n, c=3, k=4, mc=4),
        ]
    sizes = [20_000] if quick else [20_000, 200_000]
    ks = [100] if quick else [100, 2000]
    cases = []
    for n in sizes:
        cases += [dict(kernel="kcenter", n=n, d=768, k=k, labeled=1000) for k in ks]
        cases += [dict(kernel="badge", n=n, d=768, c=c, k=k) for c in (5, 53) for k in ks]
        cases += [dict(kernel="kmeans", n=n, d=ALPS_DIM, k=k, iters=10) for k in ks]
        cases += [dict(kernel="bald", n=n, c=c, k=ks[-1], mc=K_MC) for c in (5, 53)]
        cases.append(dict(kernel="batchbald", n=n, c=5, k=BATCHBALD_K, mc=K_MC))
    if not quick:
        cases += baal_cases(baal_n) + [NYT10_BADGE]
    return cases


def _baal_batchbald(mc: np.ndarray, k: int, seed: int, draws: int) -> np.ndarray:
    """baal's BatchBALD picks (torch seeded; ``draws`` = its ``num_draw``),
    BALD's top row first (baal's first pick), then the rest in baal's ranking (by score,
    not in pick order)."""
    import torch
    from baal.active.heuristics import BALD, BatchBALD

    torch.manual_seed(seed)
    # baal wants [N, C, iterations]; its loop adds one row per step after BALD's top row.
    pred = np.ascontiguousarray(mc.transpose(1, 2, 0))
    ranks = np.asarray(BatchBALD(num_samples=k - 1, num_draw=draws)(pred)[:k])
    first = int(np.argmax(BALD().compute_score(pred)))
    return np.concatenate([[first], ranks[ranks != first]])[:k]


def _name(case: dict) -> str:
    keys = ("n", "d", "c", "mc", "k", "labeled", "iters", "seed", "samples", "draws")
    keys = [k for k in keys if k in case]
    return case["kernel"] + " " + " ".join(f"{k}={case[k]}" for k in keys)


# --------------------------------------------------------------------------------------
# Child: one case.
# --------------------------------------------------------------------------------------
def _run_case(case: dict) -> dict:
    import jax

    from batl_jax import sharding
    from batl_jax.kernels import batchbald, kcenter, kmeans

    rng = np.random.default_rng(0)
    n, k, kind = case["n"], case["k"], case["kernel"]
    mesh = sharding.make_mesh()
    key = jax.random.key(case.get("seed", 0))
    cand = np.ones(n, bool)
    if kind in ("kcenter", "badge", "kmeans"):
        x = rng.standard_normal((n, case["d"]), dtype=np.float32)
    if kind == "badge":
        probs = inputs.softmax_inplace(rng.standard_normal((n, case["c"]), dtype=np.float32) * 3)
    if kind in ("bald", "batchbald", "baal_batchbald"):
        mc = rng.standard_normal((case["mc"], n, case["c"]), dtype=np.float32)
        mc *= 2
        mc = inputs.softmax_inplace(mc)
    if kind == "kcenter":
        labeled = np.zeros(n, bool)
        labeled[rng.choice(n, case["labeled"], replace=False)] = True
        cand = ~labeled

    def select():
        if kind == "kcenter":
            return kcenter.kcenter_greedy(x, labeled, cand, k, mesh=mesh)[0]
        if kind == "badge":
            return kmeans.badge_kmeans_pp(probs, x, cand, k, key=key, mesh=mesh)
        if kind == "kmeans":
            return kmeans.kmeans_select(x, cand, k, key=key, max_iter=case["iters"], mesh=mesh)
        if kind == "bald":
            return batchbald.bald_select(mc, cand, k)[0]
        if kind == "baal_batchbald":
            return _baal_batchbald(mc, k, case.get("seed", 0), case.get("draws", BAAL_DRAWS))
        samples = case.get("samples", batchbald.DEFAULT_NUM_SAMPLES)
        return batchbald.batchbald_select(mc, cand, k, key=key, mesh=mesh, num_samples=samples)[0]

    # Start the runtime first so its fixed start-up memory is not charged to the kernel.
    jax.numpy.zeros(8).block_until_ready()
    base = measure.maxrss_bytes()
    t0 = time.perf_counter()
    picks = select()
    seconds = time.perf_counter() - t0
    peak = measure.maxrss_bytes()
    assert len(np.unique(picks)) == k
    return dict(
        picks=np.asarray(picks).tolist() if kind.endswith("batchbald") else None,
        seconds=seconds,
        peak_extra_mb=(peak - base) / measure.MB,
        baseline_mb=base / measure.MB,
        device=machine.device_name(),
    )


# --------------------------------------------------------------------------------------
# Parent: dispatch, table.
# --------------------------------------------------------------------------------------
def _child_env(devices: int) -> dict:
    env = measure.child_env()
    flags = env.get("XLA_FLAGS", "").split()
    flags = [f for f in flags if not f.startswith("--xla_force_host_platform_device_count")]
    if devices > 1:
        flags.append(f"--xla_force_host_platform_device_count={devices}")
    env["XLA_FLAGS"] = " ".join(flags)
    env.setdefault("JAX_PLATFORMS", "cpu")
    return env


def _spawn(cases: list[dict], devices: int, timeout: float) -> list[dict]:
    """Run ``cases`` in one fresh child; one result dict per case (errors included)."""
    cmd = measure.module_command("benchmarks.strategies", "--case", json.dumps(cases))
    try:
        proc = subprocess.run(
            cmd, env=_child_env(devices), capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        return [dict(error=f"capped: over {timeout:.0f} s")] * len(cases)
    results = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or len(results) != len(cases):
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["?"]
        results += [dict(error=f"failed: {tail[0][:80]}")] * (len(cases) - len(results))
    return results


def _header(info: dict) -> list[str]:
    return [
        f"jax {info['versions']['jax']}, device {info['device']}, "
        f"{info['cores']['cpu_count']} cores",
        report.cpu_line(info["cpu"]),
        "seconds: one run incl. host->device copy and compilation; "
        "peak extra MB: ru_maxrss after - after making inputs",
    ]


def _table(rows: list[dict]) -> str:
    lines = [f"{'case':<44} {'seconds':>9} {'peak extra MB':>14}  note"]
    for r in rows:
        if "error" in r:
            lines.append(f"{r['name']:<44} {'-':>9} {'-':>14}  {r['error']}")
            continue
        note = r.get("note", "")
        lines.append(f"{r['name']:<44} {r['seconds']:>9.2f} {r['peak_extra_mb']:>14.0f}  {note}")
    return "\n".join(lines)


def _parse(argv):
    ap = argparse.ArgumentParser(prog="python -m benchmarks strategies", description=__doc__)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--json", metavar="PATH")
    ap.add_argument("--devices", type=int, default=1)
    ap.add_argument("--only", default="")
    ap.add_argument("--timeout", type=float, default=None)
    ap.add_argument(
        "--baal-n", type=int, default=BAAL_CASE["n"], help="pool rows of the baal comparison"
    )
    ap.add_argument(
        "--probe",
        action="store_true",
        help="only the small case that shows why batl_jax's and baal's picks differ",
    )
    ap.add_argument("--case", help=argparse.SUPPRESS)
    return ap.parse_args(argv)


def _measure(args) -> tuple[dict | None, list[dict]]:
    """Every case in fresh children; the machine's facts, with the children's device."""
    timeout = args.timeout or (300.0 if args.smoke else 1800.0)
    cases = probe_cases() if args.probe else _cases(args.quick, args.smoke, args.baal_n)
    cases = [c for c in cases if args.only in _name(c)]
    if importlib.util.find_spec("baal") is None:
        cases = [c for c in cases if c["kernel"] != "baal_batchbald"]
        print(f"NOTE: baal is not installed; its BatchBALD rows are skipped. {INSTALL_HINT}")
    # --smoke runs every case in one child (one jax start-up; its memory figures
    # after the first case are not clean); otherwise one fresh child per case.
    batches = [cases] if args.smoke else [[c] for c in cases]
    info, rows = None, []
    for batch in batches:
        for case, result in zip(batch, _spawn(batch, args.devices, timeout), strict=True):
            if info is None:
                # The children run the kernels: this process never starts JAX.
                info = machine.env_info(device=result.get("device", "?"))
                print("\n".join(_header(info)), flush=True)
            row = dict(name=_name(case), case=case, **result)
            if case["kernel"] == "badge" and "peak_extra_mb" in row:
                dense_gb = case["n"] * case["c"] * case["d"] * 4 / 1e9
                row["note"] = f"dense g would be {dense_gb:.1f} GB"
            rows.append(row)
            print(_table([row]).splitlines()[1], flush=True)
    _agreement(rows)
    return info, rows


def _agreement(rows: list[dict]) -> None:
    """baal's row notes its time and memory against batl_jax's on the same case, and how
    many picks the two share (sets: baal returns its picks ranked by score, not in order)."""
    key = lambda r: _name({**r["case"], "kernel": ""})
    ours = {key(r): r for r in rows if r["case"]["kernel"] == "batchbald"}
    for r in rows:
        if r["case"]["kernel"] != "baal_batchbald" or "error" in r:
            continue
        o = ours.get(key(r))
        if o is None or "error" in o:
            continue
        common = len(set(o["picks"]) & set(r["picks"]))
        r["agreement"] = dict(
            common=common,
            first_pick_equal=o["picks"][0] == r["picks"][0],
            speedup_of_batl_jax=r["seconds"] / o["seconds"],
            memory_ratio=r["peak_extra_mb"] / max(o["peak_extra_mb"], 1e-9),
        )
        first = "equal" if r["agreement"]["first_pick_equal"] else "differs"
        r["note"] = (
            f"{r['seconds'] / o['seconds']:.0f}x batl_jax's time; picks in common "
            f"{common}/{r['case']['k']}, first pick {first}"
        )


def probe_table(rows: list[dict]) -> str:
    """Each probe run's picks (as a sorted set) and how many it shares with every other."""
    rows = [r for r in rows if "error" not in r and r.get("picks")]
    sets = [set(r["picks"]) for r in rows]
    lines = ["picks in common (sets of k):"]
    for r, a in zip(rows, sets, strict=True):
        common = " ".join(f"{len(a & b):2d}" for b in sets)
        lines.append(f"{r['name']:<58} {common}   {sorted(a)}")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    args = _parse(argv)
    if args.case:  # child mode: one JSON line per case
        for case in json.loads(args.case):
            print(json.dumps(_run_case(case)), flush=True)
        return 0
    info, rows = _measure(args)
    print("\n" + _table(rows))
    if args.probe:
        print("\n" + probe_table(rows))
    header = _header(info) if info else None
    report.write_json(args.json, dict(env=info, header=header, rows=rows))
    return 0 if all("error" not in r for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
