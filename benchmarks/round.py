"""``python -m benchmarks round``: one active-learning round, batl_jax vs small-text.

The round: fine-tune MiniLM (full fine-tuning, all weights) on the labeled set, score
the pool, select ``k`` rows with ENTROPY and with BADGE; then (not part of the round)
the test accuracy of the trained model. Both sides get:

* the same data: the AG News pool (ALPS' 10k sample), the same initial labeled rows
  (``seeds.initial_labeled`` under ``--seed``), the same test rows;
* the same weights: MiniLM's encoder, and the same freshly initialised classifier head
  (batl_jax's head for the round, copied into HF's ``pooler.dense`` / ``classifier``:
  dense -> tanh -> dropout -> linear on the [CLS] state; batl_jax also applies
  dropout before the dense layer);
* the same hyper-parameters: max_len, batch size, epochs, AdamW with peak lr, weight
  decay 0.01 off biases and LayerNorm, 10 % linear warm-up then linear decay (small-text
  gets this optimizer and scheduler passed to ``fit``), the same number of steps, and
  the same scoring batch size; budget ``k``.

batl_jax runs through its round functions (``setup.build`` once, then ``rounds.fit``,
``rounds.pool_features``: one pool pass that yields every feature, ``rounds.select``
with the registered ``entropy`` and ``badge`` strategies; :mod:`benchmarks.round_jax`).
small-text 1.4.1 runs its ``TransformerBasedClassification`` (``fit`` with early
stopping and model selection off and a 32-row validation set taken from the labeled
rows, so it trains on every labeled row) and its ``PredictionEntropy`` and ``BADGE``
query strategies (:mod:`benchmarks.round_small_text`). Differences that remain, by
design of small-text: it pads every input to max_len
(``TransformersDataset.from_arrays``), loads the model from disk in ``fit``, clips
gradients at 1.0, validates and saves a checkpoint (model and optimizer) every epoch,
and each query strategy makes its own pass over the pool (BADGE's embeds the mean of
the last hidden states). Both sides score every pool row (labeled ones included), as
both libraries do. small-text 1.4.1's BADGE does not apply ``1 - p`` to the predicted
class (``docs/benchmarks.md``), so its picks differ in kind; its time is still the time
of its BADGE.

Each side: a warm-up (batl_jax: a short fit per length bucket, then a whole pool and
test pass, compiling every shape it will see; reported), then ``--reps`` timed rounds
from the same starting weights, interleaved; medians per phase. ``--quick``: 128
labeled, 1 epoch, 512-row pool, k = 50, 128 test rows (its accuracies mean little: 4
training steps).

Last, how close to the machine's limit (:mod:`benchmarks.flops`): the encoder FLOP rate
of training (forward + backward, 3x the forward, over the padded batches each side
trains on and over the real lengths) and of batl_jax's pool pass, as a share of a
2048² dense matmul's rate measured in this process (float32 and bfloat16, JAX and
PyTorch). ``--sampler random`` times batl_jax's training with the old random batches
(``train.sampler``), for the bucketed sampler's gain. ``--dtypes float32,bfloat16`` adds
a ``batl_jax bfloat16`` side (``model.dtype``), timed in the same run, with its test
accuracy and how many of its picks the first side's round also made (same rows, seeds
and batches: only the arithmetic differs).
"""

from __future__ import annotations

import argparse
import math
import sys
import time

import numpy as np

from benchmarks import flops, inputs, machine, measure, report

PHASES = ["train", "pool pass", "select entropy", "select BADGE"]


def _parse(argv):
    p = argparse.ArgumentParser(
        prog="python -m benchmarks round",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--labeled", type=int, default=1000, help="initial labeled rows")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--pool", type=int, default=0, help="pool rows (0: all 10k)")
    p.add_argument("--k", type=int, default=100, help="rows selected per strategy")
    p.add_argument("--test", type=int, default=2000, help="test rows for the accuracy (0: all)")
    p.add_argument("--batch", type=int, default=32, help="training batch size")
    p.add_argument("--eval-batch", type=int, default=64, help="scoring batch size")
    p.add_argument("--lr", type=float, default=5e-5, help="peak learning rate")
    p.add_argument("--max-len", type=int, default=128)
    inputs.add_buckets_flag(p)
    p.add_argument(
        "--sampler", default="bucketed", help="batl_jax's train.sampler: bucketed | random"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--reps", type=int, default=3, help="timed rounds per side (>= 3)")
    p.add_argument("--model", default="", help="minilm (default) | bert-base | tiny | DIR")
    p.add_argument("--no-small-text", action="store_true", help="batl_jax only")
    inputs.add_dtypes_flag(p)
    p.add_argument(
        "--quick",
        action="store_true",
        help="128 labeled, 1 epoch, 512-row pool, k = 50, 128 test rows",
    )
    p.add_argument("--smoke", action="store_true", help="tiny model, 64-row pool (CI)")
    p.add_argument("--json", help="write every figure to this JSON file")
    args = p.parse_args(argv)
    if args.quick:
        args.labeled, args.epochs, args.pool, args.k, args.test = 128, 1, 512, 50, 128
    if args.smoke:
        args.labeled, args.epochs, args.pool, args.k, args.test = 16, 1, 64, 4, 32
        args.batch, args.eval_batch, args.max_len, args.buckets = 8, 16, 32, "32"
    return args


# ----------------------------------------------------------------------------- the sides


def _settings(args, jr, model_label: str) -> dict:
    """What was run, for the JSON: sizes, recipe and the pool's mean length."""
    return {
        "model": model_label,
        "pool": jr.pool_size,
        "labeled": int(len(jr.labeled)),
        "k": args.k,
        "epochs": args.epochs,
        "train_steps": args.epochs * math.ceil(args.labeled / args.batch),
        "batch": args.batch,
        "eval_batch": args.eval_batch,
        "lr": args.lr,
        "max_len": args.max_len,
        "buckets": list(jr.parts.buckets),
        "test_rows": jr.test_size,
        "seed": args.seed,
        "reps": args.reps,
        "quick": args.quick,
        "smoke": args.smoke,
        "mean_length": float(jr.parts.encoded["train"].lengths.mean()),
        "sampler": args.sampler,
        "dtypes": args.dtypes,
    }


def _describe(args, s: dict) -> None:
    print(
        f"round: {s['model']}, full fine-tuning; pool {s['pool']} AG News rows "
        f"({s['labeled']} labeled, same rows both sides), {args.epochs} epoch(s) = "
        f"{s['train_steps']} steps of batch {args.batch}, lr {args.lr:g}, max_len "
        f"{args.max_len}, select k = {args.k} with ENTROPY and BADGE; test accuracy on "
        f"{s['test_rows']} test rows; {args.reps} timed rounds per side after a warm-up, medians"
    )
    if args.quick:
        print(
            "(--quick: 128 labeled, 1 epoch, 512-row pool, k = 50, 128 test rows; the "
            "full run: 1,000 labeled, 3 epochs, 10k pool, k = 100, 2,000 test rows)"
        )


def _sides(args, model_path: str, jr, notes: list[str]) -> dict:
    """batl_jax (one side per ``--dtypes`` value), and small-text when it and torch are
    installed (and like for like)."""
    from benchmarks.round_jax import JaxRound, make_config
    from benchmarks.round_small_text import SmallTextRound

    sides = {"batl_jax": jr}
    for dt in inputs.parse_dtypes(args.dtypes)[1:]:
        with report.quiet_logs():
            sides[f"batl_jax {dt}"] = JaxRound(make_config(args, model_path, jr.cfg.data.dir, dt))
    if args.no_small_text or machine.peer("small_text") is None:
        return sides
    torch = machine.peer("torch")
    device = machine.torch_device(torch, notes, "small-text") if torch is not None else None
    if device is not None:
        # The head batl_jax's round 0 starts from is copied into small-text's model.
        sides["small-text"] = SmallTextRound(args, model_path, jr, jr.head(), device)
    return sides


def _rep(name: str, side, phases: dict) -> tuple[object, dict]:
    """One timed round of one side; appends each phase's seconds to ``phases``."""
    t0 = time.perf_counter()
    if name.startswith("batl_jax"):
        fit = side.train()
        t1 = time.perf_counter()
        feats = side.pool_pass(fit)
        t2 = time.perf_counter()
        ent = side.select("entropy", feats)
        t3 = time.perf_counter()
        bad = side.select("badge", feats)
        t4 = time.perf_counter()
        phases["pool pass"].append(t2 - t1)
    else:
        save_before = side.save_s
        fit = side.train()
        t1 = t2 = time.perf_counter()
        ent = side.entropy(fit)
        t3 = time.perf_counter()
        bad = side.badge(fit)
        t4 = time.perf_counter()
        phases.setdefault("checkpoint saves (in train)", []).append(side.save_s - save_before)
    phases["train"].append(t1 - t0)
    phases["select entropy"].append(t3 - t2)
    phases["select BADGE"].append(t4 - t3)
    return fit, {"entropy": np.asarray(ent).tolist(), "badge": np.asarray(bad).tolist()}


def _timed_rounds(args, sides: dict) -> tuple[dict, dict, dict, dict, dict]:
    """Warm-ups, then ``--reps`` interleaved rounds; the last one's picks and accuracy."""
    warm = {}
    for name, side in sides.items():
        t = time.perf_counter()
        with report.quiet_logs():
            side.warmup()
        warm[name] = time.perf_counter() - t
        print(f"  warm-up {name}: {warm[name]:.1f} s", flush=True)
    times = {name: {p: [] for p in PHASES} for name in sides}
    picks, acc, eval_s = {}, {}, {}
    for r in range(args.reps):
        for name, side in sides.items():
            ph = times[name]
            with report.quiet_logs():
                fit, picks[name] = _rep(name, side, ph)
            pool = ph["pool pass"][-1] if ph["pool pass"] else 0.0
            print(
                f"  rep {r + 1} {name}: train {ph['train'][-1]:.1f} s, pass {pool:.1f} s, "
                f"entropy {ph['select entropy'][-1]:.2f} s, BADGE {ph['select BADGE'][-1]:.2f} s",
                flush=True,
            )
            if r == args.reps - 1:
                t = time.perf_counter()
                with report.quiet_logs():
                    acc[name] = side.test_accuracy(fit)
                eval_s[name] = time.perf_counter() - t
            del fit
    return times, warm, picks, acc, eval_s


# ----------------------------------------------------------------------------- figures


def add_round_totals(times: dict) -> None:
    """Round totals per repetition (train + pass + that rep's selection), per side."""
    for ph in times.values():
        n_reps = len(ph["train"])
        base = [
            ph["train"][i] + (ph["pool pass"][i] if ph["pool pass"] else 0.0) for i in range(n_reps)
        ]
        ent, bad = ph["select entropy"], ph["select BADGE"]
        ph["round (entropy)"] = [base[i] + ent[i] for i in range(n_reps)]
        ph["round (BADGE)"] = [base[i] + bad[i] for i in range(n_reps)]
        ph["round (both)"] = [base[i] + ent[i] + bad[i] for i in range(n_reps)]


def _labels(s: dict) -> dict[str, str]:
    return {
        "train": f"train ({s['labeled']} rows x {s['epochs']} ep, {s['train_steps']} steps)",
        "pool pass": f"pool pass ({s['pool']} rows; batl_jax: shared)",
        "select entropy": "select ENTROPY (small-text: incl. its pass)",
        "select BADGE": "select BADGE (small-text: incl. its pass)",
        "checkpoint saves (in train)": "  of train: small-text checkpoint saves",
        "round (entropy)": "round with ENTROPY",
        "round (BADGE)": "round with BADGE",
        "round (both)": "round with both strategies",
    }


def _phase_rows(med: dict, s: dict) -> tuple[list[list[str]], list[tuple[str, float]]]:
    """The printed rows of the phases (a column per side, then small-text's time over each
    batl_jax side's) and the named speedups (like-for-like rows only: small-text's select
    rows include its own pool pass); an extra dtype's side also gets its speedup over
    the first side."""
    rows, ratio_rows = [], []
    jax_sides = [n for n in med if n.startswith("batl_jax")]
    for key, label in _labels(s).items():
        times = [med[n].get(key) for n in jax_sides] + [med.get("small-text", {}).get(key)]
        cells = [label] + [report.fmt(t) for t in times]
        like = key.startswith(("train", "round", "pool"))
        for n in jax_sides:
            rat = report.ratio(times[-1], med[n].get(key)) if like else None
            cells.append(report.fmt(rat) + ("x" if rat else ""))
            if rat is not None:
                ratio_rows.append((f"round: {n} speedup, {label}", rat))
            if n != "batl_jax" and like and med[n].get(key):
                ratio_rows.append(
                    (
                        f"round: {n} speedup over batl_jax, {label}",
                        report.ratio(med["batl_jax"].get(key), med[n].get(key)),
                    )
                )
        rows.append(cells)
    return rows, ratio_rows


def _print_results(rows, warm, acc, eval_s, picks, s: dict, notes: list[str]) -> None:
    jax_sides = [n for n in picks if n.startswith("batl_jax")]
    names = jax_sides + ["small-text"]
    rows = rows + [
        ["test accuracy"] + [report.fmt(acc.get(n), ".4f") for n in names] + [""] * len(jax_sides),
        [f"  (evaluate {s['test_rows']} test rows, s, once)"]
        + [report.fmt(eval_s.get(n)) for n in names]
        + [""] * len(jax_sides),
    ]
    headers = ["phase (median s)"] + names + [f"speedup of {n}" for n in jax_sides]
    print()
    print(report.table(headers, rows))
    for n in jax_sides[1:]:
        print(
            f"{n}: picks in common with batl_jax's round (same rows, seeds and batches): "
            + ", ".join(
                f"{k.upper()} {len(set(picks[n][k]) & set(picks['batl_jax'][k]))}/{s['k']}"
                for k in ("entropy", "badge")
            )
        )
    print(
        "warm-up (s): "
        + ", ".join(f"{k} {v:.1f}" for k, v in warm.items())
        + "  (batl_jax: compiles every train/forward shape and the selection kernels)"
    )
    if "small-text" in picks:
        overlap = len(set(picks["batl_jax"]["entropy"]) & set(picks["small-text"]["entropy"]))
        print(
            f"ENTROPY picks in common: {overlap}/{s['k']} (two separately trained models, "
            f"different shuffles: not expected to agree)"
        )
        print(
            "small-text pads every input to max_len and makes one pool pass per strategy; "
            "its BADGE (1.4.1) lacks BADGE's 1 - p term on the predicted class"
        )
    for note in notes:
        print("NOTE:", note)


def _utilisation(args, jr, med: dict) -> tuple[dict, dict]:
    """Training's and the pool pass's encoder FLOP rates (padded and real tokens) as
    shares of the dense matmul rates measured now, in this process."""
    size = flops.SMOKE_MATMUL_SIZE if args.smoke else flops.MATMUL_SIZE
    rates = flops.matmul_rates(size, torch=machine.peer("torch"))
    full = flops.EncoderShape.of(jr.parts.factory.config)
    # batl_jax's [CLS] pooling computes the last layer for position 0 alone
    shape = flops.EncoderShape.of(jr.parts.factory.config, jr.cfg.model.pooling == "cls")
    lengths = jr.parts.encoded["train"].lengths
    # every batl_jax side trains on the same batches: counted once, for all of them
    jax_padded = flops.TRAIN_FACTOR * shape.forward_flops_batches(jr.train_shapes())
    jax_real = shape.forward_flops_real(lengths[jr.labeled])
    real = {"small-text": full.forward_flops_real(lengths[jr.labeled])}
    padded = {
        # small-text pads every row to max_len (TransformersDataset.from_arrays)
        "small-text": flops.TRAIN_FACTOR
        * args.epochs
        * full.forward_flops(len(jr.labeled), args.max_len),
    }
    for name in med:
        padded.setdefault(name, jax_padded)
        real.setdefault(name, jax_real)
    util: dict[str, dict] = {}
    for name, m in med.items():
        util[f"train {name}"] = {
            "padded": flops.utilisation(padded[name], m["train"], rates),
            "real": flops.utilisation(
                flops.TRAIN_FACTOR * args.epochs * real[name], m["train"], rates
            ),
        }
    for name in (n for n in med if "pool pass" in med[n]):
        t = med[name]["pool pass"]
        util[f"pool pass {name}"] = {
            "padded": flops.utilisation(shape.forward_flops_batches(jr.pool_shapes()), t, rates),
            "real": flops.utilisation(shape.forward_flops_real(lengths), t, rates),
        }
    print()
    flops.print_rates(rates, size)
    for label, figures in util.items():
        print("\n".join(flops.utilisation_lines(label, figures)))
    return rates, util


# ----------------------------------------------------------------------------- suite


def run(args) -> dict:
    from benchmarks.round_jax import JaxRound, make_config

    info = machine.env_info()
    report.print_header(info)
    root = inputs.data_dir()
    if root is None:
        print("NOTE: no AG News data dir (set BATL_DATA_DIR): round suite skipped")
        return {"suite": "round", "env": info, "skipped": "no data dir", "rows": []}
    model_path, model_label = inputs.resolve_model(args.model, args.smoke)
    with report.quiet_logs():
        jr = JaxRound(make_config(args, model_path, root, inputs.parse_dtypes(args.dtypes)[0]))
    settings = _settings(args, jr, model_label)
    _describe(args, settings)
    notes: list[str] = []
    sides = _sides(args, model_path, jr, notes)
    times, warm, picks, acc, eval_s = _timed_rounds(args, sides)
    add_round_totals(times)
    med = {name: {p: measure.median(v) for p, v in ph.items() if v} for name, ph in times.items()}
    rows, ratio_rows = _phase_rows(med, settings)
    _print_results(rows, warm, acc, eval_s, picks, settings, notes)
    rates, util = _utilisation(args, jr, med)
    st = sides.get("small-text")
    return {
        "suite": "round",
        "env": info,
        "settings": settings,
        "median_s": med,
        "times": times,
        "warmup_s": warm,
        "test_accuracy": acc,
        "eval_s": eval_s,
        "picks": picks,
        "ratios": dict(ratio_rows),
        "small_text_tokenize_s": getattr(st, "tokenize_s", None),
        "matmul_gflops": rates,
        "utilisation": util,
        "notes": notes,
    }


def ratios(result: dict) -> list[tuple[str, float]]:
    return list(result.get("ratios", {}).items())


def main(argv: list[str]) -> int:
    return report.run_suite(argv, _parse, run)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
