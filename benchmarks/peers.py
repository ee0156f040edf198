"""``python -m benchmarks peers``: k-center and BADGE vs small-text and scikit-activeml.

Each library runs its own selection on the same seeded features (class-structured
float32 ``x`` of width ``--dim`` from :func:`benchmarks.inputs.make_features`;
BADGE also gets the same class probabilities, softmax of seeded logits), the same
labeled rows and the same budget ``k``:

* k-center (CORESET), Euclidean, greedy from the labeled set:
  ``kernels.kcenter.kcenter_greedy`` / small-text ``GreedyCoreset(distance_metric=
  'euclidean', normalize=False)`` / scikit-activeml ``CoreSet`` (euclidean);
* BADGE (k-means++ seeding on the gradient embedding ``(p - onehot(argmax p)) ⊗ h``):
  ``kernels.kmeans.badge_kmeans_pp`` (never forms the embedding) / small-text's
  ``BADGE`` (forms it in float64; 1.4.1 lacks the ``1 - p`` term on the predicted class,
  and uses scikit-learn's greedy k-means++ with an unseeded RandomState) /
  scikit-activeml ``Badge`` (forms it; the correct embedding).

Times: one warm-up call per side (batl_jax: at the timed shape, i.e. compilation; the
NumPy peers: on a 10 % subset, as they compile nothing), then ``--reps`` interleaved
calls; medians, and each peer's ratio to batl_jax. Peak memory: the largest resident
memory above the level at the call's start, sampled every 2 ms in a thread, over the
timed calls. Agreement: k-center is deterministic in all three (ties aside), so the
picks are compared in order; BADGE samples, so only its deterministic first pick
(largest gradient norm; small-text's first pick is random) is compared, and each
side's picks are scored on the correct gradient embedding: the k-means potential
(sum over unlabeled rows of the squared distance to the nearest pick; lower covers
the pool better) and the mean gradient norm of the picks (BADGE's uncertainty).
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from benchmarks import inputs, machine, measure, report


def _parse(argv):
    p = argparse.ArgumentParser(
        prog="python -m benchmarks peers",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--n", type=int, default=20_000, help="pool rows")
    p.add_argument("--dim", type=int, default=768, help="feature width")
    p.add_argument("--labeled", type=int, default=1000)
    p.add_argument("--k", type=int, default=100)
    p.add_argument("--classes", default="4,53", help="BADGE class counts C, comma-separated")
    p.add_argument(
        "--badge-n-large-c",
        type=int,
        default=10_000,
        help="pool rows for BADGE at C > 10 (the peers' dense float64 embedding is "
        "N*C*d*8 bytes, twice)",
    )
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--only", default="", help="kcenter or badge")
    p.add_argument("--quick", action="store_true", help="N = 4,000, labeled 200, k = 50, C = 4")
    p.add_argument("--smoke", action="store_true", help="tiny sizes (CI)")
    p.add_argument("--json", help="write every figure to this JSON file")
    args = p.parse_args(argv)
    if args.quick:
        args.n, args.labeled, args.k, args.classes = 4000, 200, 50, "4"
    if args.smoke:
        args.n, args.dim, args.labeled, args.k, args.classes = 300, 32, 30, 5, "4"
    return args


# ----------------------------------------------------------------------------- inputs


def make_case(n: int, dim: int, labeled: int, classes: int, seed: int = 0):
    x, y = inputs.make_features(n, dim, classes, seed)
    rng = np.random.default_rng(seed + 1)
    lab = np.sort(rng.choice(n, labeled, replace=False))
    unl = np.setdiff1d(np.arange(n), lab)
    # Probabilities that follow the class structure, with varied confidence.
    logits = rng.standard_normal((n, classes), dtype=np.float32)
    logits[np.arange(n), y] += rng.uniform(0.0, 4.0, n).astype(np.float32)
    z = logits - logits.max(1, keepdims=True)
    p = np.exp(z)
    p /= p.sum(1, keepdims=True)
    return {"x": x, "y": y, "labeled": lab, "unlabeled": unl, "probs": p.astype(np.float32)}


def _masks(n, lab, unl):
    lm = np.zeros(n, bool)
    lm[lab] = True
    um = np.zeros(n, bool)
    um[unl] = True
    return lm, um


# ----------------------------------------------------------------------------- implementations


def kcenter_impls(case, mesh) -> dict:
    from batl_jax.kernels.kcenter import kcenter_greedy

    x, lab, unl = case["x"], case["labeled"], case["unlabeled"]
    n, k = len(x), case["k"]
    lm, um = _masks(n, lab, unl)
    impls = {"batl_jax": lambda: kcenter_greedy(x, lm, um, k, mesh=mesh)[0]}
    if machine.peer("small_text") is not None:
        from small_text.query_strategies.coresets import GreedyCoreset

        # GreedyCoreset.sample works on [unlabeled; labeled] with positional indices
        # (how its query() calls it); the reordering is done once, outside the timing.
        xs = np.concatenate([x[unl], x[lab]])
        iu, il = np.arange(len(unl)), np.arange(len(unl), n)
        q = GreedyCoreset(distance_metric="euclidean", normalize=False)
        impls["small-text"] = lambda: unl[q.sample(None, None, iu, il, None, k, xs)]
    if machine.peer("skactiveml") is not None:
        from skactiveml.pool import CoreSet

        y = np.full(n, np.nan)
        y[lab] = case["y"][lab]
        qs = CoreSet(metric="euclidean", random_state=0)
        impls["scikit-activeml"] = lambda: np.asarray(qs.query(X=x, y=y, batch_size=k))
    return impls


def _fixed_classifier(probs, hidden, classes):
    """A scikit-activeml classifier whose predict_proba returns given (probs, embeddings)
    for rows identified by X[:, 0] (so Badge runs on exactly our features)."""
    from skactiveml.base import SkactivemlClassifier

    class Fixed(SkactivemlClassifier):
        def __init__(self, classes=None, missing_label=np.nan, random_state=None):
            super().__init__(
                classes=classes, missing_label=missing_label, random_state=random_state
            )

        def fit(self, X, y, sample_weight=None):
            return self

        def predict_proba(self, X, return_embeddings=False):
            rows = np.asarray(X)[:, 0].astype(np.int64)
            return probs[rows], hidden[rows]

    return Fixed(classes=np.arange(classes))


def badge_impls(case, mesh) -> dict:
    import jax

    from batl_jax.kernels.kmeans import badge_kmeans_pp

    x, p, lab, unl = case["x"], case["probs"], case["labeled"], case["unlabeled"]
    n, k, c = len(x), case["k"], p.shape[1]
    _, um = _masks(n, lab, unl)
    key = jax.random.key(0)
    impls = {"batl_jax": lambda: badge_kmeans_pp(p, x, um, k, key=key, mesh=mesh)}
    if machine.peer("small_text") is not None:
        from small_text.integrations.pytorch.query_strategies import BADGE

        xs, ps = np.concatenate([x[unl], x[lab]]), np.concatenate([p[unl], p[lab]])
        iu, il = np.arange(len(unl)), np.arange(len(unl), n)
        q = BADGE(num_classes=c)
        impls["small-text"] = lambda: unl[
            q.sample(None, None, iu, il, None, k, xs, embeddings_proba=ps)
        ]
    if machine.peer("skactiveml") is not None:
        from skactiveml.pool import Badge

        clf = _fixed_classifier(p, x, c)
        X = np.arange(n, dtype=np.float64)[:, None]
        y = np.full(n, np.nan)
        y[lab] = case["y"][lab]
        qs = Badge(random_state=0)
        impls["scikit-activeml"] = lambda: np.asarray(
            qs.query(X=X, y=y, clf=clf, fit_clf=False, batch_size=k)
        )
    return impls


def subset_case(case, frac: float = 0.1) -> dict:
    """A smaller case of the same kind (the peers' warm-up)."""
    n = len(case["x"])
    m = max(int(n * frac), 4 * case["k"])
    rows = np.arange(min(m, n))
    lab = case["labeled"][case["labeled"] < len(rows)]
    unl = np.setdiff1d(rows, lab)
    return {
        "x": case["x"][rows],
        "y": case["y"][rows],
        "probs": case["probs"][rows],
        "labeled": lab,
        "unlabeled": unl,
        "k": case["k"],
    }


# ----------------------------------------------------------------------------- quality


def badge_scores(case, picks) -> dict:
    """k-means potential and mean gradient norm of ``picks`` on the correct embedding."""
    p, h, unl = case["probs"].astype(np.float64), case["x"].astype(np.float64), case["unlabeled"]
    a = p.copy()
    a[np.arange(len(a)), a.argmax(1)] -= 1.0
    n2 = (a * a).sum(1) * (h * h).sum(1)
    picks = np.asarray(picks)
    best = np.full(len(unl), np.inf)
    for s in range(0, len(unl), 4096):
        r = unl[s : s + 4096]
        d2 = n2[r][:, None] + n2[picks][None, :] - 2 * (a[r] @ a[picks].T) * (h[r] @ h[picks].T)
        best[s : s + len(r)] = np.maximum(d2, 0).min(1)
    return {"potential": float(best.sum()), "mean_grad_norm": float(np.sqrt(n2[picks]).mean())}


def agreement(ref, other) -> dict:
    ref, other = list(map(int, ref)), list(map(int, other))
    first_diff = next((i for i, (a, b) in enumerate(zip(ref, other, strict=True)) if a != b), None)
    return {
        "same_order": ref == other,
        "common": len(set(ref) & set(other)),
        "first_divergence": first_diff,
        "first_pick_same": ref[0] == other[0],
    }


# ----------------------------------------------------------------------------- suite


def run_case(kind: str, case: dict, reps: int, mesh) -> dict:
    build = kcenter_impls if kind == "kcenter" else badge_impls
    with report.quiet_logs():  # e.g. GreedyCoreset's note on its default metric
        impls = build(case, mesh)
        warm_impls = build(subset_case(case), mesh) if len(impls) > 1 else {}
    warmup = {name: fn for name, fn in warm_impls.items() if name != "batl_jax"}
    peaks = {name: 0.0 for name in impls}

    def measured(name, fn):
        def call():
            with measure.PeakRSS() as m:
                out = fn()
            peaks[name] = max(peaks[name], m.peak_mb)
            return out

        return call

    fns = {name: measured(name, fn) for name, fn in impls.items()}
    with report.quiet_logs():
        times, warm_s, last = measure.interleaved(
            fns,
            reps,
            warmup=warmup,
            on_rep=lambda name, r, t: print(f"  rep {r + 1} {kind} {name}: {t:.2f} s", flush=True),
        )
    t_jax = measure.median(times["batl_jax"])
    rows = []
    for name in impls:
        picks = np.asarray(last[name])
        assert len(np.unique(picks)) == case["k"] and np.isin(picks, case["unlabeled"]).all(), name
        row = {
            "impl": name,
            "seconds": measure.median(times[name]),
            "times": times[name],
            "warmup_s": warm_s[name],
            "peak_mb": peaks[name],
            "speedup_of_batl_jax": report.ratio(measure.median(times[name]), t_jax),
            "picks": picks.tolist(),
        }
        if name != "batl_jax":
            row["agreement"] = agreement(last["batl_jax"], picks)
        if kind == "badge":
            row.update(badge_scores(case, picks))
        rows.append(row)
    return {"kind": kind, "rows": rows}


def _case_label(kind, case):
    n, d, k = case["x"].shape[0], case["x"].shape[1], case["k"]
    extra = f"L={len(case['labeled'])}" if kind == "kcenter" else f"C={case['probs'].shape[1]}"
    return f"{kind} N={n} d={d} {extra} k={k}"


def _agreement_text(kind: str, ag: dict | None, k: int) -> str:
    if ag is None:
        return "(reference)"
    if kind == "kcenter":
        if ag["same_order"]:
            return "same order"
        return f"{ag['common']}/{k} common, 1st diff @{ag['first_divergence']}"
    return f"first pick {'same' if ag['first_pick_same'] else 'differs'}"


def _table_rows(kind: str, label: str, rows: list[dict], k: int) -> list[list[str]]:
    """One case's lines of the printed table."""
    out = []
    for r in rows:
        quality = f"{r['potential']:.4g} / {r['mean_grad_norm']:.3g}" if kind == "badge" else ""
        out.append(
            [
                label if r["impl"] == "batl_jax" else "",
                r["impl"],
                report.fmt(r["seconds"]),
                report.fmt(r["speedup_of_batl_jax"]) + "x",
                report.fmt(r["peak_mb"], ".0f"),
                _agreement_text(kind, r.get("agreement"), k),
                quality,
            ]
        )
    return out


def _specs(args) -> list[tuple[str, int, int]]:
    """``(kind, pool rows, classes)`` of every case asked for."""
    specs = []
    if args.only in ("", "kcenter"):
        specs.append(("kcenter", args.n, 2))
    if args.only in ("", "badge"):
        for c in inputs.parse_ints(args.classes):
            n = args.n if c <= 10 else min(args.n, args.badge_n_large_c)
            specs.append(("badge", n, c))
    return specs


def run(args) -> dict:
    from batl_jax import sharding

    info = machine.env_info()
    report.print_header(info)
    print(
        f"peers: selection on the same seeded features; {args.reps} interleaved reps after "
        "a warm-up, medians; peak = resident memory above the call's start (2 ms sampling)"
    )
    if args.quick:
        print(
            "(--quick: N = 4,000, labeled 200, k = 50, C = 4; the full run: N = 20k, "
            "labeled 1,000, k = 100, C = 4 and 53)"
        )
    mesh = sharding.make_mesh()
    cases, table_rows = [], []
    for kind, n, c in _specs(args):
        case = make_case(n, args.dim, min(args.labeled, n // 4), c)
        case["k"] = args.k
        label = _case_label(kind, case)
        print(f"{label} ...", flush=True)
        res = run_case(kind, case, args.reps, mesh)
        res["case"] = label
        cases.append(res)
        table_rows += _table_rows(kind, label, res["rows"], args.k)
    headers = ["case", "impl", "median s", "batl_jax speedup", "peak MB"]
    headers += ["agreement with batl_jax", "BADGE potential / mean |g|"]
    print()
    print(report.table(headers, table_rows, align="llrrrll"))
    print(
        "speedup = peer median s / batl_jax median s. BADGE: lower potential = picks cover "
        "the pool better; higher mean |g| = more uncertain picks (both on the correct "
        "embedding). small-text 1.4.1's BADGE misses the 1 - p term on the predicted class."
    )
    return {"suite": "peers", "env": info, "settings": vars(args), "cases": cases}


def ratios(result: dict) -> list[tuple[str, float]]:
    out = []
    for c in result["cases"]:
        for r in c["rows"]:
            if r["impl"] != "batl_jax":
                out.append(
                    (
                        f"peers: batl_jax speedup vs {r['impl']}, {c['case']}",
                        r["speedup_of_batl_jax"],
                    )
                )
    return out


def main(argv: list[str]) -> int:
    return report.run_suite(argv, _parse, run)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
