"""The run's JSON-lines files are read strictly: only a torn last line may be repaired;
any other damage, rounds out of order, or fewer rounds than the checkpoint is an error
that leaves the file as it was. Metrics rows never hold NaN or infinity."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from batl_jax import plots, run_files
from batl_jax.errors import StateError

REPO = Path(__file__).resolve().parents[1]


def _row(r: int, **extra) -> dict:
    return {"round": r, "labeled": 10 * (r + 1), "test": {"accuracy": 0.5 + r / 10}, **extra}


def _log(tmp_path, lines: list[str], tail: str = "") -> run_files.JsonlLog:
    path = tmp_path / "metrics.jsonl"
    path.write_text("".join(line + "\n" for line in lines) + tail, encoding="utf-8")
    return run_files.JsonlLog(path)


def _lines(rounds) -> list[str]:
    return [json.dumps(_row(r), sort_keys=True) for r in rounds]


def test_a_torn_last_line_is_dropped_and_repaired(tmp_path):
    full = json.dumps(_row(2), sort_keys=True)
    log = _log(tmp_path, _lines([0, 1]), tail=full[: len(full) // 2])
    assert [r["round"] for r in log.rows()] == [0, 1]
    log.truncate_to(5)
    assert log.path.read_text() == "".join(line + "\n" for line in _lines([0, 1]))


def test_a_torn_multibyte_character_is_a_torn_line(tmp_path):
    log = _log(tmp_path, _lines([0]))
    with open(log.path, "ab") as f:
        f.write('{"round": 1, "strategy": "λ'.encode()[:-1])
    assert [r["round"] for r in log.rows()] == [0]


@pytest.mark.parametrize(
    "bad",
    ["", "   ", "{not json", "[1, 2]", '"a string"', "NaN-ish"],
    ids=["blank", "spaces", "garbage", "list", "string", "word"],
)
def test_a_bad_line_before_the_last_is_an_error_not_a_cut(tmp_path, bad):
    """Old code stopped at the first bad line and truncate_to wrote the rest away."""
    lines = _lines([0]) + [bad] + _lines([1, 2])
    log = _log(tmp_path, lines)
    before = log.path.read_bytes()
    with pytest.raises(StateError, match=r"metrics\.jsonl line 2 is not a JSON object"):
        log.rows()
    with pytest.raises(StateError, match="line 2"):
        log.truncate_to(2)
    assert log.path.read_bytes() == before


def test_a_line_that_is_not_utf8_is_an_error(tmp_path):
    log = _log(tmp_path, _lines([0, 1]))
    data = log.path.read_bytes().replace(b'"test"', b'"t\xffst"', 1)
    log.path.write_bytes(data)
    with pytest.raises(StateError, match="line 1"):
        log.rows()


@pytest.mark.parametrize(
    ("rounds", "why"),
    [
        ([0, 1, 2, 1, 2], "line 4 holds round 1 a second time"),
        ([0, 2], "line 2 holds round 2 where round 1 belongs"),
        ([1, 2], "line 1 holds round 1 where round 0 belongs"),
    ],
)
def test_rounds_out_of_order_are_refused(tmp_path, rounds, why):
    """Two runs on one workdir left [0,1,2,1,2]; truncate_to(2) used to keep [0,1,1]."""
    log = _log(tmp_path, _lines(rounds))
    before = log.path.read_bytes()
    with pytest.raises(StateError, match=why):
        log.check_rounds(0)
    with pytest.raises(StateError, match=why):
        log.truncate_to(2)
    assert log.path.read_bytes() == before


def test_a_row_without_an_integer_round_is_refused(tmp_path):
    log = _log(tmp_path, [json.dumps({"round": "0"}), json.dumps({"labeled": 1})])
    with pytest.raises(StateError, match="line 1 holds round '0'"):
        log.check_rounds(0)


def test_fewer_rows_than_the_checkpoint_are_refused(tmp_path):
    log = _log(tmp_path, _lines([0, 1]))
    assert [r["round"] for r in log.check_rounds(2)] == [0, 1]
    with pytest.raises(StateError, match="holds 2 round.* checkpoint has 3 done"):
        log.check_rounds(3)
    missing = run_files.JsonlLog(tmp_path / "gone.jsonl")
    assert missing.check_rounds(0) == []
    with pytest.raises(StateError, match="holds 0 round"):
        missing.check_rounds(2)


def test_truncate_to_cuts_the_rounds_after_the_checkpoint(tmp_path):
    log = _log(tmp_path, _lines([0, 1, 2]))
    log.truncate_to(2)
    assert [r["round"] for r in log.rows()] == [0, 1]
    assert log.path.read_text().count("\n") == 2


@pytest.mark.parametrize(
    ("value", "where"),
    [
        ({"test": {"accuracy": math.nan}}, "test.accuracy"),
        ({"analysis": {"density": -math.inf}}, "analysis.density"),
        ({"scores": {"bald": [0.1, math.inf]}}, r"scores.bald\[1\]"),
    ],
)
def test_append_refuses_non_finite_values(tmp_path, value, where):
    """Old code wrote a bare NaN, which is not JSON, into metrics.jsonl."""
    log = _log(tmp_path, _lines([0]))
    before = log.path.read_bytes()
    with pytest.raises(StateError, match=f"round 1: {where} is not finite"):
        log.append({"round": 1, "labeled": 20, **value})
    assert log.path.read_bytes() == before
    log.append(_row(1))
    assert [r["round"] for r in log.check_rounds(2)] == [0, 1]


def test_non_finite_keys_names_every_bad_value():
    row = {"a": 1.0, "b": {"c": math.nan, "d": [1, math.inf]}, "e": "nan", "f": None}
    assert run_files.non_finite_keys(row) == ["b.c", "b.d[1]"]
    assert run_files.non_finite_keys(math.nan) == ["value"]


def test_run_curve_draws_the_learning_curve(tmp_path):
    rows = [_row(0), _row(1), {"round": 2, "labeled": 30, "test": {"micro_f1": 0.1}}]
    plots.run_curve(tmp_path, rows, "accuracy", "demo: rand, seed 0")
    assert (tmp_path / "curves.png").stat().st_size > 0
    assert not list(tmp_path.glob("*.tmp.png"))
    plots.run_curve(tmp_path / "nothing", rows, "macro_f1", "no such metric")
    assert not (tmp_path / "nothing").exists()


def test_low_layers_import_no_training_code():
    """results, plots and run_files sit under the loop: importing them loads no JAX code."""
    code = (
        "import json, sys, batl_jax.results, batl_jax.plots, batl_jax.run_files\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith(('batl_jax', 'jax')))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    loaded = json.loads(out.stdout)
    assert loaded == [
        "batl_jax",
        "batl_jax.errors",
        "batl_jax.plots",
        "batl_jax.results",
        "batl_jax.run_files",
    ]
