"""Finished (or partial) runs as data: runs, variants, studies and their statistics.

One model feeds both the tables (:mod:`batl_jax.report`) and the figures
(:mod:`batl_jax.plots`). A *run* is a folder holding ``config.json`` and
``metrics.jsonl``. Runs of one dataset form a *study*. Inside a study, runs whose configs
are equal apart from the seed (and settings that never change results: device count,
cache and data paths, the analysis switches) are the seeds of one *variant*; a variant is
named by its strategy plus whatever config values set it apart from the other variants
(e.g. ``batl (λ=0.5)``). A strategy's own config section (``batl.*`` for BATL, ...) is
ignored for every other strategy, so changing λ never splits RAND's runs.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from batl_jax import run_files
from batl_jax.errors import DataError

log = logging.getLogger(__name__)

ANALYSIS_KEYS = ("diversity", "uncertainty", "density")
# The paper's strategy order (tables and legends); unknown names follow alphabetically.
ORDER = ("rand", "conf", "entropy", "dal", "bald", "batchbald", "coreset", "badge", "alps", "batl")

PRIMARY_METRIC = {"classification": "accuracy", "relation": "micro_f1"}
# Settings that never tell variants apart (the strategy does; it is the label itself).
IGNORED_KEYS = frozenset({"seed", "name"}) | run_files.RESUMABLE_KEYS
SHORT_NAMES = {
    "batl.lambda_": "λ",
    "batl.triplet_grad": "triplet_grad",
    "batl.batch_mode": "batch_mode",
}
PAPER_LAMBDA = 1.0  # the representative of a λ sweep in the strategy comparison
# Paired comparisons are made against these variants, when a study has them.
PAIRED_REFERENCES = ("rand", "batl")


@dataclasses.dataclass
class Run:
    path: Path
    config: dict  # flattened "section.key" -> value
    rows: list[dict]  # metrics.jsonl: rounds 0, 1, 2, ... in order

    @property
    def strategy(self) -> str:
        return str(self.config.get("al.strategy", "?"))

    @property
    def seed(self):
        return self.config.get("seed")


@dataclasses.dataclass
class Variant:
    label: str
    strategy: str
    params: dict  # the config values that name it
    runs: list[Run]


@dataclasses.dataclass
class Study:
    title: str
    task: str
    metric: str
    variants: list[Variant]

    def lambda_family(self) -> list[Variant]:
        """BATL variants that differ only in ``batl.lambda_`` (≥ 2 of them), by λ."""
        fams: dict[str, list[Variant]] = {}
        for v in self.variants:
            if v.strategy == "batl" and "batl.lambda_" in v.params:
                rest = {k: x for k, x in v.params.items() if k != "batl.lambda_"}
                fams.setdefault(json.dumps(rest, sort_keys=True, default=str), []).append(v)
        best = max(fams.values(), key=len, default=[])
        return sorted(best, key=lambda v: float(v.params["batl.lambda_"])) if len(best) > 1 else []

    def comparison(self) -> list[Variant]:
        """Variants for the strategy comparison: a λ sweep is represented by λ = 1 only."""
        fam = self.lambda_family()
        if not fam:
            return list(self.variants)
        lams = [float(v.params["batl.lambda_"]) for v in fam]
        keep = fam[lams.index(PAPER_LAMBDA)] if PAPER_LAMBDA in lams else fam[0]
        return [v for v in self.variants if v not in fam or v is keep]

    def test_metrics(self) -> list[str]:
        """The test metrics present in the study's rows, the primary one first."""
        keys = {
            k for v in self.variants for run in v.runs for r in run.rows for k in r.get("test", {})
        }
        return [self.metric] + sorted(keys - {self.metric})


# ----------------------------------------------------------------------------- loading
def find_runs(paths: Iterable) -> list[Path]:
    """Every folder under ``paths`` (themselves included) holding config.json + metrics.jsonl."""
    found = set()
    for p in map(Path, paths):
        if not p.is_dir():
            raise DataError(f"{p} is not a directory; give run folders or a folder holding them")
        for root, dirs, files in os.walk(p):
            dirs[:] = sorted(d for d in dirs if d != "checkpoints")  # Orbax trees are large
            if "config.json" in files and "metrics.jsonl" in files:
                found.add(Path(root))
    return sorted(found)


def load_run(path: Path) -> Run:
    """The run in ``path``; :class:`DataError` for a config or metrics file that a report
    would misread (rounds twice or out of order, a row without its numbers)."""
    path = Path(path)
    cfg_path = path / "config.json"
    metrics = path / "metrics.jsonl"
    try:
        config = json.loads(cfg_path.read_bytes().decode("utf-8"))
        rows = run_files.JsonlLog(metrics).rows()
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataError(f"{cfg_path} is not valid JSON; restore it or leave its run out") from e
    except OSError as e:
        raise DataError(
            f"cannot read {e.filename or path} ({e.strerror or e}); check its permissions"
        ) from e
    if not isinstance(config, dict):
        raise DataError(f"{cfg_path} is not a config object; restore it or leave its run out")
    problem = run_files.round_order_problem(rows)
    if problem is None:
        problem = next(filter(None, (_row_problem(i, r) for i, r in enumerate(rows))), None)
    if problem:
        raise DataError(
            f"{metrics}: {problem}; rerun that run in a new folder, or leave it out of the report"
        )
    return Run(path, run_files.flatten(config), rows)


def _number(x) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


def _row_problem(i: int, row: dict) -> str | None:
    """What keeps a metrics row out of the statistics, or None."""
    if not _number(row.get("labeled")):
        return f"line {i + 1} has no finite 'labeled' count"
    for section in ("test", "analysis", "time"):
        values = row.get(section, {})
        if not isinstance(values, dict):
            return f"line {i + 1}: {section!r} is not an object"
        # Times are summed; a metric may be None (undefined for that round), never NaN.
        may_be_none = section != "time"
        bad = [k for k, x in values.items() if not (_number(x) or (x is None and may_be_none))]
        if bad:
            return f"line {i + 1}: {section}.{bad[0]} is not a finite number"
    return None


def _relevant(config: dict, own_sections: Mapping[str, str]) -> dict:
    own = own_sections.get(str(config.get("al.strategy")))
    other = set(own_sections.values()) - {own}
    return {
        k: v for k, v in config.items() if k not in IGNORED_KEYS and k.split(".")[0] not in other
    }


def _order(strategy: str):
    return (ORDER.index(strategy), "") if strategy in ORDER else (len(ORDER), strategy)


def _variants(
    members: list[Run], own_sections: Mapping[str, str], defaults: Mapping[str, Any]
) -> list[Variant]:
    """The study's runs grouped by config but seed, named by what sets them apart (a
    setting at its package default is left out of the name; λ is always named)."""
    by_cfg: dict[str, list[Run]] = {}
    for run in members:
        cfg_key = json.dumps(_relevant(run.config, own_sections), sort_keys=True, default=str)
        by_cfg.setdefault(cfg_key, []).append(run)
    configs = [json.loads(k) for k in by_cfg]
    values: dict[str, set] = {}
    for cfg in configs:
        for k, v in cfg.items():
            values.setdefault(k, set()).add(json.dumps(v, default=str))
    variants = []
    for cfg, group_runs in zip(configs, by_cfg.values(), strict=True):
        strategy = group_runs[0].strategy
        params = {k: v for k, v in cfg.items() if len(values[k]) > 1 and k != "al.strategy"}
        named = {
            k: v
            for k, v in params.items()
            if k == "batl.lambda_" or k not in defaults or defaults[k] != v
        }
        label = strategy
        if named:
            label += " (" + ", ".join(f"{SHORT_NAMES.get(k, k)}={v}" for k, v in named.items())
            label += ")"
        group_runs.sort(key=lambda r: (str(type(r.seed)), r.seed))
        _check_seeds(label, group_runs)
        variants.append(Variant(label, strategy, params, group_runs))
    variants.sort(
        key=lambda v: (
            _order(v.strategy),
            v.label != v.strategy,  # the strategy at its defaults leads its own variants
            json.dumps(v.params, sort_keys=True),
        )
    )
    return variants


def _check_seeds(label: str, runs: list[Run]) -> None:
    """Two folders of one variant and seed are one experiment counted twice (std 0)."""
    for a, b in zip(runs, runs[1:], strict=False):
        if a.seed == b.seed:
            raise DataError(
                f"{label} has seed {a.seed!r} twice ({a.path} and {b.path}); "
                "leave one of them out of the report"
            )


def group(
    runs: list[Run], own_sections: Mapping[str, str], defaults: Mapping[str, Any] | None = None
) -> list[Study]:
    """Split runs into studies (one per dataset) and variants (one per config but seed).

    ``own_sections`` maps a strategy to the config section only it reads (``batl`` →
    ``batl``): those settings are ignored for every other strategy. ``defaults`` (flattened
    package defaults) keeps settings at their default out of the variants' names.
    """
    studies: dict[tuple, list[Run]] = {}
    for run in runs:
        if not run.rows:
            log.warning("%s has no finished round yet: left out", run.path)
            continue
        c = run.config
        # A frozen encoder and full fine-tuning are two regimes, not two variants of one:
        # their curves start from different models, so nothing is paired across them.
        key = (c.get("data.name"), c.get("data.hub_id"), c.get("data.hub_config"))
        studies.setdefault((*key, c.get("train.mode")), []).append(run)
    modes: dict[tuple, set] = {}
    for key in studies:
        modes.setdefault(key[:-1], set()).add(key[-1])
    out = []
    for key, members in studies.items():
        task = str(members[0].config.get("task.name", "classification"))
        metric = PRIMARY_METRIC.get(task) or next(iter(members[0].rows[0].get("test", {})), "")
        title = " / ".join(str(k) for k in key[:-1] if k)
        if len(modes[key[:-1]]) > 1:  # one dataset in both regimes: say which is which
            title += f", train.mode={key[-1]}"
        variants = _variants(members, own_sections, defaults or {})
        out.append(Study(title or "runs", task, metric, variants))
    return sorted(out, key=lambda s: s.title)


# ----------------------------------------------------------------------------- statistics
def mean_std(values) -> tuple[float, float, int]:
    """Mean, sample std (ddof=1; 0 for one value) and count of the finite values."""
    v = np.asarray([x for x in values if x is not None and np.isfinite(x)], np.float64)
    if v.size == 0:
        return float("nan"), float("nan"), 0
    return float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else 0.0, int(v.size)


def value(row: dict, quantity: str):
    """``test.accuracy`` / ``analysis.density`` / ``labeled`` of a metrics row (None if absent)."""
    cur: Any = row
    for part in quantity.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return None
        cur = cur[part]
    return None if cur is None else float(cur)


def per_round(variant: Variant, quantity: str) -> list[dict]:
    """For each round: labeled size, mean, std and n of ``quantity`` over the seeds."""
    rounds = sorted({r["round"] for run in variant.runs for r in run.rows})
    out = []
    for rnd in rounds:
        rows = [r for run in variant.runs for r in run.rows if r["round"] == rnd]
        m, s, n = mean_std(value(r, quantity) for r in rows)
        if n:
            labeled = float(np.mean([r["labeled"] for r in rows]))
            out.append({"round": rnd, "labeled": labeled, "mean": m, "std": s, "n": n})
    return out


def curve_area(run: Run, metric: str) -> float | None:
    """Normalised area under the learning curve: trapezoid of the test ``metric`` over the
    labeled size, divided by the labeled range (the curve's mean height; one round: its
    value)."""
    pts = [(r["labeled"], value(r, f"test.{metric}")) for r in run.rows]
    pts = [(x, y) for x, y in pts if y is not None]
    if not pts:
        return None
    xs, ys = np.asarray(pts, np.float64).T
    if len(xs) == 1 or xs[-1] == xs[0]:
        return float(ys.mean())
    return float(np.trapezoid(ys, xs) / (xs[-1] - xs[0]))


def summary(variant: Variant, metric: str) -> dict[str, tuple[float, float, int]]:
    """Per-variant scalars, each (mean, std, n) over the seeds."""
    runs = variant.runs
    out = {
        f"auc.{metric}": mean_std(curve_area(r, metric) for r in runs),
        f"final.{metric}": mean_std(value(r.rows[-1], f"test.{metric}") for r in runs),
        "final.labeled": mean_std(r.rows[-1]["labeled"] for r in runs),
        "rounds": mean_std(len(r.rows) for r in runs),
        "time_s": mean_std(sum(sum(r.get("time", {}).values()) for r in run.rows) for run in runs),
    }
    for key in ANALYSIS_KEYS:
        per_run = []
        for run in runs:
            m, _, n = mean_std(value(r, f"analysis.{key}") for r in run.rows)
            per_run.append(m if n else None)
        out[f"mean_over_rounds.analysis.{key}"] = mean_std(per_run)
        out[f"first.analysis.{key}"] = mean_std(
            value(run.rows[0], f"analysis.{key}") for run in runs
        )
    return out


def paired_auc(study: Study, reference: Variant, metric: str) -> dict[str, dict]:
    """Each other variant's AUC minus ``reference``'s, paired by seed.

    Under one seed every strategy starts from the same labeled rows (and the same pool),
    so the per-seed difference removes the spread that the starting set puts into both
    curves. Returns label → {"strategy": its strategy, "diff": (mean, std, n),
    "better": seeds with a higher AUC}.
    """
    ref = {run.seed: curve_area(run, metric) for run in reference.runs}
    out = {}
    for v in study.variants:
        if v is reference:
            continue
        diffs = []
        for run in v.runs:
            a, b = curve_area(run, metric), ref.get(run.seed)
            if a is not None and b is not None:
                diffs.append(a - b)
        if diffs:
            out[v.label] = {
                "strategy": v.strategy,
                "diff": mean_std(diffs),
                "better": sum(d > 0 for d in diffs),
                "p": signed_rank_p(diffs),
                "ci": bootstrap_ci(diffs),
            }
    return out


def signed_rank_p(diffs) -> float:
    """Two-sided exact p-value of Wilcoxon's signed-rank test that the paired differences
    are symmetric about 0.

    Zeros are dropped (Wilcoxon's own convention, scipy's default ``zero_method``); tied
    magnitudes share their average rank. The null distribution is enumerated over every
    sign assignment, so the p-value is exact with ties too (scipy falls back to a normal
    approximation there). Enumeration is 2^n: studies have tens of seeds at most, and
    beyond 20 nonzero differences this uses the normal approximation instead.
    """
    d = np.asarray([x for x in diffs if x is not None and math.isfinite(x)], dtype=np.float64)
    d = d[d != 0]
    n = d.size
    if n == 0:
        return 1.0
    ranks = _average_ranks(np.abs(d))
    observed = float(ranks[d > 0].sum())
    total = float(ranks.sum())
    # Two-sided: as extreme as the observed W+ on either side of its mean total / 2.
    dev = abs(observed - total / 2)
    if n > 20:
        var = float((ranks**2).sum()) / 4
        z = dev / math.sqrt(var) if var > 0 else 0.0
        return float(min(1.0, math.erfc(z / math.sqrt(2))))
    signs = (np.arange(2**n)[:, None] >> np.arange(n)[None, :]) & 1
    w_plus = signs @ ranks
    # Ranks are multiples of 1/2: compare with a tolerance well below that.
    extreme = np.abs(w_plus - total / 2) >= dev - 1e-9
    return float(extreme.mean())


def _average_ranks(x: np.ndarray) -> np.ndarray:
    order = np.argsort(x, kind="stable")
    ranks = np.empty(x.size, dtype=np.float64)
    ranks[order] = np.arange(1, x.size + 1)
    for value in np.unique(x):
        tied = x == value
        ranks[tied] = ranks[tied].mean()
    return ranks


def bootstrap_ci(diffs, level: float = 0.95, draws: int = 10_000, seed: int = 0):
    """Percentile bootstrap confidence interval of the mean paired difference (seeds drawn
    with replacement; a fixed seed, so a report is reproducible). ``(lo, hi)``."""
    d = np.asarray([x for x in diffs if x is not None and math.isfinite(x)], dtype=np.float64)
    if d.size == 0:
        return (math.nan, math.nan)
    rng = np.random.default_rng(seed)
    means = d[rng.integers(0, d.size, size=(draws, d.size))].mean(axis=1)
    tail = (1 - level) / 2
    lo, hi = np.quantile(means, [tail, 1 - tail])
    return (float(lo), float(hi))


def paired_references(study: Study, defaults: Mapping[str, Any] | None = None) -> list[Variant]:
    """The variants of :data:`PAIRED_REFERENCES` in the study's comparison: the strategy's
    only variant, or among several (BATL beside its control and its batch-aware form) the
    one whose distinguishing settings all equal ``defaults`` (flattened package defaults;
    a λ sweep's representative counts as at its defaults)."""
    defaults = defaults or {}
    out = []
    for name in PAIRED_REFERENCES:
        found = [v for v in study.comparison() if v.strategy == name]
        if len(found) > 1:
            found = [
                v
                for v in found
                if all(
                    k == "batl.lambda_" or (k in defaults and defaults[k] == x)
                    for k, x in v.params.items()
                )
            ]
        if len(found) == 1:
            out.append(found[0])
    return out
