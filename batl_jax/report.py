"""Tables of finished (or partial) runs: mean ± std over seeds, and the figures beside them.

``python -m batl_jax.report RUN_DIR... [--out=DIR]`` searches each ``RUN_DIR``
recursively for run folders (a ``config.json`` next to a ``metrics.jsonl``), trains
nothing, and writes ``results.md``, ``results.csv`` and PNG figures into ``--out``
(default: the common parent of the RUN_DIRs). :mod:`batl_jax.sweep` calls
:func:`write_report` after its runs. How runs become studies and variants, and the
statistics, are :mod:`batl_jax.results`; the figures are :mod:`batl_jax.plots`.
"""

from __future__ import annotations

import argparse
import csv
import functools
import io
import logging
import os
import sys
from pathlib import Path

import numpy as np

from batl_jax import config as base_config
from batl_jax import plots, results, run_files
from batl_jax.errors import BatlError, DataError
from batl_jax.results import ANALYSIS_KEYS, Study, Variant, paired_auc, per_round, summary


@functools.cache
def strategy_sections() -> dict[str, str]:
    """Strategy name → the config section only it reads (``batl`` → ``batl``, ...)."""
    from batl_jax import strategies

    specs = (strategies.get(n) for n in strategies.names())
    return {s.name: s.config_section for s in specs if s.config_section}


def load_studies(run_dirs) -> list[Study]:
    """The studies of the runs in ``run_dirs`` (run folders)."""
    runs = [results.load_run(p) for p in run_dirs]
    return results.group(runs, strategy_sections(), _defaults())


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


@functools.cache
def _defaults() -> dict:
    """The package's default settings, flattened: which BATL variant is *the* BATL."""
    return run_files.flatten(base_config.get_base_config().to_dict())


def _references(study: Study) -> list[Variant]:
    return results.paired_references(study, _defaults())


def _paired_tables(study: Study) -> list[str]:
    lines = []
    for ref in _references(study):
        pairs = paired_auc(study, ref, study.metric)
        if not pairs:
            continue
        label = ref.label
        m = study.metric
        lines += [
            f"### AUC {m} minus {label}'s, paired by seed",
            "",
            "Per seed, the strategy's AUC minus the AUC of the same seed's "
            f"{label} run (percentage points); `better`: the seeds where it is higher; "
            "95 % CI: percentile bootstrap of the mean difference over seeds (10,000 "
            "draws); p: two-sided exact Wilcoxon signed-rank test.",
            "",
            "| strategy | difference (points) | 95 % CI | better | n | p (Wilcoxon) |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for name, p in pairs.items():
            mean, std, n = p["diff"]
            lo, hi = p["ci"]
            lines.append(
                f"| {name} | {100 * mean:+.2f} ± {100 * std:.2f} "
                f"| [{100 * lo:+.2f}, {100 * hi:+.2f}] | {p['better']} | {n} | {p['p']:.3g} |"
            )
        lines.append("")
    return lines


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
        quantities = [f"test.{k}" for k in study.test_metrics()]
        quantities += [f"analysis.{k}" for k in ANALYSIS_KEYS]
        for v in study.variants:
            for q in quantities:
                for p in per_round(v, q):
                    w.writerow(
                        [
                            study.title,
                            v.label,
                            v.strategy,
                            p["round"],
                            f"{p['labeled']:g}",
                            q,
                            repr(p["mean"]),
                            repr(p["std"]),
                            p["n"],
                        ]
                    )
            for q, (m, s, n) in summary(v, study.metric).items():
                w.writerow([study.title, v.label, v.strategy, "", "", q, repr(m), repr(s), n])
        for ref in _references(study):
            for name, p in paired_auc(study, ref, study.metric).items():
                m, s, n = p["diff"]
                q = f"auc.{study.metric}.minus_{ref.strategy}"
                w.writerow([study.title, name, p["strategy"], "", "", q, repr(m), repr(s), n])
                lo, hi = p["ci"]
                for suffix, x in (("ci_low", lo), ("ci_high", hi), ("wilcoxon_p", p["p"])):
                    row = [study.title, name, p["strategy"], "", "", f"{q}.{suffix}", repr(x)]
                    w.writerow(row + ["", n])
    return buf.getvalue()


def write_report(run_dirs, out_dir) -> list[Path]:
    """Aggregate ``run_dirs`` (run folders) into ``out_dir``; returns the files written."""
    studies = load_studies(run_dirs)
    if not studies:
        raise DataError("no run with a finished round to report; run at least one round first")
    out_dir = Path(out_dir)
    try:
        return _write(studies, out_dir)
    except OSError as e:
        raise DataError(
            f"cannot write the report into {out_dir} ({e.strerror or e}); choose another folder"
        ) from e


def _write(studies: list[Study], out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    figures: dict[str, list[str]] = {}
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
        runs = results.find_runs(args.run_dirs)
        if not runs:
            raise DataError(
                f"no run folder (config.json + metrics.jsonl) under {' '.join(args.run_dirs)}; "
                "give the folders a run or sweep wrote"
            )
        resolved = [str(Path(p).resolve()) for p in args.run_dirs]
        written = write_report(runs, Path(args.out or os.path.commonpath(resolved)))
    except BatlError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    print(f"{len(runs)} run(s) → " + ", ".join(str(p) for p in written))
    return 0


if __name__ == "__main__":
    sys.exit(main())
