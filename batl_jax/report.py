"""Aggregate finished (or partial) runs into mean ± std tables and the paper's figures.

``python -m batl_jax.report RUN_DIR... [--out=DIR]`` searches each ``RUN_DIR``
recursively for run folders (a ``config.json`` next to a ``metrics.jsonl``), trains
nothing, and writes ``results.md``, ``results.csv`` and PNG figures into ``--out``
(default: the common parent of the RUN_DIRs). :mod:`batl_jax.sweep` calls
:func:`write_report` after its runs.

Grouping. Runs of one dataset form a *study*. Inside a study, runs whose configs are
equal apart from the seed (and settings that never change results: device count, cache
and data paths, the analysis switches) are the seeds of one *variant*; a variant is
named by its strategy plus whatever config values set it apart from the other variants
(e.g. ``batl (λ=0.5)``). A strategy's own config section (``batl.*`` for BATL, ...) is
ignored for every other strategy, so changing λ never splits RAND's runs.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import functools
import io
import json
import logging
import os
import sys
from pathlib import Path

import numpy as np

from batl_jax import run_files

log = logging.getLogger("batl_jax.report")  # not __name__: "__main__" under -m

ANALYSIS_KEYS = ("diversity", "uncertainty", "density")
# The paper's strategy order (tables and legends); unknown names follow alphabetically.
ORDER = ("rand", "conf", "entropy", "dal", "bald", "batchbald", "coreset", "badge", "alps", "batl")

PRIMARY_METRIC = {"classification": "accuracy", "relation": "micro_f1"}
# Settings that never tell variants apart (the strategy does; it is the label itself).
_IGNORED = {"seed", "name"} | run_files._RESUMABLE_KEYS
_SHORT = {"batl.lambda_": "λ"}
PAPER_LAMBDA = 1.0  # the representative of a λ sweep in the strategy comparison


@dataclasses.dataclass
class Run:
    path: Path
    config: dict  # flattened "section.key" -> value
    rows: list[dict]

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


# ----------------------------------------------------------------------------- loading
def find_runs(paths) -> list[Path]:
    """Every folder under ``paths`` (themselves included) holding config.json + metrics.jsonl."""
    found = set()
    for p in map(Path, paths):
        if not p.is_dir():
            raise FileNotFoundError(f"{p} is not a directory")
        for root, dirs, files in os.walk(p):
            dirs[:] = sorted(d for d in dirs if d != "checkpoints")  # Orbax trees are large
            if "config.json" in files and "metrics.jsonl" in files:
                found.add(Path(root))
    return sorted(found)


def load_run(path: Path) -> Run:
    config = run_files._flatten(json.loads((Path(path) / "config.json").read_text()))
    rows = run_files.JsonlLog(Path(path) / "metrics.jsonl").rows()
    return Run(Path(path), config, sorted(rows, key=lambda r: r.get("round", 0)))


@functools.cache
def strategy_sections() -> dict[str, str]:
    """Strategy name → the config section only it reads (``batl`` → ``batl``, ...)."""
    from batl_jax import strategies

    specs = (strategies.get(n) for n in strategies.names())
    return {s.name: s.config_section for s in specs if s.config_section}


def _relevant(config: dict) -> dict:
    sections = strategy_sections()
    own = sections.get(str(config.get("al.strategy")))
    other = set(sections.values()) - {own}
    return {k: v for k, v in config.items() if k not in _IGNORED and k.split(".")[0] not in other}


def _order(strategy: str):
    return (ORDER.index(strategy), "") if strategy in ORDER else (len(ORDER), strategy)


def group(runs: list[Run]) -> list[Study]:
    """Split runs into studies (one per dataset) and variants (one per config but seed)."""
    studies: dict[tuple, list[Run]] = {}
    for run in runs:
        if not run.rows:
            log.warning("%s has no finished round yet: left out", run.path)
            continue
        c = run.config
        key = (c.get("data.name"), c.get("data.hub_id"), c.get("data.hub_config"))
        studies.setdefault(key, []).append(run)
    out = []
    for key, members in studies.items():
        by_cfg: dict[str, list[Run]] = {}
        for run in members:
            cfg_key = json.dumps(_relevant(run.config), sort_keys=True, default=str)
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
            label = strategy
            if params:
                label += (
                    " (" + ", ".join(f"{_SHORT.get(k, k)}={v}" for k, v in params.items()) + ")"
                )
            group_runs.sort(key=lambda r: (str(type(r.seed)), r.seed))
            variants.append(Variant(label, strategy, params, group_runs))
        variants.sort(key=lambda v: (_order(v.strategy), json.dumps(v.params, sort_keys=True)))
        task = str(members[0].config.get("task.name", "classification"))
        metric = PRIMARY_METRIC.get(task) or next(iter(members[0].rows[0].get("test", {})), "")
        title = " / ".join(str(k) for k in key if k)
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
    cur = row
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


# Paired comparisons are made against these variants, when a study has them.
PAIRED_REFERENCES = ("rand", "batl")


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
            }
    return out


def paired_references(study: Study) -> list[Variant]:
    """The variants of :data:`PAIRED_REFERENCES` that the study's comparison has once each."""
    out = []
    for name in PAIRED_REFERENCES:
        found = [v for v in study.comparison() if v.strategy == name]
        if len(found) == 1:
            out.append(found[0])
    return out


def _paired_tables(study: Study) -> list[str]:
    lines = []
    for ref in paired_references(study):
        pairs = paired_auc(study, ref, study.metric)
        if not pairs:
            continue
        label = ref.label
        m = study.metric
        lines += [
            f"### AUC {m} minus {label}'s, paired by seed",
            "",
            "Per seed, the strategy's AUC minus the AUC of the same seed's "
            f"{label} run (percentage points); `better`: the seeds where it is higher.",
            "",
            "| strategy | difference (points) | better | n |",
            "|---|---:|---:|---:|",
        ]
        for name, p in pairs.items():
            mean, std, n = p["diff"]
            lines.append(f"| {name} | {100 * mean:+.2f} ± {100 * std:.2f} | {p['better']} | {n} |")
        lines.append("")
    return lines


def test_metrics(study: Study) -> list[str]:
    """The test metrics present in the study's rows, the primary one first."""
    keys = {
        k for v in study.variants for run in v.runs for r in run.rows for k in r.get("test", {})
    }
    return [study.metric] + sorted(keys - {study.metric})


# ----------------------------------------------------------------------------- writing
def _pct(m: float, s: float) -> str:
    return "–" if not np.isfinite(m) else f"{100 * m:.2f} ± {100 * s:.2f}"


def _num(m: float, s: float) -> str:
    return "–" if not np.isfinite(m) else f"{m:.4g} ± {s:.2g}"


_ANALYSIS_TITLES = {
    "diversity": "Diversity (Eq. 7; 1 / mean distance to the batch, higher = more diverse)",
    "uncertainty": "Uncertainty (Eq. 8; mean reference-classifier entropy, nats)",
    "density": "Density (Eq. 9; mean cosine similarity to the {k} nearest pool rows)",
}


def _round_table(study: Study, variants: list[Variant], quantity: str, fmt) -> list[str]:
    cols = {v.label: {p["round"]: p for p in per_round(v, quantity)} for v in variants}
    rounds = sorted({rnd for c in cols.values() for rnd in c})
    if not rounds:
        return []
    lines = ["| round | labeled | " + " | ".join(v.label for v in variants) + " |"]
    lines.append("|---:|---:|" + "---:|" * len(variants))
    for rnd in rounds:
        labeled = next(c[rnd]["labeled"] for c in cols.values() if rnd in c)
        cells = [fmt(c[rnd]["mean"], c[rnd]["std"]) if rnd in c else "–" for c in cols.values()]
        lines.append(f"| {rnd} | {labeled:.0f} | " + " | ".join(cells) + " |")
    return lines + [""]


def markdown(studies: list[Study], figures: dict[str, list[str]], out_dir: Path) -> str:
    n_runs = sum(len(v.runs) for s in studies for v in s.variants)
    lines = [
        "# Active-learning results",
        "",
        f"Aggregated by `python -m batl_jax.report` from {n_runs} run(s). Every cell is the "
        "mean ± sample standard deviation (ddof = 1) over seeds; `n` is the number of seeds. "
        "Test metrics are in %. **AUC**: area under the learning curve (test metric against "
        "labeled samples, trapezoid rule) divided by the labeled range, i.e. the curve's mean "
        "height. Analysis metrics (paper Eqs. 7–9) are computed on each round's selected "
        "batch; the summary averages them over a run's rounds. Time per run: the sum of the "
        "phase times in metrics.jsonl (a run that encodes a pool first pays `encode_s`).",
        "",
    ]
    for study in studies:
        m = study.metric
        lines += [f"## {study.title} ({study.task}): test {m}", ""]
        lines += [
            f"| strategy | n | AUC {m} (%) | final {m} (%) | final labeled | diversity "
            "| uncertainty (nats) | density (cos) | time per run (s) |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for v in study.variants:
            s = summary(v, m)
            a = [_num(*s[f"mean_over_rounds.analysis.{k}"][:2]) for k in ANALYSIS_KEYS]
            lines.append(
                f"| {v.label} | {len(v.runs)} | {_pct(*s[f'auc.{m}'][:2])} "
                f"| {_pct(*s[f'final.{m}'][:2])} | {s['final.labeled'][0]:.0f} | "
                + " | ".join(a)
                + f" | {s['time_s'][0]:.0f} |"
            )
        lines += [""] + _paired_tables(study)
        lines += [f"### Test {m} (%) per round", ""]
        lines += _round_table(study, study.variants, f"test.{m}", _pct)
        for key in ANALYSIS_KEYS:
            table = _round_table(study, study.variants, f"analysis.{key}", _num)
            if table:
                k = study.variants[0].runs[0].config.get("analysis.density_k", 10)
                lines += [f"### {_ANALYSIS_TITLES[key].format(k=k)} per round", ""] + table
        if figures.get(study.title):
            lines += ["### Figures", ""] + [f"![{f}]({f})" for f in figures[study.title]] + [""]
        lines += ["### Runs", ""]
        for v in study.variants:
            paths = ", ".join(f"`{os.path.relpath(r.path, out_dir)}`" for r in v.runs)
            lines.append(f"- {v.label}: seeds {[r.seed for r in v.runs]}: {paths}")
        lines.append("")
    return "\n".join(lines)


def csv_text(studies: list[Study]) -> str:
    """Tidy table: one line per (study, variant, round or summary, quantity)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["study", "variant", "strategy", "round", "labeled", "quantity", "mean", "std", "n"])
    for study in studies:
        quantities = [f"test.{k}" for k in test_metrics(study)]
        quantities += [f"analysis.{k}" for k in ANALYSIS_KEYS]
        for v in study.variants:
            for q in quantities:
                for p in per_round(v, q):
                    w.writerow([study.title, v.label, v.strategy, p["round"], f"{p['labeled']:g}",
                                q, repr(p["mean"]), repr(p["std"]), p["n"]])  # fmt: skip
            for q, (m, s, n) in summary(v, study.metric).items():
                w.writerow([study.title, v.label, v.strategy, "", "", q, repr(m), repr(s), n])
        for ref in paired_references(study):
            for name, p in paired_auc(study, ref, study.metric).items():
                m, s, n = p["diff"]
                q = f"auc.{study.metric}.minus_{ref.strategy}"
                w.writerow([study.title, name, p["strategy"], "", "", q, repr(m), repr(s), n])
    return buf.getvalue()


def write_report(run_dirs, out_dir) -> list[Path]:
    """Aggregate ``run_dirs`` (run folders) into ``out_dir``; returns the files written."""
    from batl_jax import plots

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    studies = group([load_run(p) for p in run_dirs])
    if not studies:
        raise ValueError("no run with a finished round to report")
    written, figures = [], {}
    for study in studies:
        prefix = "" if len(studies) == 1 else _slug(study.title) + "_"
        figures[study.title] = []
        for name, fn in (
            ("curves", plots.learning_curves),
            ("analysis", plots.analysis_bars),
            ("lambda", plots.lambda_sweep),
        ):
            path = out_dir / f"{prefix}{name}.png"
            if fn(study, path):
                figures[study.title].append(path.name)
                written.append(path)
    for name, text in (
        ("results.md", markdown(studies, figures, out_dir)),
        ("results.csv", csv_text(studies)),
    ):
        run_files.atomic_write_text(out_dir / name, text)
        written.append(out_dir / name)
    return written


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in text).strip("_") or "study"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m batl_jax.report",
        description="Re-aggregate existing runs (folders with config.json + metrics.jsonl, "
        "searched recursively) into results.md, results.csv and figures, without training.",
    )
    parser.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    parser.add_argument("--out", help="output folder (default: the RUN_DIRs' common parent)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        runs = find_runs(args.run_dirs)
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if not runs:
        print(f"error: no run folder (config.json + metrics.jsonl) under {args.run_dirs}",
              file=sys.stderr)  # fmt: skip
        return 2
    out = Path(args.out or os.path.commonpath([str(Path(p).resolve()) for p in args.run_dirs]))
    try:
        written = write_report(runs, out)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"{len(runs)} run(s) → " + ", ".join(str(p) for p in written))
    return 0


if __name__ == "__main__":
    sys.exit(main())
