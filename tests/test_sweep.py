"""The sweep: its plan, the flag values it refuses, and a tiny end-to-end sweep."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from batl_jax import sweep
from batl_jax.config import get_base_config
from tests.test_loop import DATA_DIR, tiny_config
from tests.tiny_bert import save_tiny_bert

REPO = Path(__file__).resolve().parents[1]
LABELED = [10, 20, 30]


def test_plan_names_runs_and_reuses_the_default_lambda(tmp_path):
    cfg = get_base_config()
    runs = sweep.plan(cfg, tmp_path, ["rand", "batl"], [0, 1], [0.5, 1.0])
    dirs = [str(r.workdir.relative_to(tmp_path)) for r in runs]
    assert dirs == [
        "rand/seed0",
        "rand/seed1",
        "batl/seed0",
        "batl/seed1",
        "batl_lambda0.5/seed0",
        "batl_lambda0.5/seed1",
    ]
    assert runs[-1].config(cfg).batl.lambda_ == 0.5 and runs[-1].config(cfg).seed == 1
    assert sweep.parse_seeds("3", 2) == [2, 3, 4] and sweep.parse_seeds("0,7", 0) == [0, 7]
    with pytest.raises(sweep.ConfigError, match="strategy"):
        sweep.plan(cfg, tmp_path, ["nope"], [0])


def test_variants_run_a_strategy_with_its_own_settings_in_its_own_folder(tmp_path):
    cfg = get_base_config()
    variants = sweep.parse_variants(
        "batl:batl.batch_mode=spaced, batl:batl.triplet_grad=embedding_only+batl.margin=1", cfg
    )
    runs = sweep.plan(cfg, tmp_path, ["rand"], [0, 1], variants=variants)
    dirs = [str(r.workdir.relative_to(tmp_path)) for r in runs]
    assert dirs == [
        "rand/seed0",
        "rand/seed1",
        "batl_spaced/seed0",
        "batl_spaced/seed1",
        "batl_embedding_only_1.0/seed0",
        "batl_embedding_only_1.0/seed1",
    ]
    spaced = runs[2].config(cfg)
    assert spaced.al.strategy == "batl" and spaced.batl.batch_mode == "spaced"
    control = runs[5].config(cfg)
    assert control.batl.triplet_grad == "embedding_only" and control.seed == 1
    assert control.batl.margin == 1.0 and isinstance(control.batl.margin, float)
    assert cfg.batl.batch_mode == "topk"  # the sweep's own config is left as it was


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("batl", "write STRATEGY:KEY=VALUE"),
        ("batl:nope.key=1", "'nope.key' is not a setting"),
        ("batl:batl.margin=wide", "batl.margin wants a float, not 'wide'"),
        ("batl:batl.batch_mode=spaced,batl:batl.batch_mode=spaced", "lists batl_spaced twice"),
    ],
)
def test_parse_variants_refuses_what_it_cannot_apply(text, why):
    with pytest.raises(sweep.ConfigError, match=why):
        sweep.parse_variants(text, get_base_config())


@pytest.mark.parametrize(
    ("seeds", "why"),
    [
        ("0,0", "--seeds lists 0 twice"),
        ("3,1,3", "--seeds lists 3 twice"),
        ("", "give a count"),
        (",", "give a count"),
        ("0", "give a count"),
        ("1.5", "give a count"),
    ],
)
def test_parse_seeds_refuses_repeats_and_non_counts(seeds, why):
    """--seeds=0,0 ran one experiment and reported it as n = 2 with std 0."""
    with pytest.raises(sweep.ConfigError, match=why):
        sweep.parse_seeds(seeds, 0)


@pytest.mark.parametrize("text", ["nan", "inf", "0.5,-inf", "1,NaN"])
def test_parse_floats_refuses_non_finite_lambdas(text):
    """--lambdas=nan reported a row 'batl (λ=nan)'."""
    with pytest.raises(sweep.ConfigError, match="NaN and infinity are not a λ"):
        sweep.parse_floats(text)
    assert sweep.parse_floats("0.5, 2") == [0.5, 2.0] and sweep.parse_floats("") == []


def test_plan_refuses_repeated_seeds_lambdas_and_strategies(tmp_path):
    cfg = get_base_config()
    with pytest.raises(sweep.ConfigError, match="--seeds lists 1 twice"):
        sweep.plan(cfg, tmp_path, ["rand"], [1, 1])
    # Equal to 6 significant digits: one folder, batl_lambda0.5.
    with pytest.raises(sweep.ConfigError, match="--lambdas lists 0.5 twice"):
        sweep.plan(cfg, tmp_path, ["rand"], [0], [0.5, 0.5000001])
    with pytest.raises(sweep.ConfigError, match="--strategies lists rand twice"):
        sweep.plan(cfg, tmp_path, ["rand", "conf", "rand"], [0])


def test_sweep_cli_refuses_bad_seeds_and_lambdas_before_any_run(tmp_path):
    for flag in ("--seeds=0,0", "--lambdas=nan", "--lambdas=0.5,inf"):
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "batl_jax.sweep",
                "--config=configs/demo.py",
                flag,
                "--strategies=rand",
                f"--workdir={tmp_path / 'w'}",
            ],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 2, proc.stderr[-2000:]
        assert proc.stderr.strip().splitlines()[-1].startswith("error: --"), proc.stderr[-2000:]
        assert "Traceback" not in proc.stderr and not (tmp_path / "w").exists()


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
        [
            sys.executable,
            "-m",
            "batl_jax.sweep",
            f"--config={cfg_file}",
            "--strategies=conf,batl",
            "--seeds=2",
            f"--workdir={work}",
            "--config.train.epochs=1",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stderr.count("skipped") >= 4, proc.stderr[-2000:]
