"""Every figure: a study's learning curves (paper Figs. 2–4), analysis bars (Fig. 5) and
BATL λ sweep (Fig. 6), each taking a :class:`batl_jax.results.Study`, writing one PNG and
returning whether it had anything to draw; and one run's learning curve
(:func:`run_curve`, ``curves.png`` in the workdir, redrawn after every round).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from matplotlib.ticker import MaxNLocator

from batl_jax import run_files
from batl_jax.results import ANALYSIS_KEYS, Study, Variant, per_round, summary

# (panel title, y-axis label) per analysis metric.
ANALYSIS_AXES = {
    "diversity": ("Diversity (Eq. 7)", "1 / mean distance to batch (1/feature units)"),
    "uncertainty": ("Uncertainty (Eq. 8)", "mean reference entropy (nats)"),
    "density": ("Density (Eq. 9)", "mean cosine similarity to k nearest"),
}


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _colors(study: Study) -> dict[str, tuple]:
    """One colour per variant, the same in every figure of the study."""
    plt = _plt()
    cmap = plt.get_cmap("tab10" if len(study.variants) <= 10 else "tab20")
    return {v.label: cmap(i % cmap.N) for i, v in enumerate(study.variants)}


def _save(fig, path: Path, **savefig) -> None:
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp, **(savefig or {"dpi": 130, "bbox_inches": "tight"}))
    _plt().close(fig)
    os.replace(tmp, path)  # a reader never sees a half-written figure


def _band(ax, points, *, scale=1.0, x="labeled", **style):
    """A mean line with a shaded ±std band."""
    xs = np.asarray([p[x] for p in points], np.float64)
    m = np.asarray([p["mean"] for p in points]) * scale
    s = np.asarray([p["std"] for p in points]) * scale
    ax.plot(xs, m, marker="o", markersize=3, **style)
    ax.fill_between(xs, m - s, m + s, alpha=0.18, color=style.get("color"), linewidth=0)


def _seeds(v: Variant) -> str:
    return f"{v.label}, n={len(v.runs)}"


def learning_curves(study: Study, path: Path) -> bool:
    """Test primary metric (%) against labeled samples, one line per strategy, ±std bands."""
    variants = study.comparison()
    curves = [(v, per_round(v, f"test.{study.metric}")) for v in variants]
    curves = [(v, c) for v, c in curves if c]
    if not curves:
        return False
    plt, colors = _plt(), _colors(study)
    fig, ax = plt.subplots(figsize=(7.5, 4.8), layout="constrained")
    for v, points in curves:
        _band(ax, points, scale=100, color=colors[v.label], label=_seeds(v))
    majority = [
        r["test_majority_rate"]
        for v in variants
        for run in v.runs
        for r in run.rows[:1]
        if "test_majority_rate" in r
    ]
    if majority:
        ax.axhline(100 * np.mean(majority), color="grey", linestyle=":", label="majority class")
    ax.set_xlabel("labeled training samples (count)")
    ax.set_ylabel(f"test {study.metric} (%)")
    ax.set_title(f"{study.title}: learning curves (mean ± std over seeds)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    _save(fig, path)
    return True


def analysis_bars(study: Study, path: Path) -> bool:
    """Diversity, uncertainty and density of the first selected batch, one bar per strategy."""
    variants = study.comparison()
    stats = {v.label: summary(v, study.metric) for v in variants}
    if not any(stats[v.label][f"first.analysis.{k}"][2] for v in variants for k in ANALYSIS_KEYS):
        return False
    labeled = [run.rows[0]["labeled"] for v in variants for run in v.runs]
    plt, colors = _plt(), _colors(study)
    fig, axes = plt.subplots(1, 3, figsize=(14, 4.8), layout="constrained")
    xs = np.arange(len(variants))
    for ax, key in zip(axes, ANALYSIS_KEYS, strict=True):
        m = [stats[v.label][f"first.analysis.{key}"][0] for v in variants]
        s = [stats[v.label][f"first.analysis.{key}"][1] for v in variants]
        for i, v in enumerate(variants):
            ax.bar(xs[i], m[i], yerr=s[i], capsize=3, color=colors[v.label], label=_seeds(v))
        title, ylabel = ANALYSIS_AXES[key]
        ax.set_title(title)
        ax.set_ylabel(ylabel)
        ax.set_xticks(xs, [v.label for v in variants], rotation=45, ha="right", fontsize=8)
        ax.grid(axis="y", alpha=0.3)
        finite = [x for x in m if np.isfinite(x)]
        if key == "density" and finite:  # cosines crowd near 1: zoom in on the differences
            ends = [(x - e, x + e) for x, e in zip(m, s, strict=True) if np.isfinite(x)]
            lo, hi = min(e[0] for e in ends), max(e[1] for e in ends)
            pad = 0.1 * (hi - lo) + 1e-3
            ax.set_ylim(max(-1.0, lo - pad), min(1.0, hi + pad))
    axes[0].legend(fontsize=7, loc="lower left")
    fig.suptitle(
        f"{study.title}: analysis of the first selected batch "
        f"(after round 0, {int(np.mean(labeled))} labeled; mean ± std over seeds)"
    )
    _save(fig, path)
    return True


def lambda_sweep(study: Study, path: Path) -> bool:
    """BATL at several λ: test metric against labeled samples and the analysis metrics
    against the active-learning round (paper Fig. 6)."""
    family = study.lambda_family()
    if not family:
        return False
    plt = _plt()
    cmap = plt.get_cmap("viridis")
    fig, axes = plt.subplots(1, 4, figsize=(19, 4.6), layout="constrained")
    for i, v in enumerate(family):
        style = {
            "color": cmap(i / max(1, len(family) - 1) * 0.9),
            "label": f"λ = {v.params['batl.lambda_']:g}, n={len(v.runs)}",
        }
        _band(axes[0], per_round(v, f"test.{study.metric}"), scale=100, **style)
        for ax, key in zip(axes[1:], ANALYSIS_KEYS, strict=True):
            points = per_round(v, f"analysis.{key}")
            if points:
                _band(ax, points, x="round", **style)
    axes[0].set_xlabel("labeled training samples (count)")
    axes[0].set_ylabel(f"test {study.metric} (%)")
    axes[0].set_title("Learning curve")
    for ax, key in zip(axes[1:], ANALYSIS_KEYS, strict=True):
        title, ylabel = ANALYSIS_AXES[key]
        ax.set_title(title)
        ax.set_ylabel(ylabel)
        ax.set_xlabel("active-learning round (selection after training)")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    for ax in axes:
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"{study.title}: BATL scaling parameter λ (mean ± std over seeds)")
    _save(fig, path)
    return True


def run_curve(workdir: Path, rows: list[dict], metric: str, title: str) -> None:
    """One run's learning curve, the test ``metric`` against the labeled-set size, into
    ``workdir/curves.png`` (only on the process that writes the workdir's files)."""
    xs = [r["labeled"] for r in rows if metric in r.get("test", {})]
    ys = [r["test"][metric] for r in rows if metric in r.get("test", {})]
    if not xs or not run_files.is_primary():
        return
    fig, ax = _plt().subplots(figsize=(6, 4))
    ax.plot(xs, ys, marker="o")
    ax.set_xlabel("labeled samples")
    ax.set_ylabel(f"test {metric}")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    _save(fig, Path(workdir) / "curves.png", dpi=120)
