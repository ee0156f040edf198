"""``python -m benchmarks attention``: whole-batch attention against row chunks, on CPU.

batl_jax's inference attention runs a batch a few rows at a time on CPU
(:mod:`batl_jax.model.attention`): XLA:CPU fuses a batch's attention into one YNNPACK
fusion over the whole ``(B, heads, L, L)`` score tensor, which this suite shows to be
slower than the same arithmetic by chunks. Two measurements, side by side in this
process, for each length in ``--lengths`` and each ``--dtypes`` value:

* **the attention alone**: softmax(q·kᵀ/√d + mask)·v on seeded q, k, v of shape
  ``(--batch, L, heads, head dim)`` (a fifth of the keys masked as padding), the whole
  batch at once (``attention.attend``) against chunks of each ``--rows`` value
  (``attention.chunked``, whatever the dtype and length); milliseconds per call and
  whether each chunking gives the whole batch's values bit for bit;
* **the encoder forward** (``--model``, MiniLM by default): batl_jax's jitted classifier
  forward on ``--batch`` rows of L tokens with the model's attention as shipped
  (``attention.attention``: float32 batches of ``attention.MIN_LENGTH`` tokens or more
  in ``attention.CPU_ROWS``-row chunks) against the same model set to the whole batch
  (``attention_rows = 0``); sentences per second and whether the outputs are equal.

Times are medians of ``--reps`` interleaved calls after a warm-up (compilation).
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from benchmarks import inputs, machine, measure, report


def _parse(argv):
    p = argparse.ArgumentParser(
        prog="python -m benchmarks attention",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--lengths", default="24,48,96,128", help="padded lengths L")
    p.add_argument("--rows", default="2,4,8,16", help="rows per chunk to try")
    p.add_argument("--batch", type=int, default=64, help="rows per batch (the scoring batch)")
    p.add_argument("--heads", type=int, default=12, help="heads (MiniLM: 12)")
    p.add_argument("--head-dim", type=int, default=32, help="head width (MiniLM: 32)")
    inputs.add_dtypes_flag(p)
    p.add_argument("--model", default="", help="minilm (default) | tiny | bert-base | DIR")
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--smoke", action="store_true", help="tiny sizes (CI)")
    p.add_argument("--json", help="write every figure to this JSON file")
    args = p.parse_args(argv)
    if args.smoke:
        args.lengths, args.rows, args.batch, args.heads, args.head_dim = "8", "4", 16, 2, 8
        args.reps = 1
    return args


def attention_alone(args, length: int, dtype: str) -> dict:
    """Milliseconds per call of whole-batch and chunked attention, and bit equality."""
    import jax
    import jax.numpy as jnp

    from batl_jax.model import attention

    rng = np.random.default_rng(length)
    shape = (args.batch, length, args.heads, args.head_dim)
    dt = jnp.dtype(dtype)
    q, k, v = (jnp.asarray(rng.standard_normal(shape), dt) for _ in range(3))
    pad = rng.random((args.batch, 1, 1, length)) < 0.2
    pad[..., 0] = False  # every row keeps a key
    bias = jnp.asarray(np.where(pad, np.finfo(np.float32).min, 0.0), jnp.float32)
    fns = {"whole": jax.jit(lambda *a: attention.attend(*a, dtype=dt))}
    for r in inputs.parse_ints(args.rows):
        fns[f"rows {r}"] = jax.jit(lambda *a, r=r: attention.chunked(*a, dtype=dt, rows=r))
    calls = {name: (lambda f=f: f(q, k, v, bias).block_until_ready()) for name, f in fns.items()}
    times, _, last = measure.interleaved(calls, args.reps)
    ref = np.asarray(last["whole"])
    return {
        name: {
            "ms": 1e3 * measure.median(times[name]),
            "times": times[name],
            "bit_equal": bool(np.array_equal(np.asarray(last[name]), ref)),
        }
        for name in fns
    }


def encoder_forward(args, model_path: str, length: int, dtype: str) -> dict:
    """Sentences/s of the classifier forward with chunked and whole-batch attention."""
    from batl_jax import data, sharding, train
    from batl_jax.model import attention
    from batl_jax.model.factory import ModelFactory

    factory = ModelFactory(
        model_path, 4, pooling="mean", dropout=0.1, embed_dim=0, normalize=False, dtype=dtype
    )
    rng = np.random.default_rng(length)
    lengths = rng.integers(max(2, length // 2), length + 1, args.batch)
    ids = [[101] + rng.integers(1000, 20000, n - 2).tolist() + [102] for n in lengths]
    enc = data.encode_ids(ids, length, 0)
    rows = np.arange(args.batch)
    calls = {}
    for name, chunk in (("chunked", attention.CPU_ROWS), ("whole", 0)):
        model = factory.classifier(0, with_encoder=True)
        for layer in model.encoder.layers:
            layer.attention.attention_rows = chunk
        graphdef, params, rest = train.split_model(model)
        steps = train.Steps(graphdef, sharding.make_mesh(), train.LossConfig(), 0.0)

        def call(steps=steps, params=params, rest=rest):
            batches = data.scoring_batches(enc, rows, args.batch, (length,))
            out = train.predict(steps, params, rest, batches, 1, args.batch, ("sentence",))
            return np.asarray(out["sentence"], np.float32)

        calls[name] = call
    times, _, last = measure.interleaved(calls, args.reps)
    return {
        name: {"sentences_per_s": args.batch / measure.median(times[name]), "times": times[name]}
        for name in calls
    } | {
        "shipped_chunks": attention.pays(dtype, length, length),
        "bit_equal": bool(np.array_equal(last["chunked"], last["whole"])),
        "max_abs_diff": float(np.abs(last["chunked"] - last["whole"]).max()),
    }


def run(args) -> dict:
    from batl_jax.model import attention

    info = machine.env_info()
    report.print_header(info)
    model_path, model_label = inputs.resolve_model(args.model, args.smoke)
    print(
        f"attention: batch {args.batch}, {args.heads} heads of {args.head_dim}; encoder "
        f"forward: {model_label}; medians of {args.reps} after a warm-up"
    )
    cases = []
    for dtype in inputs.parse_dtypes(args.dtypes):
        for length in inputs.parse_ints(args.lengths):
            alone = attention_alone(args, length, dtype)
            fwd = encoder_forward(args, model_path, length, dtype)
            cases.append({"dtype": dtype, "length": length, "attention": alone, "forward": fwd})
            print(f"  {dtype} L={length}: done", flush=True)
    names = list(cases[0]["attention"])
    rows = []
    for c in cases:
        a, f = c["attention"], c["forward"]
        whole = a["whole"]["ms"]
        cells = [c["dtype"], c["length"], report.fmt(whole, ".1f")]
        for n in names[1:]:
            mark = "" if a[n]["bit_equal"] else " (differs)"
            cells.append(f"{a[n]['ms']:.1f} ({whole / a[n]['ms']:.2f}x){mark}")
        sp = f["chunked"]["sentences_per_s"] / f["whole"]["sentences_per_s"]
        cells += [
            report.fmt(f["whole"]["sentences_per_s"], ".0f"),
            report.fmt(f["chunked"]["sentences_per_s"], ".0f"),
            (f"{sp:.2f}x" if f["shipped_chunks"] else f"{sp:.2f}x (both whole)")
            + ("" if f["bit_equal"] else f" (differs by {f['max_abs_diff']:.1g})"),
        ]
        rows.append(cells)
    headers = ["dtype", "L", "whole ms"] + [f"{n} ms" for n in names[1:]]
    headers += ["fwd whole sent/s", "fwd chunked sent/s", "fwd speedup"]
    print()
    print(report.table(headers, rows))
    print(
        "attention alone: ms per call of attention.chunked (speedup over the whole batch); "
        "'(differs)': not the whole batch's values bit for bit. fwd: the encoder forward, "
        f"attention as shipped (float32 in {attention.CPU_ROWS}-row chunks) against the whole "
        "batch; '(both whole)': the shipped form takes the whole batch there too (bfloat16, "
        f"or under {attention.MIN_LENGTH} tokens), so the ratio is the machine's noise"
    )
    return {"suite": "attention", "env": info, "cases": cases, "settings": vars(args)}


def main(argv: list[str]) -> int:
    return report.run_suite(argv, _parse, run)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
