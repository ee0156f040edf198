"""The benchmark suites run end to end at tiny sizes (figures are not checked)."""

import json


def test_mining_smoke(tmp_path, capsys):
    from batl_jax.bench import mining

    out = tmp_path / "mining.json"
    assert mining.main(["--smoke", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "dense jnp.dot" in text and "global" in text and "minibatch" in text
    rows = json.loads(out.read_text())["rows"]
    assert {r["kind"] for r in rows} == {"global", "minibatch", "slice"}
    assert all(r["seconds"] > 0 and r["gflops"] > 0 for r in rows)
