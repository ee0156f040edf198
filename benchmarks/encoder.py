"""``python -m benchmarks encoder``: pool scoring, batl_jax vs transformers' PyTorch.

The same AG News pool (ALPS' 10k training sample; ``--quick`` a seeded 384-row
subset) is tokenised once (no padding, truncation at ``--max-len``; not timed) and
scored by the same MiniLM weights, at the same batch size, into the same outputs
(s(x) = the [CLS] state, h_C = tanh(W s + b), logits; the classifier head is copied
from batl_jax into the PyTorch model so both compute the same function):

* ``batl_jax``: the round's pool pass (``data.scoring_batches`` into
  ``train.predict``): length buckets (``--buckets``, default the config default),
  jitted forward, one compiled shape per bucket and a smaller one for a bucket's
  last batch (``tail_multiple``: no empty rows);
* ``torch longest``: transformers' ``BertForSequenceClassification`` parts, eager,
  ``torch.inference_mode``, rows in pool order, each batch padded to its longest row
  (what ``DataCollatorWithPadding`` does);
* ``torch max_len``: every batch padded to ``--max-len`` (small-text's and the
  ALPS/CAL code's layout);
* ``torch sorted``: rows sorted by length, then padded to the longest in the batch
  (the PyTorch analogue of buckets: shows how much of the gap is padding).

``--dtypes`` gives batl_jax's ``model.dtype`` values (default ``float32``; a second one
adds a ``batl_jax <dtype>`` row, timed in the same run); a variant written
``sorted:bfloat16`` runs PyTorch's model cast to bfloat16 (``model.to(torch.bfloat16)``,
oneDNN's bfloat16 kernels).

Each side is warmed up (batl_jax: one whole pass, which compiles every shape it will
see, reported separately; PyTorch: one batch), then timed ``--reps`` times,
interleaved; medians. Figures:
sentences/s, ratio to batl_jax, padded tokens (rows x padded length summed over
batches, padding rows of a last batch included) and the time per padded token as a
ratio (how fast each side does the same unit of work). The outputs are compared
(max |Δ s(x)|) to show both sides did the same work. Last, the encoder's achieved
FLOP rate (:mod:`benchmarks.flops`: over the padded batches and over the real lengths)
as a share of a 2048² dense matmul's rate measured in this process (float32 and
bfloat16, JAX and PyTorch): how close each side came to the machine's limit.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from batl_jax import data
from benchmarks import flops, inputs, machine, measure, report


def _parse(argv):
    p = argparse.ArgumentParser(
        prog="python -m benchmarks encoder",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--n", type=int, default=0, help="pool sentences (0: all 10k)")
    p.add_argument("--batch", type=int, default=64, help="scoring batch size (both sides)")
    p.add_argument("--max-len", type=int, default=128)
    inputs.add_buckets_flag(p)
    p.add_argument("--reps", type=int, default=3, help="timed repetitions per side (>= 3)")
    p.add_argument("--model", default="", help="minilm (default) | bert-base | tiny | DIR")
    p.add_argument(
        "--variants",
        default="longest,max_len,sorted",
        help="torch variants (layout[:dtype], e.g. sorted:bfloat16)",
    )
    inputs.add_dtypes_flag(p)
    p.add_argument("--quick", action="store_true", help="384 sentences")
    p.add_argument("--smoke", action="store_true", help="tiny model, 48 sentences (CI)")
    p.add_argument("--json", help="write every figure to this JSON file")
    args = p.parse_args(argv)
    if args.quick and not args.n:
        args.n = 384
    if args.smoke:
        args.n, args.batch, args.max_len, args.buckets = 48, 8, 32, "16,32"
    return args


# ----------------------------------------------------------------------------- batl_jax side

OUTPUTS = ("sentence", "hidden", "logits")


def head_weights(model) -> dict:
    """The classifier head of a batl_jax classifier as NumPy ``(kernel (in, out), bias)``."""
    return {
        "dense": (np.asarray(model.head_dense.kernel[...]), np.asarray(model.head_dense.bias[...])),
        "out": (np.asarray(model.out.kernel[...]), np.asarray(model.out.bias[...])),
    }


class JaxScorer:
    """batl_jax's pool pass: the jitted forward over length buckets (``data.scoring_batches``,
    one compiled shape per bucket), every output by dataset row (``train.predict``)."""

    def __init__(
        self, model_path: str, enc, buckets, batch: int, num_labels: int, dtype: str = "float32"
    ):
        from batl_jax import sharding, train
        from batl_jax.model.factory import ModelFactory

        self.enc, self.buckets, self.batch = enc, buckets, batch
        self.factory = ModelFactory(
            model_path,
            num_labels,
            pooling="cls",
            dropout=0.1,
            embed_dim=0,
            normalize=False,
            dtype=dtype,
        )
        model = self.factory.classifier(0, with_encoder=True)
        self.head = head_weights(model)
        graphdef, self.params, self.rest = train.split_model(model)
        mesh = sharding.make_mesh()
        self.steps = train.Steps(graphdef, mesh, train.LossConfig(), 0.0)
        self.tail_multiple = sharding.num_shards(mesh)  # as the pool pass (FeaturePasses)

    def batches(self):
        rows = np.arange(len(self.enc))
        return data.scoring_batches(
            self.enc, rows, self.batch, self.buckets, tail_multiple=self.tail_multiple
        )

    def shapes(self) -> list[tuple[int, int]]:
        """``(rows, padded length)`` of every batch (padding rows included)."""
        return [b.input_ids.shape for b in self.batches()]

    def __call__(self):
        from batl_jax import train

        rows = np.arange(len(self.enc))
        out = train.predict(
            self.steps,
            self.params,
            self.rest,
            self.batches(),
            data.num_scoring_batches(self.enc, rows, self.batch, self.buckets),
            len(self.enc),
            OUTPUTS,
        )
        return {k: out[k] for k in OUTPUTS}


# ----------------------------------------------------------------------------- torch side


def load_torch_classifier(
    model_path: str, num_labels: int, head: dict | None, device: str, dtype: str = "float32"
):
    """transformers' BertForSequenceClassification with batl_jax's head copied in, cast
    to ``dtype`` after the copy."""
    import torch
    import transformers

    with report.quiet_logs():
        model = transformers.AutoModelForSequenceClassification.from_pretrained(
            model_path, num_labels=num_labels, trust_remote_code=False, use_safetensors=True
        )
    if head is not None:
        copy_head(model, head)
    return model.to(device=device, dtype=getattr(torch, dtype)).eval()


def copy_head(model, head: dict) -> None:
    """batl_jax's head (kernel (in, out)) into HF's pooler.dense and classifier (out, in)."""
    import torch

    with torch.no_grad():
        for mod, (k, b) in (
            (model.bert.pooler.dense, head["dense"]),
            (model.classifier, head["out"]),
        ):
            mod.weight.copy_(torch.from_numpy(np.array(k.T, np.float32)))
            mod.bias.copy_(torch.from_numpy(np.array(b, np.float32)))


def variant_parts(variant: str) -> tuple[str, str]:
    """``(layout, dtype)`` of a torch variant written ``layout[:dtype]``."""
    layout, _, dtype = variant.partition(":")
    return layout, dtype or "float32"


def torch_batches(enc, batch: int, variant: str, max_len: int):
    """``(rows, padded length)`` per batch for a torch variant (its layout part)."""
    variant = variant_parts(variant)[0]
    n = len(enc)
    order = np.argsort(enc.lengths, kind="stable") if variant == "sorted" else np.arange(n)
    out = []
    for s in range(0, n, batch):
        rows = order[s : s + batch]
        length = max_len if variant == "max_len" else int(enc.lengths[rows].max())
        out.append((rows, length))
    return out


class TorchScorer:
    def __init__(self, model, enc, batch: int, variant: str, max_len: int, device: str):
        self.model, self.enc, self.device = model, enc, device
        self.plan = torch_batches(enc, batch, variant, max_len)
        self.padded_tokens = int(sum(len(r) * length for r, length in self.plan))

    def warmup(self):
        """One batch (eager PyTorch compiles nothing; this starts its thread pool)."""
        plan, self.plan = self.plan, self.plan[:1]
        try:
            self()
        finally:
            self.plan = plan

    def __call__(self):
        import torch

        enc, n = self.enc, len(self.enc)
        h = self.model.config.hidden_size
        out = {
            "sentence": np.zeros((n, h), np.float32),
            "hidden": np.zeros((n, h), np.float32),
            "logits": np.zeros((n, self.model.config.num_labels), np.float32),
        }
        with torch.inference_mode():
            for rows, length in self.plan:
                ids = torch.from_numpy(enc.input_ids[rows, :length].astype(np.int64))
                mask = torch.from_numpy(
                    (np.arange(length)[None, :] < enc.lengths[rows][:, None]).astype(np.int64)
                )
                o = self.model.bert(
                    input_ids=ids.to(self.device), attention_mask=mask.to(self.device)
                )
                s = o.last_hidden_state[:, 0]
                hc = o.pooler_output
                logits = self.model.classifier(hc)
                out["sentence"][rows] = s.float().cpu().numpy()
                out["hidden"][rows] = hc.float().cpu().numpy()
                out["logits"][rows] = logits.float().cpu().numpy()
        return out


# ----------------------------------------------------------------------------- suite


def _sides(args, model_path: str, enc, buckets, notes: list[str]) -> tuple[dict, dict]:
    """The scorers to time, by name, and the ``(rows, padded length)`` of their batches."""
    fns, shapes = {}, {}
    for i, dt in enumerate(inputs.parse_dtypes(args.dtypes)):
        name = "batl_jax" if i == 0 else f"batl_jax {dt}"
        fns[name] = JaxScorer(model_path, enc, buckets, args.batch, num_labels=4, dtype=dt)
        shapes[name] = fns[name].shapes()
    torch = machine.peer("torch")
    variants = [v for v in args.variants.split(",") if v]
    device = machine.torch_device(torch, notes, "PyTorch rows") if torch is not None else None
    if device is None or not variants:
        return fns, shapes
    models: dict[str, object] = {}
    for v in variants:
        dt = variant_parts(v)[1]
        if dt not in models:
            models[dt] = load_torch_classifier(model_path, 4, fns["batl_jax"].head, device, dt)
        scorer = TorchScorer(models[dt], enc, args.batch, v, args.max_len, device)
        fns[f"torch {v}"] = scorer
        shapes[f"torch {v}"] = [(len(rows), length) for rows, length in scorer.plan]
    return fns, shapes


def _figures(name: str, times, warm, last, tokens, n: int, real_tokens: int) -> dict:
    """One side's row of the JSON: medians, rates, padding and agreement with batl_jax."""
    t, t_jax = measure.median(times[name]), measure.median(times["batl_jax"])
    r = {
        "impl": name,
        "seconds": t,
        "times": times[name],
        "warmup_s": warm[name],
        "sentences_per_s": n / t,
        "padded_tokens": tokens[name],
        "real_token_share": real_tokens / tokens[name],
        "padded_tokens_per_s": tokens[name] / t,
        "speedup_of_batl_jax": report.ratio(t, t_jax),
        "per_padded_token_ratio": report.ratio(t / tokens[name], t_jax / tokens["batl_jax"]),
    }
    if name != "batl_jax":
        for key in ("sentence", "logits"):
            r[f"max_abs_diff_{key}"] = float(np.abs(last[name][key] - last["batl_jax"][key]).max())
    return r


def _print_table(results: list[dict], buckets, notes: list[str]) -> None:
    rows = [
        [
            r["impl"],
            report.fmt(r["seconds"]),
            report.fmt(r["sentences_per_s"], ".1f"),
            report.fmt(r["speedup_of_batl_jax"], ".2f") + "x",
            f"{r['padded_tokens']:,}",
            report.fmt(100 * r["real_token_share"], ".0f") + "%",
            report.fmt(r["padded_tokens_per_s"] / 1e3, ".1f"),
            report.fmt(r["per_padded_token_ratio"], ".2f"),
            report.fmt(r.get("max_abs_diff_sentence"), ".1e"),
        ]
        for r in results
    ]
    headers = ["impl", "median s", "sent/s", "batl_jax speedup", "padded tokens", "real"]
    headers += ["k tok/s", "time/token vs batl_jax", "max|ds|"]
    print()
    print(report.table(headers, rows))
    jax_row = results[0]
    print(
        f"batl_jax warm-up: {jax_row['warmup_s']:.2f} s (one pass, compiling every shape of "
        f"{len(buckets)} buckets; compilation ~ {jax_row['warmup_s'] - jax_row['seconds']:.2f} "
        "s), paid once per process"
    )
    print(
        "batl_jax speedup = torch median s / batl_jax median s; time/token = (s per padded "
        "token) / (batl_jax's s per padded token): > 1 means slower per unit of work"
    )
    for label, rat in dtype_speedups(results):
        print(f"{label}: {rat:.2f}x")
    for note in notes:
        print("NOTE:", note)


def dtype_speedups(results: list[dict]) -> list[tuple[str, float]]:
    """Each extra ``batl_jax <dtype>`` row's speedup over the reference ``batl_jax`` row
    and over every torch row (their median seconds over its median seconds)."""
    out = []
    for r in results:
        if not r["impl"].startswith("batl_jax "):
            continue
        for other in results:
            if other is r or other["impl"].startswith("batl_jax "):
                continue
            out.append(
                (
                    f"encoder: {r['impl']} speedup vs {other['impl']}",
                    report.ratio(other["seconds"], r["seconds"]),
                )
            )
    return out


def run(args) -> dict:
    from batl_jax.model import hf_params

    info = machine.env_info()
    model_path, model_label = inputs.resolve_model(args.model, args.smoke)
    texts, _ = inputs.ag_news("train", args.n)
    enc = data.encode_texts(texts, hf_params.load_tokenizer(model_path), args.max_len)
    buckets = data.check_buckets(inputs.parse_buckets(args.buckets), args.max_len)
    n = len(enc)
    report.print_header(info)
    print(
        f"encoder: {model_label}; {n} AG News pool sentences, batch {args.batch}, "
        f"max_len {args.max_len}, batl_jax buckets {buckets}; mean length "
        f"{enc.lengths.mean():.1f} tokens; {args.reps} reps after a warm-up, medians"
    )
    if args.quick:
        print("(--quick: a 384-sentence subset of the pool; the full run uses all 10k)")
    notes: list[str] = []
    fns, shapes = _sides(args, model_path, enc, buckets, notes)
    tokens = {name: int(sum(r * length for r, length in sh)) for name, sh in shapes.items()}
    # batl_jax warms up with a whole pass (every compiled shape, tail batches included);
    # eager PyTorch compiles nothing, one batch starts its thread pool.
    times, warm, last = measure.interleaved(
        fns,
        args.reps,
        warmup={name: fn.warmup for name, fn in fns.items() if not name.startswith("batl_jax")},
        on_rep=lambda name, r, t: print(f"  rep {r + 1} {name}: {t:.2f} s", flush=True),
    )
    real_tokens = int(enc.lengths.sum())
    results = [_figures(name, times, warm, last, tokens, n, real_tokens) for name in fns]
    _print_table(results, buckets, notes)
    rates = _utilisation(args, fns["batl_jax"].factory.config, enc, shapes, results)
    settings = {
        "n": n,
        "batch": args.batch,
        "max_len": args.max_len,
        "buckets": list(buckets),
        "reps": args.reps,
        "model": model_label,
        "quick": args.quick,
        "smoke": args.smoke,
        "mean_length": float(enc.lengths.mean()),
        "real_tokens": real_tokens,
        "dtypes": args.dtypes,
    }
    return {
        "suite": "encoder",
        "env": info,
        "settings": settings,
        "rows": results,
        "matmul_gflops": rates,
        "notes": notes,
    }


def _utilisation(args, config, enc, shapes: dict, results: list[dict]) -> dict[str, float]:
    """Each side's forward FLOP rate (padded and real tokens) as a share of the dense
    matmul rates measured now, in this process; adds ``utilisation`` to each row."""
    size = flops.SMOKE_MATMUL_SIZE if args.smoke else flops.MATMUL_SIZE
    rates = flops.matmul_rates(size, torch=machine.peer("torch"))
    print()
    flops.print_rates(rates, size)
    for r in results:
        # batl_jax's [CLS] pooling computes the last layer for position 0 alone
        shape = flops.EncoderShape.of(config, r["impl"].startswith("batl_jax"))
        real = shape.forward_flops_real(enc.lengths)
        padded = shape.forward_flops_batches(shapes[r["impl"]])
        r["utilisation"] = {
            "padded": flops.utilisation(padded, r["seconds"], rates),
            "real": flops.utilisation(real, r["seconds"], rates),
        }
        print("\n".join(flops.utilisation_lines(f"forward {r['impl']}", r["utilisation"])))
    return rates


def ratios(result: dict) -> list[tuple[str, float]]:
    """The headline ratios of a result, for ``all``'s summary."""
    out = dtype_speedups(result["rows"])
    for r in result["rows"]:
        if r["impl"] != "batl_jax":
            out.append((f"encoder: batl_jax speedup vs {r['impl']}", r["speedup_of_batl_jax"]))
            out.append(
                (
                    f"encoder: {r['impl']} time per padded token / batl_jax's",
                    r["per_padded_token_ratio"],
                )
            )
    return out


def main(argv: list[str]) -> int:
    return report.run_suite(argv, _parse, run)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
