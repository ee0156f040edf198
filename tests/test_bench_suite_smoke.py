"""The side-by-side bench suites (encoder, round, peers, all) run end to end at --smoke sizes.

Figures are not checked, but what the suites claim about equal work is: both sides of
``encoder`` compute the same s(x) from the same weights, and k-center's picks agree
with the peers' where the algorithm is deterministic. A missing peer library must be
a printed note, never a failure.
"""

from __future__ import annotations

import importlib.util
import json

import pytest

from benchmarks import __main__ as bench_main
from benchmarks import inputs, machine

HAS_TORCH = importlib.util.find_spec("torch") is not None
HAS_SMALL_TEXT = importlib.util.find_spec("small_text") is not None
HAS_SKACTIVEML = importlib.util.find_spec("skactiveml") is not None


def test_encoder_smoke(tmp_path, capsys):
    out = tmp_path / "encoder.json"
    variants = "longest,max_len,sorted,sorted:bfloat16"
    argv = ["encoder", "--smoke", "--dtypes", "float32,bfloat16", "--variants", variants]
    assert bench_main.main(argv + ["--json", str(out)]) == 0
    res = json.loads(out.read_text())
    rows = {r["impl"]: r for r in res["rows"]}
    assert rows["batl_jax"]["seconds"] > 0 and len(rows["batl_jax"]["times"]) >= 3
    # model.dtype=bfloat16: the same batches, a bfloat16 rounding away from float32.
    bf = rows["batl_jax bfloat16"]
    assert bf["padded_tokens"] == rows["batl_jax"]["padded_tokens"]
    assert 0 < bf["max_abs_diff_sentence"] < 0.25
    assert res["env"]["cores"]["cpu_count"] >= 1 and res["env"]["versions"]["jax"]
    assert res["env"]["cpu"]["model"] and res["env"]["cpu"]["matrix_features"]
    if HAS_TORCH:
        assert {"torch longest", "torch max_len", "torch sorted"} <= set(rows)
        for name in ("torch longest", "torch max_len", "torch sorted"):
            assert rows[name]["max_abs_diff_sentence"] < 1e-4, name  # same weights, same s(x)
            assert rows[name]["speedup_of_batl_jax"] > 0
        assert 0 < rows["torch sorted:bfloat16"]["max_abs_diff_sentence"] < 0.25
    # How close to the limit: every side's forward FLOP rate against the matmul rates.
    assert {"jax float32", "jax bfloat16"} <= set(res["matmul_gflops"])
    for r in rows.values():
        u = r["utilisation"]
        assert u["padded"]["flops"] >= u["real"]["flops"] > 0
        assert set(u["padded"]["share"]) == set(res["matmul_gflops"])
    text = capsys.readouterr().out
    assert "batl_jax speedup" in text and "padded tokens" in text and "matrix units:" in text
    assert "forward batl_jax (padded tokens)" in text and "% of jax float32" in text
    assert "encoder: batl_jax bfloat16 speedup vs batl_jax:" in text


@pytest.mark.skipif(inputs.data_dir() is None, reason="needs the AG News data dir")
def test_round_smoke(tmp_path, capsys):
    out = tmp_path / "round.json"
    argv = ["round", "--smoke", "--dtypes", "float32,bfloat16", "--json", str(out)]
    assert bench_main.main(argv) == 0
    res = json.loads(out.read_text())
    med = res["median_s"]["batl_jax"]
    assert med["train"] > 0 and med["round (both)"] >= med["train"]
    assert 0.0 <= res["test_accuracy"]["batl_jax"] <= 1.0
    assert res["median_s"]["batl_jax bfloat16"]["train"] > 0
    assert (
        "round: batl_jax bfloat16 speedup over batl_jax, round with both strategies"
        in (res["ratios"])
    )
    assert len(res["picks"]["batl_jax"]["badge"]) == res["settings"]["k"]
    if HAS_SMALL_TEXT and HAS_TORCH:
        assert "small-text" in res["median_s"] and "small-text" in res["test_accuracy"]
        assert res["ratios"]
    util = res["utilisation"]
    assert {"train batl_jax", "pool pass batl_jax"} <= set(util)
    for figures in util.values():
        assert figures["padded"]["flops"] >= figures["real"]["flops"] > 0
        assert figures["padded"]["share"]["jax float32"] > 0
    assert res["settings"]["sampler"] == "bucketed"
    text = capsys.readouterr().out
    assert "round with both strategies" in text and "train batl_jax (padded tokens)" in text
    assert "batl_jax bfloat16: picks in common with batl_jax's round" in text


def test_peers_smoke(tmp_path, capsys):
    out = tmp_path / "peers.json"
    assert bench_main.main(["peers", "--smoke", "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    kinds = {c["kind"]: {r["impl"]: r for r in c["rows"]} for c in res["cases"]}
    assert set(kinds) == {"kcenter", "badge"}
    for rows in kinds.values():
        assert rows["batl_jax"]["seconds"] > 0
    # Greedy k-center is deterministic: independent implementations pick the same rows.
    for peer in ("small-text", "scikit-activeml"):
        if peer in kinds["kcenter"]:
            assert kinds["kcenter"][peer]["agreement"]["same_order"], peer
    # BADGE's first pick is the largest gradient norm in batl_jax and scikit-activeml.
    if HAS_SKACTIVEML:
        assert kinds["badge"]["scikit-activeml"]["agreement"]["first_pick_same"]
    assert "agreement with batl_jax" in capsys.readouterr().out


def test_all_runs_suites_and_prints_ratios(tmp_path, capsys):
    out = tmp_path / "all.json"
    assert bench_main.main(["all", "--smoke", "--only", "peers", "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    assert list(res["suites"]) == ["peers"] and not res["errors"]
    text = capsys.readouterr().out
    assert "Summary: every ratio" in text
    if HAS_SMALL_TEXT or HAS_SKACTIVEML:
        assert res["ratios"] and "batl_jax speedup" in text


def test_missing_peer_is_a_note(capsys):
    assert machine.peer("no_such_peer_library") is None
    assert "not available" in capsys.readouterr().out


def test_gpu_section_plan_and_run(tmp_path, monkeypatch, capsys):
    """The GPU section (never reached on a CPU-only machine) is planned and runs."""
    from benchmarks import all as bench_all

    quick = bench_all._gpu_plan(bench_all._parse(["--quick"]))
    assert [p[1] for p in quick] == ["encoder", "round", "mining"]
    assert quick[0][2] == ["--model", "bert-base", "--quick"]
    assert quick[2][2] == ["--sizes", "100000", "--slice-n", "500000", "--slice", "16384"]
    full = bench_all._gpu_plan(bench_all._parse([]))
    assert full[2][2] == ["--sizes", "100000,500000", "--slice", "0"]

    monkeypatch.setattr(machine, "has_gpu", lambda: True)
    out = tmp_path / "all.json"
    assert bench_main.main(["all", "--smoke", "--only", "mining", "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res["gpu_section"] and not res["errors"]
    assert list(res["suites"]) == ["mining", "gpu mining (500k pool)"]
    assert any(name.startswith("[gpu mining (500k pool)]") for name, _ in res["ratios"])


CPUINFO = """processor\t: 0
model name\t: Intel(R) Xeon(R) Platinum 8480+
flags\t\t: fpu sse2 avx2 avx512f avx512_bf16 avx512_fp16 amx_bf16 amx_tile amx_int8
processor\t: 1
model name\t: Intel(R) Xeon(R) Platinum 8480+
flags\t\t: fpu sse2 avx2 avx512f avx512_bf16 avx512_fp16 amx_bf16 amx_tile amx_int8
"""


def test_cpu_facts_name_the_matrix_units():
    amx = machine.cpu_facts(CPUINFO)
    assert amx["model"] == "Intel(R) Xeon(R) Platinum 8480+"
    assert amx["matrix_features"] == (
        "avx512f, avx512_bf16, avx512_fp16, amx_bf16, amx_tile, amx_int8"
    )
    plain = machine.cpu_facts("model name\t: AMD EPYC 7B13\nflags\t\t: fpu sse2 avx2 fma\n")
    assert plain == {"model": "AMD EPYC 7B13", "matrix_features": "none"}
    # No flag list at all (not Linux): unknown, not "none".
    assert machine.cpu_facts("")["matrix_features"] == "unknown"


def test_dtype_smoke_finds_the_bfloat16_dot(tmp_path, capsys):
    out = tmp_path / "dtype.json"
    assert bench_main.main(["dtype", "--smoke", "--json", str(out)]) == 0
    (case,) = json.loads(out.read_text())["cases"]
    # A bfloat16 dot with a float32 result (the encoder's form) multiplies in bfloat16;
    # asked for a bfloat16 result, XLA:CPU widens the operands to float32 first.
    assert case["bf16_f32_dot_calls"].endswith(" bf16")
    assert case["bf16_dot_calls"].endswith(" f32")
    assert case["forward_sentences_per_s"]["bfloat16"] > 0
    assert 0 < case["bf16_max_abs_diff_logits"] < 0.1
    assert "bf16->f32 dot" in capsys.readouterr().out


def test_attention_smoke(tmp_path, capsys):
    out = tmp_path / "attention.json"
    argv = ["attention", "--smoke", "--dtypes", "float32,bfloat16", "--json", str(out)]
    assert bench_main.main(argv) == 0
    cases = json.loads(out.read_text())["cases"]
    assert [(c["dtype"], c["length"]) for c in cases] == [("float32", 8), ("bfloat16", 8)]
    for c in cases:
        assert set(c["attention"]) == {"whole", "rows 4"}
        assert all(r["ms"] > 0 for r in c["attention"].values())
        f = c["forward"]
        assert f["chunked"]["sentences_per_s"] > 0 and f["whole"]["sentences_per_s"] > 0
        # The same arithmetic by chunks: equal, or a rounding away.
        assert f["max_abs_diff"] < (1e-5 if c["dtype"] == "float32" else 0.05)
    assert "fwd speedup" in capsys.readouterr().out
