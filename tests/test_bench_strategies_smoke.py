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
