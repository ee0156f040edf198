"""``python -m batl_jax.bench encoder``: pool scoring, batl_jax vs transformers' PyTorch.

The same AG News pool (ALPS' 10k training sample; ``--quick`` a seeded 384-row
subset) is tokenised once (no padding, truncation at ``--max-len``; not timed) and
scored by the same MiniLM weights, at the same batch size, into the same outputs
(s(x) = the [CLS] state, h_C = tanh(W s + b), logits; the classifier head is copied
from batl_jax into the PyTorch model so both compute the same function):

* ``batl_jax``: the round's pool pass (``FeaturePasses.pool``): length buckets
  (``--buckets``, default the config default), jitted forward, one compiled shape per bucket;
* ``torch longest``: transformers' ``BertForSequenceClassification`` parts, eager,
  ``torch.inference_mode``, rows in pool order, each batch padded to its longest row
  (what ``DataCollatorWithPadding`` does);
* ``torch max_len``: every batch padded to ``--max-len`` (small-text's and the
  ALPS/CAL code's layout);
* ``torch sorted``: rows sorted by length, then padded to the longest in the batch
  (the PyTorch analogue of buckets: shows how much of the gap is padding).

Each side is warmed up (batl_jax: one batch per bucket, i.e. compilation of every
shape, reported separately; PyTorch: one batch), then timed ``--reps`` times,
interleaved; medians. Figures:
sentences/s, ratio to batl_jax, padded tokens (rows x padded length summed over
batches, padding rows of a last batch included) and the time per padded token as a
ratio (how fast each side does the same unit of work). The outputs are compared
(max |Δ s(x)|) to show both sides did the same work.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from batl_jax import data
from batl_jax.bench import common


def _parse(argv):
    p = argparse.ArgumentParser(
        prog="python -m batl_jax.bench encoder",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--n", type=int, default=0, help="pool sentences (0: all 10k)")
    p.add_argument("--batch", type=int, default=64, help="scoring batch size (both sides)")
    p.add_argument("--max-len", type=int, default=128)
    common.add_buckets_flag(p)
    p.add_argument("--reps", type=int, default=3, help="timed repetitions per side (>= 3)")
    p.add_argument("--model", default="", help="minilm (default) | bert-base | tiny | DIR")
    p.add_argument("--variants", default="longest,max_len,sorted", help="torch variants")
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


class JaxScorer:
    def __init__(self, model_path: str, enc, buckets, batch: int, num_labels: int):
        from flax import nnx

        from batl_jax import sharding, train
        from batl_jax.features import FeaturePasses
        from batl_jax.model.factory import ModelFactory

        self.factory = ModelFactory(
            model_path, num_labels, pooling="cls", dropout=0.1, embed_dim=0, normalize=False
        )
        model = self.factory.classifier(0, with_encoder=True)
        self.head = {
            "dense": (
                np.asarray(model.head_dense.kernel[...]),
                np.asarray(model.head_dense.bias[...]),
            ),
            "out": (np.asarray(model.out.kernel[...]), np.asarray(model.out.bias[...])),
        }
        mesh = sharding.make_mesh()
        graphdef, self.params, self.rest = nnx.split(model, nnx.Param, ...)
        self.steps = train.Steps(graphdef, mesh, train.LossConfig(), 0.0)
        self.passes = FeaturePasses({"train": enc}, buckets, batch)

    def __call__(self):
        f = self.passes.pool(self.steps, self.params, self.rest, frozenset())
        return {"sentence": f.sentence, "hidden": f.hidden, "logits": f.logits}

    def warmup(self):
        """Compile every bucket shape: one batch of each bucket (not a full pass)."""
        from batl_jax.features import FeaturePasses

        enc, buckets = self.passes.encoded["train"], self.passes.buckets
        which = np.searchsorted(np.asarray(buckets), enc.lengths, side="left")
        rows = np.concatenate([np.flatnonzero(which == i)[:1] for i in range(len(buckets))])
        sub = data.Encoded(enc.input_ids[rows], enc.lengths[rows], enc.pad_id)
        passes = FeaturePasses({"train": sub}, buckets, self.passes.batch_size)
        passes.pool(self.steps, self.params, self.rest, frozenset())


def jax_padded_tokens(enc, batch: int, buckets) -> int:
    rows = np.arange(len(enc))
    return int(sum(b.input_ids.size for b in data.scoring_batches(enc, rows, batch, buckets)))


# ----------------------------------------------------------------------------- torch side


def load_torch_classifier(model_path: str, num_labels: int, head: dict | None, device: str):
    """transformers' BertForSequenceClassification with batl_jax's head copied in."""
    import transformers

    with common.quiet_logs():
        model = transformers.AutoModelForSequenceClassification.from_pretrained(
            model_path, num_labels=num_labels, trust_remote_code=False, use_safetensors=True
        )
    if head is not None:
        copy_head(model, head)
    return model.to(device).eval()


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


def torch_batches(enc, batch: int, variant: str, max_len: int):
    """``(rows, padded length)`` per batch for a torch variant."""
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


def run(args) -> dict:
    from batl_jax.model import hf_params

    info = common.env_info()
    model_path, model_label = common.resolve_model(args.model, args.smoke)
    texts, _ = common.ag_news("train", args.n)
    tok = hf_params.load_tokenizer(model_path)
    enc = data.encode_texts(texts, tok, args.max_len)
    buckets = data.check_buckets([int(b) for b in args.buckets.split(",")], args.max_len)
    n = len(enc)
    print("\n".join(common.header_lines(info)))
    print(
        f"encoder: {model_label}; {n} AG News pool sentences, batch {args.batch}, "
        f"max_len {args.max_len}, batl_jax buckets {buckets}; mean length "
        f"{enc.lengths.mean():.1f} tokens; {args.reps} reps after a warm-up, medians"
    )
    if args.quick:
        print("(--quick: a 384-sentence subset of the pool; the full run uses all 10k)")

    jax_side = JaxScorer(model_path, enc, buckets, args.batch, num_labels=4)
    fns = {"batl_jax": jax_side}
    tokens = {"batl_jax": jax_padded_tokens(enc, args.batch, buckets)}
    torch = common.peer("torch")
    variants = [v for v in args.variants.split(",") if v]
    notes = []
    if torch is not None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
        if common.has_gpu() and device == "cpu":
            notes.append(
                "torch has no CUDA here: PyTorch rows skipped on a GPU (not like for like)"
            )
            variants = []
        if variants:
            tmodel = load_torch_classifier(model_path, 4, jax_side.head, device)
            for v in variants:
                scorer = TorchScorer(tmodel, enc, args.batch, v, args.max_len, device)
                fns[f"torch {v}"] = scorer
                tokens[f"torch {v}"] = scorer.padded_tokens
    times, warm, last = common.interleaved(
        fns,
        args.reps,
        warmup={name: fn.warmup for name, fn in fns.items()},
        on_rep=lambda name, r, t: print(f"  rep {r + 1} {name}: {t:.2f} s", flush=True),
    )
    real_tokens = int(enc.lengths.sum())
    t_jax = common.median(times["batl_jax"])
    rows, results = [], []
    for name in fns:
        t = common.median(times[name])
        per_tok = t / tokens[name]
        r = {
            "impl": name,
            "seconds": t,
            "times": times[name],
            "warmup_s": warm[name],
            "sentences_per_s": n / t,
            "padded_tokens": tokens[name],
            "real_token_share": real_tokens / tokens[name],
            "padded_tokens_per_s": tokens[name] / t,
            "speedup_of_batl_jax": common.ratio(t, t_jax),
            "per_padded_token_ratio": common.ratio(per_tok, t_jax / tokens["batl_jax"]),
        }
        if name != "batl_jax":
            r["max_abs_diff_sentence"] = float(
                np.abs(last[name]["sentence"] - last["batl_jax"]["sentence"]).max()
            )
            r["max_abs_diff_logits"] = float(
                np.abs(last[name]["logits"] - last["batl_jax"]["logits"]).max()
            )
        results.append(r)
        rows.append(
            [
                name,
                common.fmt(t),
                common.fmt(n / t, ".1f"),
                common.fmt(r["speedup_of_batl_jax"], ".2f") + "x",
                f"{tokens[name]:,}",
                common.fmt(100 * r["real_token_share"], ".0f") + "%",
                common.fmt(tokens[name] / t / 1e3, ".1f"),
                common.fmt(r["per_padded_token_ratio"], ".2f"),
                common.fmt(r.get("max_abs_diff_sentence"), ".1e"),
            ]
        )
    print()
    print(
        common.table(
            [
                "impl",
                "median s",
                "sent/s",
                "batl_jax speedup",
                "padded tokens",
                "real",
                "k tok/s",
                "time/token vs batl_jax",
                "max|ds|",
            ],
            rows,
        )
    )
    print(
        f"batl_jax warm-up (compilation of {len(buckets)} bucket shapes, one batch each): "
        f"{warm['batl_jax']:.2f} s, paid once per process"
    )
    print(
        "batl_jax speedup = torch median s / batl_jax median s; time/token = (s per padded "
        "token) / (batl_jax's s per padded token): > 1 means slower per unit of work"
    )
    for note in notes:
        print("NOTE:", note)
    return {
        "suite": "encoder",
        "env": info,
        "settings": {
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
        },
        "rows": results,
        "notes": notes,
    }


def ratios(result: dict) -> list[tuple[str, float]]:
    """The headline ratios of a result, for ``all``'s summary."""
    out = []
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
    return common.run_suite(argv, _parse, run)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
