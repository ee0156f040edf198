"""Aggregation on synthetic run folders, the report CLI, and a tiny end-to-end sweep."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from batl_jax import config as base
from batl_jax import report, sweep
from tests.test_loop import DATA_DIR, tiny_config
from tests.tiny_bert import save_tiny_bert

REPO = Path(__file__).resolve().parents[1]
LABELED = [10, 20, 30]


def _fake_run(path: Path, strategy: str, seed: int, accs, *, lam=1.0, analysis=True) -> None:
    c = base.get_config()
    c.al.strategy, c.seed, c.batl.lambda_ = strategy, seed, lam
    c.data.name = "csabstruct"
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps(c.to_dict(), default=str))
    rows = []
    for r, (n, acc) in enumerate(zip(LABELED, accs, strict=True)):
        row = {"round": r, "labeled": n, "strategy": strategy, "seed": seed,
               "test": {"accuracy": acc, "macro_f1": acc / 2}, "test_majority_rate": 0.3,
               "time": {"train_s": 1.0, "eval_s": 0.5}}  # fmt: skip
        if analysis and r < len(LABELED) - 1:
            row["analysis"] = {"diversity": 10 * acc + seed, "uncertainty": 1 - acc,
                               "density": 0.9 + acc / 10}  # fmt: skip
        rows.append(row)
    (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


ACCS = {
    ("rand", 0): [0.4, 0.5, 0.55], ("rand", 1): [0.42, 0.48, 0.6],
    ("entropy", 0): [0.4, 0.52, 0.6], ("entropy", 1): [0.42, 0.5, 0.62],
    ("batl", 0): [0.4, 0.6, 0.7], ("batl", 1): [0.42, 0.58, 0.66],
    ("batl_l05", 0): [0.4, 0.55, 0.65], ("batl_l05", 1): [0.42, 0.57, 0.61],
}  # fmt: skip


@pytest.fixture
def fake_runs(tmp_path):
    root = tmp_path / "study"
    for (name, seed), accs in ACCS.items():
        strategy, lam = ("batl", 0.5) if name == "batl_l05" else (name, 1.0)
        # RAND's seed 1 has another λ in its config: irrelevant to RAND, one variant still.
        if name == "rand" and seed == 1:
            lam = 2.0
        _fake_run(root / name / f"seed{seed}", strategy, seed, accs, lam=lam)
    (root / "empty").mkdir()  # not a run
    return root


def test_grouping_statistics_and_area(fake_runs):
    runs = [report.load_run(p) for p in report.find_runs([fake_runs])]
    assert len(runs) == 8
    (study,) = report.group(runs)
    assert study.metric == "accuracy"
    assert [v.label for v in study.variants] == ["rand", "entropy", "batl (λ=0.5)", "batl (λ=1.0)"]
    rand = study.variants[0]
    pts = report.per_round(rand, "test.accuracy")
    a = np.array([ACCS["rand", 0], ACCS["rand", 1]])
    np.testing.assert_allclose([p["mean"] for p in pts], a.mean(0))
    np.testing.assert_allclose([p["std"] for p in pts], a.std(0, ddof=1))
    assert [p["labeled"] for p in pts] == LABELED and all(p["n"] == 2 for p in pts)
    # Normalised trapezoid area: mean height of the curve over the labeled range.
    want = [np.trapezoid(r, LABELED) / 20 for r in a]
    s = report.summary(rand, "accuracy")
    assert s["auc.accuracy"][0] == pytest.approx(np.mean(want))
    assert s["final.accuracy"][0] == pytest.approx(a[:, -1].mean())
    div = [[10 * x + seed for x in ACCS["rand", seed][:2]] for seed in (0, 1)]
    assert s["mean_over_rounds.analysis.diversity"][0] == pytest.approx(np.mean(div))
    assert s["first.analysis.uncertainty"][0] == pytest.approx(1 - a[:, 0].mean())
    assert [float(v.params["batl.lambda_"]) for v in study.lambda_family()] == [0.5, 1.0]
    assert [v.label for v in study.comparison()] == ["rand", "entropy", "batl (λ=1.0)"]


def test_paired_auc_differences_by_seed(fake_runs):
    (study,) = report.group([report.load_run(p) for p in report.find_runs([fake_runs])])
    refs = report.paired_references(study)
    # The λ sweep is represented by λ = 1 alone, so "batl" names one variant.
    assert [v.label for v in refs] == ["rand", "batl (λ=1.0)"]

    def area(name, seed):
        return np.trapezoid(ACCS[name, seed], LABELED) / 20

    pairs = report.paired_auc(study, refs[0], "accuracy")
    assert list(pairs) == ["entropy", "batl (λ=0.5)", "batl (λ=1.0)"]
    for label, name in (("entropy", "entropy"), ("batl (λ=1.0)", "batl")):
        d = [area(name, s) - area("rand", s) for s in (0, 1)]
        mean, std, n = pairs[label]["diff"]
        assert (mean, std, n) == (pytest.approx(np.mean(d)), pytest.approx(np.std(d, ddof=1)), 2)
        assert pairs[label]["better"] == sum(x > 0 for x in d)
    # Both beat rand under both seeds; nothing beats BATL under either.
    assert pairs["entropy"]["better"] == 2 and pairs["batl (λ=1.0)"]["better"] == 2
    against_batl = report.paired_auc(study, refs[1], "accuracy")
    assert against_batl["rand"]["diff"][0] == pytest.approx(-pairs["batl (λ=1.0)"]["diff"][0])
    assert [p["better"] for p in against_batl.values()] == [0, 0, 0]
    md = report.markdown([study], {}, fake_runs)
    assert "### AUC accuracy minus rand's, paired by seed" in md
    assert "### AUC accuracy minus batl (λ=1.0)'s, paired by seed" in md


def test_report_cli_writes_tables_and_figures(fake_runs, tmp_path):
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "batl_jax.report", str(fake_runs), f"--out={out}"],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    for name in ("results.md", "results.csv", "curves.png", "analysis.png", "lambda.png"):
        assert (out / name).stat().st_size > 0, name
    rows = list(csv.DictReader((out / "results.csv").open()))
    cell = [r for r in rows if r["variant"] == "rand" and r["round"] == "2"
            and r["quantity"] == "test.accuracy"]  # fmt: skip
    assert float(cell[0]["mean"]) == pytest.approx(0.575) and cell[0]["n"] == "2"
    md = (out / "results.md").read_text()
    assert "batl (λ=0.5)" in md and "57.50 ± 3.54" in md
    bad = subprocess.run(
        [sys.executable, "-m", "batl_jax.report", str(tmp_path / "nope")],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert bad.returncode == 2 and bad.stderr.startswith("error:")


def test_plan_names_runs_and_reuses_the_default_lambda(tmp_path):
    cfg = base.get_config()
    runs = sweep.plan(cfg, tmp_path, ["rand", "batl"], [0, 1], [0.5, 1.0])
    dirs = [str(r.workdir.relative_to(tmp_path)) for r in runs]
    assert dirs == ["rand/seed0", "rand/seed1", "batl/seed0", "batl/seed1",
                    "batl_lambda0.5/seed0", "batl_lambda0.5/seed1"]  # fmt: skip
    assert runs[-1].config(cfg).batl.lambda_ == 0.5 and runs[-1].config(cfg).seed == 1
    assert sweep.parse_seeds("3", 2) == [2, 3, 4] and sweep.parse_seeds("0,7", 0) == [0, 7]
    with pytest.raises(sweep.ConfigError, match="strategy"):
        sweep.plan(cfg, tmp_path, ["nope"], [0])


@pytest.mark.skipif(not Path(DATA_DIR).is_dir(), reason="data dir not available")
def test_tiny_sweep_end_to_end_and_rerun_skips(tmp_path):
    model = save_tiny_bert(tmp_path / "tiny_bert")
    cfg = tiny_config(model, train__mode="head")
    work = tmp_path / "sweep"
    res = sweep.run_sweep(cfg, work, ["conf", "batl"], [0, 1])
    assert len(res.ran) == 4 and not res.failed
    for s in ("conf", "batl"):
        for seed in (0, 1):
            rows = [json.loads(x) for x in (work / s / f"seed{seed}" / "metrics.jsonl").open()]
            assert [r["round"] for r in rows] == [0, 1]
            assert set(rows[0]["analysis"]) == {"diversity", "uncertainty", "density"}
            assert rows[0]["time"]["analysis_s"] >= 0 and "analysis" not in rows[1]
    for name in ("results.md", "results.csv", "curves.png", "analysis.png"):
        assert (work / name).stat().st_size > 0
    # Both strategies scored the same seed-0 rows by one cached reference classifier.
    assert len(list((Path(os.environ["BATL_CACHE_DIR"]) / "reference").glob("*.npy"))) >= 1

    def must_not_run(cfg, workdir):
        raise AssertionError(f"finished run {workdir} was run again")

    again = sweep.run_sweep(cfg, work, ["conf", "batl"], [0, 1], runner=must_not_run)
    assert len(again.skipped) == 4 and not again.ran
    # The CLI, with a config override that changes nothing: every run is skipped.
    cfg_file = tmp_path / "tiny_cfg.py"
    cfg_file.write_text(
        f"import sys\nsys.path.insert(0, {str(REPO)!r})\n"
        "from tests.test_loop import tiny_config\n\n\n"
        f"def get_config():\n    return tiny_config({str(model)!r}, train__mode='head')\n"
    )
    proc = subprocess.run(
        [sys.executable, "-m", "batl_jax.sweep", f"--config={cfg_file}", "--strategies=conf,batl",
         "--seeds=2", f"--workdir={work}", "--config.train.epochs=1"],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stderr.count("skipped") >= 4, proc.stderr[-2000:]
