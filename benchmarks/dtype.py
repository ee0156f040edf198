"""``python -m benchmarks dtype``: does bfloat16 pay on this CPU, in JAX and in PyTorch?

oneDNN (PyTorch) runs bfloat16 matmuls on AMX tiles or AVX512-BF16 where the CPU has
them; whether XLA:CPU in the installed jaxlib does is what this suite finds out. For
each XLA flag set in ``--flag-sets`` a fresh interpreter (XLA reads ``XLA_FLAGS`` once,
at start-up) measures, side by side:

* a square matmul (``--size``, default 2048) in float32, in bfloat16 with a bfloat16
  result (``jnp.dot``), in bfloat16 with a float32 result (``preferred_element_type``,
  the form batl_jax's encoder uses), and float32 under
  ``jax.default_matmul_precision("bfloat16")``; what the compiled HLO of either
  bfloat16 dot runs as (a YNNPACK/XNNPACK fusion, a oneDNN custom call, or XLA's own
  emitter) and in which element type (``f32``: XLA converted the bfloat16 inputs up
  first; ``bf16``: the dot takes them as they are);
* MiniLM's forward (batl_jax's jitted classifier forward) on batches of 64 rows of 64
  tokens, ``model.dtype`` float32 and bfloat16, and the largest ``|Δ logits|`` between
  them.

This process then measures PyTorch's side: the same matmul and the same forward
(transformers' BERT, float32 and ``model.to(torch.bfloat16)``). A flag set that XLA
does not know ends its child with an error, reported as such. Medians of ``--reps``
after a warm-up; one process per flag set, run one after another.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

import numpy as np

from benchmarks import flops, inputs, machine, measure, report

DEFAULT_FLAG_SETS = (
    "",
    "--xla_cpu_use_onednn=true",
    "--xla_cpu_experimental_onednn_custom_call=true",
    "--xla_cpu_use_xnnpack=true",
    "--xla_cpu_use_onednn=true --xla_cpu_experimental_onednn_fusion_type=dot",
)
FORWARD_BATCH, FORWARD_LEN = 64, 64


def _parse(argv):
    p = argparse.ArgumentParser(
        prog="python -m benchmarks dtype",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--size", type=int, default=flops.MATMUL_SIZE, help="matmul size")
    p.add_argument("--batches", type=int, default=4, help="forward batches per timed call")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--model", default="", help="minilm (default) | tiny | DIR")
    p.add_argument(
        "--flag-sets",
        default="|".join(DEFAULT_FLAG_SETS),
        help="XLA_FLAGS values separated by '|' (an empty one = the defaults)",
    )
    p.add_argument("--smoke", action="store_true", help="tiny model and matmul (CI)")
    p.add_argument("--json", help="write every figure to this JSON file")
    p.add_argument("--case", help=argparse.SUPPRESS)  # internal: one flag set, in a child
    args = p.parse_args(argv)
    if args.smoke:
        args.size, args.batches, args.model, args.flag_sets = 128, 1, "tiny", ""
    return args


# ----------------------------------------------------------------------------- child (JAX)


def _dot_backend(size: int, out: str) -> str:
    """What the compiled bfloat16 dot with an ``out`` result runs as: the library fusion
    or custom call that holds it (``ynn``/``xnn``: YNNPACK/XNNPACK, ``onednn``; ``xla``:
    XLA's own emitter) and the element type it multiplies in (``f32`` when XLA upcasts)."""
    import re

    import jax
    import jax.numpy as jnp

    a = jnp.zeros((size, size), jnp.bfloat16)
    dot = jax.jit(lambda x, y: jnp.matmul(x, y, preferred_element_type=jnp.dtype(out)))
    text = dot.lower(a, a).compile().as_text()
    libs = set(re.findall(r"%(ynn|xnn|onednn)\w*", text, flags=re.I))
    libs |= {t for t in re.findall(r'custom_call_target="([^"]+)"', text)}
    # An upcast shows as a convert to f32 (of a bfloat16 operand: nothing else is f32).
    compute = "f32" if re.search(r"= f32\[[^\]]*\]\S* convert\(", text) else "bf16"
    return f"{'+'.join(sorted(libs)) or 'xla'} {compute}"


def _jax_forward(model_path: str, dtype: str, batches: int, reps: int):
    """Seconds per call of batl_jax's forward over ``batches`` batches, and the logits."""
    import jax

    from batl_jax import data, sharding, train
    from batl_jax.model.factory import ModelFactory

    factory = ModelFactory(
        model_path, 4, pooling="cls", dropout=0.1, embed_dim=0, normalize=False, dtype=dtype
    )
    graphdef, params, rest = train.split_model(factory.classifier(0, with_encoder=True))
    steps = train.Steps(graphdef, sharding.make_mesh(), train.LossConfig(), 0.0)
    n = FORWARD_BATCH * batches
    rng = np.random.default_rng(0)
    ids = [[101] + rng.integers(1000, 20000, FORWARD_LEN - 2).tolist() + [102] for _ in range(n)]
    enc = data.encode_ids(ids, FORWARD_LEN, 0)
    rows = np.arange(n)

    def call():
        out = train.predict(
            steps,
            params,
            rest,
            data.scoring_batches(enc, rows, FORWARD_BATCH, (FORWARD_LEN,)),
            batches,
            n,
            ("logits",),
        )
        return out["logits"]

    times = measure.timed(call, reps)
    jax.effects_barrier()
    return measure.median(times), call()


def run_case(spec: dict) -> dict:
    """One flag set's JAX figures (this process was started with its XLA_FLAGS)."""
    import jax

    size, reps = spec["size"], spec["reps"]
    out: dict = {"xla_flags": spec["flags"], "device": machine.device_name()}
    rates = flops.matmul_rates(size, max(reps, 3))
    rates["jax bfloat16 -> bfloat16"] = flops._jax_rate(size, "bfloat16", reps, out="bfloat16")
    with jax.default_matmul_precision("bfloat16"):
        rates["jax float32 at precision=bfloat16"] = flops._jax_rate(size, "float32", reps)
    out["matmul_gflops"] = rates
    out["bf16_dot_calls"] = _dot_backend(size, "bfloat16")
    out["bf16_f32_dot_calls"] = _dot_backend(size, "float32")
    fwd, logits = {}, {}
    for dt in ("float32", "bfloat16"):
        t, logits[dt] = _jax_forward(spec["model"], dt, spec["batches"], reps)
        fwd[dt] = FORWARD_BATCH * spec["batches"] / t
    out["forward_sentences_per_s"] = fwd
    out["bf16_max_abs_diff_logits"] = float(np.abs(logits["float32"] - logits["bfloat16"]).max())
    return out


def _spawn(spec: dict) -> dict:
    env = measure.child_env()
    env["XLA_FLAGS"] = spec["flags"]
    cmd = measure.module_command("benchmarks.dtype", "--case", json.dumps(spec))
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode or not lines:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["?"]
        return {"xla_flags": spec["flags"], "error": tail[0][:200]}
    return json.loads(lines[-1][len("RESULT ") :])


# ----------------------------------------------------------------------------- PyTorch side


def _torch_forward(torch, model_path: str, dtype: str, batches: int, reps: int) -> float:
    import transformers

    with report.quiet_logs():
        model = transformers.AutoModel.from_pretrained(model_path, use_safetensors=True).eval()
    if dtype == "bfloat16":
        model = model.to(torch.bfloat16)
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1000, 20000, (FORWARD_BATCH, FORWARD_LEN), generator=g)
    mask = torch.ones_like(ids)

    def call():
        with torch.inference_mode():
            for _ in range(batches):
                model(input_ids=ids, attention_mask=mask)

    return FORWARD_BATCH * batches / measure.median(measure.timed(call, reps))


def torch_side(args, model_path: str) -> dict | None:
    torch = machine.peer("torch")
    if torch is None:
        return None
    return {
        "matmul_gflops": {
            f"torch {dt}": flops._torch_rate(torch, args.size, dt, max(args.reps, 3))
            for dt in ("float32", "bfloat16")
        },
        "forward_sentences_per_s": {
            dt: _torch_forward(torch, model_path, dt, args.batches, args.reps)
            for dt in ("float32", "bfloat16")
        },
    }


# ----------------------------------------------------------------------------- suite


def _print(cases: list[dict], torch_row: dict | None, args) -> None:
    rows = []
    for c in cases:
        if "error" in c:
            rows.append([c["xla_flags"] or "(defaults)", "error: " + c["error"]] + [""] * 7)
            continue
        m, f = c["matmul_gflops"], c["forward_sentences_per_s"]
        rows.append(
            [
                c["xla_flags"] or "(defaults)",
                report.fmt(m["jax float32"], ".0f"),
                report.fmt(m["jax bfloat16 -> bfloat16"], ".0f"),
                report.fmt(m["jax bfloat16"], ".0f"),
                report.fmt(m["jax float32 at precision=bfloat16"], ".0f"),
                c["bf16_dot_calls"],
                c["bf16_f32_dot_calls"],
                report.fmt(f["float32"], ".1f"),
                report.fmt(f["bfloat16"], ".1f"),
            ]
        )
    if torch_row is not None:
        m, f = torch_row["matmul_gflops"], torch_row["forward_sentences_per_s"]
        rows.append(
            [
                "PyTorch (oneDNN)",
                report.fmt(m["torch float32"], ".0f"),
                report.fmt(m["torch bfloat16"], ".0f"),
                "",
                "",
                "onednn",
                "",
                report.fmt(f["float32"], ".1f"),
                report.fmt(f["bfloat16"], ".1f"),
            ]
        )
    headers = ["XLA_FLAGS", "f32 GFLOP/s", "bf16 GFLOP/s", "bf16->f32 GFLOP/s"]
    headers += ["f32@bf16 prec.", "bf16 dot", "bf16->f32 dot"]
    headers += ["fwd f32 sent/s", "fwd bf16 sent/s"]
    print()
    print(report.table(headers, rows))
    print(
        f"matmul {args.size}^3; forward: batches of {FORWARD_BATCH} x {FORWARD_LEN} tokens, "
        f"{args.batches} per call; medians of {args.reps} after a warm-up"
    )
    for c in cases:
        if "bf16_max_abs_diff_logits" in c:
            print(
                f"max |logits f32 - bf16| ({c['xla_flags'] or 'defaults'}): "
                f"{c['bf16_max_abs_diff_logits']:.3g}"
            )


def run(args) -> dict:
    info = machine.env_info(device="(children)")
    report.print_header(info)
    model_path, model_label = inputs.resolve_model(args.model, args.smoke)
    print(f"dtype: {model_label}; flag sets: {args.flag_sets.split('|')}")
    cases = []
    for flags in args.flag_sets.split("|"):
        spec = dict(
            flags=flags, size=args.size, reps=args.reps, model=model_path, batches=args.batches
        )
        t = time.perf_counter()
        cases.append(_spawn(spec))
        print(f"  flag set {flags or '(defaults)'}: {time.perf_counter() - t:.0f} s", flush=True)
    torch_row = torch_side(args, model_path)
    _print(cases, torch_row, args)
    return {"suite": "dtype", "env": info, "cases": cases, "torch": torch_row}


def main(argv: list[str]) -> int:
    args = _parse(argv)
    if args.case:
        print("RESULT " + json.dumps(run_case(json.loads(args.case))), flush=True)
        return 0
    return report.run_suite(argv, _parse, run)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
