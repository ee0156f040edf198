"""``python -m benchmarks strategies --smoke`` runs every kernel case end to end (< 30 s)."""

from __future__ import annotations

import importlib.util
import json

from benchmarks import strategies


def test_strategies_bench_smoke(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert strategies.main(["--smoke", "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    rows = res["rows"]
    assert res["env"]["cpu"]["model"] and res["env"]["device"]
    kernels = {r["case"]["kernel"] for r in rows}
    expected = {"kcenter", "badge", "kmeans", "bald", "batchbald"}
    has_baal = importlib.util.find_spec("baal") is not None
    assert kernels == expected | ({"baal_batchbald"} if has_baal else set())
    for r in rows:
        assert "error" not in r, r
        assert r["seconds"] > 0 and r["peak_extra_mb"] >= 0
    if has_baal:  # the same MC probabilities: both begin with BALD's top row
        (baal,) = [r for r in rows if r["case"]["kernel"] == "baal_batchbald"]
        agree = baal["agreement"]
        assert agree["first_pick_equal"] and 1 <= agree["common"] <= baal["case"]["k"]
    text = capsys.readouterr().out
    assert "jax " in text and "peak extra MB" in text and "matrix units:" in text


def test_probe_cases_and_table():
    """The probe compares like with like: one MC input size, batl_jax at two keys and more
    samples, baal at two seeds and more draws; its table counts shared picks as sets."""
    cases = strategies.probe_cases()
    assert {(c["n"], c["c"], c["k"], c["mc"]) for c in cases} == {(500, 5, 7, 20)}
    names = [strategies._name(c) for c in cases]
    assert len(set(names)) == len(names)  # every run is told apart in the table
    assert any(c.get("samples", 0) > 1000 for c in cases if c["kernel"] == "batchbald")
    assert any(c.get("draws", 0) > 500 for c in cases if c["kernel"] == "baal_batchbald")
    rows = [
        dict(name="a", picks=[1, 2, 3]),
        dict(name="b", picks=[3, 2, 9]),
        dict(name="c", error="timeout"),
    ]
    lines = strategies.probe_table(rows).splitlines()
    assert len(lines) == 3  # a header and the two runs that finished
    assert lines[1].split()[1:3] == ["3", "2"] and lines[2].split()[1:3] == ["2", "3"]
    assert lines[2].endswith("[2, 3, 9]")
