"""Runs as data (batl_jax.results) and the report over them: grouping, statistics,
paired AUCs, the CLI, and the runs a report refuses instead of misreading."""

from __future__ import annotations

import csv
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from batl_jax import report, results
from batl_jax.config import get_base_config
from batl_jax.errors import DataError, StateError

REPO = Path(__file__).resolve().parents[1]
LABELED = [10, 20, 30]


def _fake_run(
    path: Path, strategy: str, seed: int, accs, *, lam=1.0, analysis=True, batl=None, mode=None
) -> None:
    c = get_base_config()
    c.al.strategy, c.seed, c.batl.lambda_ = strategy, seed, lam
    c.train.mode = mode or c.train.mode
    for key, value in (batl or {}).items():
        c.batl[key] = value
    c.data.name = "csabstruct"
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps(c.to_dict(), default=str))
    rows = []
    for r, (n, acc) in enumerate(zip(LABELED, accs, strict=True)):
        row = {
            "round": r,
            "labeled": n,
            "strategy": strategy,
            "seed": seed,
            "test": {"accuracy": acc, "macro_f1": acc / 2},
            "test_majority_rate": 0.3,
            "time": {"train_s": 1.0, "eval_s": 0.5},
        }
        if analysis and r < len(LABELED) - 1:
            row["analysis"] = {
                "diversity": 10 * acc + seed,
                "uncertainty": 1 - acc,
                "density": 0.9 + acc / 10,
            }
        rows.append(row)
    (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


ACCS = {
    ("rand", 0): [0.4, 0.5, 0.55],
    ("rand", 1): [0.42, 0.48, 0.6],
    ("entropy", 0): [0.4, 0.52, 0.6],
    ("entropy", 1): [0.42, 0.5, 0.62],
    ("batl", 0): [0.4, 0.6, 0.7],
    ("batl", 1): [0.42, 0.58, 0.66],
    ("batl_l05", 0): [0.4, 0.55, 0.65],
    ("batl_l05", 1): [0.42, 0.57, 0.61],
}


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
    runs = [results.load_run(p) for p in results.find_runs([fake_runs])]
    assert len(runs) == 8
    (study,) = results.group(runs, report.strategy_sections())
    assert study.metric == "accuracy"
    assert [v.label for v in study.variants] == ["rand", "entropy", "batl (λ=0.5)", "batl (λ=1.0)"]
    rand = study.variants[0]
    pts = results.per_round(rand, "test.accuracy")
    a = np.array([ACCS["rand", 0], ACCS["rand", 1]])
    np.testing.assert_allclose([p["mean"] for p in pts], a.mean(0))
    np.testing.assert_allclose([p["std"] for p in pts], a.std(0, ddof=1))
    assert [p["labeled"] for p in pts] == LABELED and all(p["n"] == 2 for p in pts)
    # Normalised trapezoid area: mean height of the curve over the labeled range.
    want = [np.trapezoid(r, LABELED) / 20 for r in a]
    s = results.summary(rand, "accuracy")
    assert s["auc.accuracy"][0] == pytest.approx(np.mean(want))
    assert s["final.accuracy"][0] == pytest.approx(a[:, -1].mean())
    div = [[10 * x + seed for x in ACCS["rand", seed][:2]] for seed in (0, 1)]
    assert s["mean_over_rounds.analysis.diversity"][0] == pytest.approx(np.mean(div))
    assert s["first.analysis.uncertainty"][0] == pytest.approx(1 - a[:, 0].mean())
    assert [float(v.params["batl.lambda_"]) for v in study.lambda_family()] == [0.5, 1.0]
    assert [v.label for v in study.comparison()] == ["rand", "entropy", "batl (λ=1.0)"]


def test_a_dataset_in_two_training_regimes_is_two_studies(tmp_path):
    """Frozen-encoder and fully fine-tuned runs of one dataset are reported side by side,
    never as variants of one study (nothing is paired across regimes)."""
    for mode in ("head", "full"):
        for strategy in ("rand", "batl"):
            path = tmp_path / mode / strategy / "seed0"
            _fake_run(path, strategy, 0, [0.4, 0.5, 0.6], mode=mode)
    load = lambda *dirs: [results.load_run(p) for p in results.find_runs(list(dirs))]
    (alone,) = results.group(load(tmp_path / "head"), report.strategy_sections())
    assert alone.title == "csabstruct"  # one regime: the title does not name it
    studies = results.group(load(tmp_path / "head", tmp_path / "full"), report.strategy_sections())
    titles = ["csabstruct, train.mode=full", "csabstruct, train.mode=head"]
    assert [s.title for s in studies] == titles
    for study in studies:  # labels name no setting: within a regime nothing else differs
        assert [v.label for v in study.variants] == ["rand", "batl"]


def test_paired_auc_differences_by_seed(fake_runs):
    (study,) = report.load_studies(results.find_runs([fake_runs]))
    refs = results.paired_references(study)
    # The λ sweep is represented by λ = 1 alone, so "batl" names one variant.
    assert [v.label for v in refs] == ["rand", "batl (λ=1.0)"]

    def area(name, seed):
        return np.trapezoid(ACCS[name, seed], LABELED) / 20

    pairs = results.paired_auc(study, refs[0], "accuracy")
    assert list(pairs) == ["entropy", "batl (λ=0.5)", "batl (λ=1.0)"]
    for label, name in (("entropy", "entropy"), ("batl (λ=1.0)", "batl")):
        d = [area(name, s) - area("rand", s) for s in (0, 1)]
        mean, std, n = pairs[label]["diff"]
        assert (mean, std, n) == (pytest.approx(np.mean(d)), pytest.approx(np.std(d, ddof=1)), 2)
        assert pairs[label]["better"] == sum(x > 0 for x in d)
    # Both beat rand under both seeds; nothing beats BATL under either.
    assert pairs["entropy"]["better"] == 2 and pairs["batl (λ=1.0)"]["better"] == 2
    against_batl = results.paired_auc(study, refs[1], "accuracy")
    assert against_batl["rand"]["diff"][0] == pytest.approx(-pairs["batl (λ=1.0)"]["diff"][0])
    assert [p["better"] for p in against_batl.values()] == [0, 0, 0]
    md = report.markdown([study], {}, fake_runs)
    assert "### AUC accuracy minus rand's, paired by seed" in md
    assert "### AUC accuracy minus batl (λ=1.0)'s, paired by seed" in md


def test_batl_is_the_reference_beside_its_control_and_batch_aware_form(tmp_path):
    """With BATL's control and spaced form in a study, the paired tables compare against
    the BATL at the package defaults, and label the others by what sets them apart."""
    forms = {
        "batl": {},
        "batl_control": {"triplet_grad": "embedding_only"},
        "batl_spaced": {"batch_mode": "spaced"},
    }
    for seed in range(3):
        _fake_run(tmp_path / "rand" / f"s{seed}", "rand", seed, [0.4, 0.5, 0.5 + seed / 100])
        for i, (name, batl) in enumerate(forms.items()):
            accs = [0.4, 0.5 + i / 50, 0.6 + seed / 100]
            _fake_run(tmp_path / name / f"s{seed}", "batl", seed, accs, batl=batl)
    (study,) = report.load_studies(results.find_runs([tmp_path]))
    labels = [v.label for v in study.variants]
    # Named by what differs from the package defaults: the default BATL is plain "batl".
    assert labels == [
        "rand",
        "batl",
        "batl (batch_mode=spaced)",
        "batl (triplet_grad=embedding_only)",
    ]
    # Without the defaults the three BATL forms are ambiguous: no BATL reference.
    assert [v.strategy for v in results.paired_references(study)] == ["rand"]
    refs = results.paired_references(study, report._defaults())
    assert [v.label for v in refs] == ["rand", "batl"]
    md = report.markdown([study], {}, tmp_path)
    assert "### AUC accuracy minus batl's, paired by seed" in md
    assert "p (Wilcoxon)" in md


def test_signed_rank_p_matches_scipy_exact_and_enumerates_ties():
    scipy_stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(0)
    for n in (1, 3, 6, 10, 13):
        d = rng.normal(0.3, 1.0, n)
        want = scipy_stats.wilcoxon(d, method="exact").pvalue
        assert results.signed_rank_p(list(d)) == pytest.approx(want, abs=1e-12), n
    # All ten seeds better: the smallest two-sided p there is, 2 / 2^10.
    assert results.signed_rank_p([0.01 * (i + 1) for i in range(10)]) == pytest.approx(2 / 1024)
    # Ties and zeros: zeros dropped, tied magnitudes share their rank; brute force agrees.
    d = [0.1, -0.1, 0.2, 0.2, 0.0, -0.3, 0.1]
    nz = np.array([x for x in d if x != 0])
    ranks = results._average_ranks(np.abs(nz))
    assert list(ranks) == [2.0, 2.0, 4.5, 4.5, 6.0, 2.0]
    obs = ranks[nz > 0].sum()
    count = 0
    for signs in range(2 ** len(nz)):
        w = sum(r for j, r in enumerate(ranks) if signs >> j & 1)
        count += abs(w - ranks.sum() / 2) >= abs(obs - ranks.sum() / 2) - 1e-9
    assert results.signed_rank_p(d) == pytest.approx(count / 2 ** len(nz))
    assert results.signed_rank_p([0.0, 0.0]) == 1.0


def test_bootstrap_ci_brackets_the_mean_and_is_reproducible():
    d = [0.02, -0.01, 0.03, 0.01, 0.04, 0.0, 0.02, 0.01, -0.02, 0.03]
    lo, hi = results.bootstrap_ci(d)
    assert lo < np.mean(d) < hi and (lo, hi) == results.bootstrap_ci(d)
    assert results.bootstrap_ci([0.05] * 4) == (pytest.approx(0.05), pytest.approx(0.05))


def test_report_cli_writes_tables_and_figures(fake_runs, tmp_path):
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "batl_jax.report", str(fake_runs), f"--out={out}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    for name in ("results.md", "results.csv", "curves.png", "analysis.png", "lambda.png"):
        assert (out / name).stat().st_size > 0, name
    rows = list(csv.DictReader((out / "results.csv").open()))
    cell = [
        r
        for r in rows
        if r["variant"] == "rand" and r["round"] == "2" and r["quantity"] == "test.accuracy"
    ]
    assert float(cell[0]["mean"]) == pytest.approx(0.575) and cell[0]["n"] == "2"
    md = (out / "results.md").read_text()
    assert "batl (λ=0.5)" in md and "57.50 ± 3.54" in md
    bad = subprocess.run(
        [sys.executable, "-m", "batl_jax.report", str(tmp_path / "nope")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 2 and bad.stderr.startswith("error:")


def _rewrite(path: Path, edit) -> None:
    rows = [json.loads(x) for x in path.read_text().splitlines()]
    path.write_text("".join(json.dumps(r) + "\n" for r in edit(rows)))


def _load_all(root):
    return report.load_studies(results.find_runs([root]))


def test_duplicate_rounds_are_refused_not_averaged(fake_runs):
    """Two runs on one workdir left rounds [0,1,2,1,2]; the report averaged them."""
    metrics = fake_runs / "rand" / "seed0" / "metrics.jsonl"
    _rewrite(metrics, lambda rows: rows + rows[1:])
    with pytest.raises(DataError, match=r"line 4 holds round 1 a second time"):
        _load_all(fake_runs)


def test_rounds_out_of_order_are_refused(fake_runs):
    metrics = fake_runs / "rand" / "seed0" / "metrics.jsonl"
    _rewrite(metrics, lambda rows: rows[::-1])
    with pytest.raises(DataError, match="line 1 holds round 2 where round 0 belongs"):
        _load_all(fake_runs)


@pytest.mark.parametrize(
    ("edit", "why"),
    [
        (lambda r: {**r, "test": {"accuracy": math.nan}}, "test.accuracy is not a finite number"),
        (lambda r: {**r, "time": {"train_s": None}}, "time.train_s is not a finite number"),
        (lambda r: {**r, "analysis": [1]}, "'analysis' is not an object"),
        (lambda r: {k: v for k, v in r.items() if k != "labeled"}, "no finite 'labeled' count"),
    ],
    ids=["nan", "none_time", "not_dict", "no_labeled"],
)
def test_rows_a_report_would_misread_are_refused(fake_runs, edit, why):
    """NaN was dropped from the means without a word; a missing count was a KeyError."""
    metrics = fake_runs / "entropy" / "seed1" / "metrics.jsonl"
    _rewrite(metrics, lambda rows: [edit(rows[0])] + rows[1:])
    with pytest.raises(DataError, match=f"line 1: {why}|line 1 has {why}"):
        _load_all(fake_runs)


def test_an_undefined_metric_is_left_out_of_the_mean(fake_runs):
    metrics = fake_runs / "rand" / "seed0" / "metrics.jsonl"
    _rewrite(metrics, lambda rows: [{**rows[0], "test": {"accuracy": None}}] + rows[1:])
    (study,) = _load_all(fake_runs)
    first = results.per_round(study.variants[0], "test.accuracy")[0]
    assert first["n"] == 1 and first["mean"] == pytest.approx(ACCS["rand", 1][0])


def test_one_seed_twice_in_a_variant_is_refused(fake_runs):
    """A copied run folder counted a seed twice (n = 2, std 0)."""
    _fake_run(fake_runs / "rand_copy" / "seed0", "rand", 0, ACCS["rand", 0])
    with pytest.raises(DataError, match="rand has seed 0 twice"):
        _load_all(fake_runs)


def test_a_damaged_line_is_an_error_naming_it(fake_runs):
    metrics = fake_runs / "batl" / "seed0" / "metrics.jsonl"
    lines = metrics.read_text().splitlines()
    metrics.write_text("\n".join([lines[0], "", *lines[1:]]) + "\n")
    with pytest.raises(StateError, match=r"batl/seed0/metrics\.jsonl line 2"):
        _load_all(fake_runs)


def _cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "batl_jax.report", *map(str, args)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _bad_config(root):
    (root / "rand" / "seed0" / "config.json").write_text("{not json")


def _list_config(root):
    (root / "rand" / "seed0" / "config.json").write_text("[1]")


def _dup_rounds(root):
    _rewrite(root / "rand" / "seed0" / "metrics.jsonl", lambda rows: rows + rows)


def _blank_line(root):
    path = root / "rand" / "seed0" / "metrics.jsonl"
    path.write_text("\n" + path.read_text())


def _only_torn(root):
    for path in root.rglob("metrics.jsonl"):
        path.write_text('{"round": 0, "lab')


@pytest.mark.parametrize(
    ("damage", "why"),
    [
        (_bad_config, "config.json is not valid JSON"),
        (_list_config, "config.json is not a config object"),
        (_dup_rounds, "round 0 a second time"),
        (_blank_line, "line 1 is not a JSON object"),
        (_only_torn, "no run with a finished round"),
    ],
)
def test_report_cli_refuses_bad_runs_in_one_line(fake_runs, tmp_path, damage, why):
    damage(fake_runs)
    out = tmp_path / "out"
    proc = _cli(fake_runs, f"--out={out}")
    assert proc.returncode == 2, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]  # warnings about left-out runs may precede it
    assert last.startswith("error:") and why in last, proc.stderr
    assert "Traceback" not in proc.stderr and not out.exists()


def test_report_cli_refuses_an_output_it_cannot_write(fake_runs, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    for out in (blocker, blocker / "sub"):
        proc = _cli(fake_runs, f"--out={out}")
        assert proc.returncode == 2 and proc.stderr.startswith("error: cannot write"), proc.stderr
        assert "Traceback" not in proc.stderr
    proc = _cli(blocker)
    assert proc.returncode == 2 and "is not a directory" in proc.stderr, proc.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    proc = _cli(empty)
    assert proc.returncode == 2 and "no run folder" in proc.stderr, proc.stderr
