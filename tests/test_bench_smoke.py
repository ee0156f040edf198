"""The benchmark suites run end to end at tiny sizes (figures are not checked)."""

import json


def test_mining_smoke(tmp_path, capsys):
    from benchmarks import mining

    out = tmp_path / "mining.json"
    assert mining.main(["--smoke", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "dense jnp.dot" in text and "global" in text and "minibatch" in text
    res = json.loads(out.read_text())
    rows = res["rows"]
    assert {r["kind"] for r in rows} == {"global", "minibatch", "slice"}
    assert res["env"]["cpu"]["matrix_features"] and "matrix units:" in text
    assert all(r["seconds"] > 0 and r["gflops"] > 0 for r in rows)
