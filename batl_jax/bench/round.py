"""``python -m batl_jax.bench round``: one active-learning round, batl_jax vs small-text.

The round: fine-tune MiniLM (full fine-tuning, all weights) on the labeled set, score
the pool, select ``k`` rows with ENTROPY and with BADGE; then (not part of the round)
the test accuracy of the trained model. Both sides get:

* the same data: the AG News pool (ALPS' 10k sample), the same initial labeled rows
  (``loop.initial_labeled`` under ``--seed``), the same test rows;
* the same weights: MiniLM's encoder, and the same freshly initialised classifier head
  (batl_jax's head for the round, copied into HF's ``pooler.dense`` / ``classifier``:
  dense -> tanh -> dropout -> linear on the [CLS] state; batl_jax also applies
  dropout before the dense layer);
* the same hyper-parameters: max_len, batch size, epochs, AdamW with peak lr, weight
  decay 0.01 off biases and LayerNorm, 10 % linear warm-up then linear decay (small-text
  gets this optimizer and scheduler passed to ``fit``), the same number of steps, and
  the same scoring batch size; budget ``k``.

batl_jax runs through :class:`batl_jax.loop.Experiment` (its training, its one pool
pass that yields every feature, the registered ``entropy`` and ``badge`` strategies).
small-text 1.4.1 runs its ``TransformerBasedClassification`` (``fit`` with early
stopping and model selection off and a 32-row validation set taken from the labeled
rows, so it trains on every labeled row) and its ``PredictionEntropy`` and ``BADGE``
query strategies. Differences that remain, by design of small-text: it pads every
input to max_len (``TransformersDataset.from_arrays``), loads the model from disk in
``fit``, clips gradients at 1.0, validates and saves a checkpoint (model and
optimizer) every epoch, and each query strategy makes its own pass over the pool
(BADGE's embeds the mean of the last hidden states). Both sides score every pool row
(labeled ones included), as both libraries do. small-text 1.4.1's BADGE does not apply
``1 - p`` to the predicted class (see docs/benchmarks.md), so its picks differ in
kind; its time is still the time of its BADGE.

Each side: a warm-up (a short round on a few rows, compiling every shape batl_jax will
see; reported), then ``--reps`` timed rounds from the same starting weights,
interleaved; medians per phase. ``--quick``: 128 labeled, 1 epoch, 512-row pool,
k = 50, 128 test rows (its accuracies mean little: 4 training steps).
"""

from __future__ import annotations

import argparse
import itertools
import math
import sys
import time
from pathlib import Path

import numpy as np

from batl_jax import data
from batl_jax.bench import common
from batl_jax.config import get_base_config

NUM_LABELS = 4  # AG News


def _parse(argv):
    p = argparse.ArgumentParser(
        prog="python -m batl_jax.bench round",
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
    common.add_buckets_flag(p)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--reps", type=int, default=3, help="timed rounds per side (>= 3)")
    p.add_argument("--model", default="", help="minilm (default) | bert-base | tiny | DIR")
    p.add_argument("--no-small-text", action="store_true", help="batl_jax only")
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


# ----------------------------------------------------------------------------- batl_jax side


def make_config(args, model_path: str, data_dir: Path):
    c = get_base_config()
    c.name = "bench_round"
    c.seed = args.seed
    c.model.name = model_path
    c.model.pooling = "cls"  # = BertForSequenceClassification's pooler input
    c.model.max_len = args.max_len
    c.data.name = "ag_news"
    c.data.dir = str(data_dir)
    c.data.pool_limit = args.pool
    c.data.test_limit = args.test
    c.data.buckets = tuple(int(b) for b in args.buckets.split(","))
    c.al.strategy = "badge"
    c.al.batch_size = args.k
    c.al.initial_size = args.labeled
    c.al.rounds = 2
    c.train.mode = "full"
    c.train.epochs = args.epochs
    c.train.min_steps = 0  # exactly epochs x ceil(labeled / batch) steps, as small-text
    c.train.batch_size = args.batch
    c.train.eval_batch_size = args.eval_batch
    c.train.lr = args.lr
    c.train.warmup_ratio = 0.1
    c.train.weight_decay = 0.01
    c.train.dropout = 0.1
    c.train.cache_features = False
    return c


class JaxRound:
    """One round through batl_jax's Experiment pieces."""

    def __init__(self, cfg, workdir: Path):
        from batl_jax import loop, sharding, strategies

        self.loop, self.strategies = loop, strategies
        self.exp = loop.Experiment(cfg, workdir, sharding.make_mesh())
        self.cfg = cfg
        n = len(self.exp.dataset.train)
        self.labeled = loop.initial_labeled(n, cfg.al.initial_size, cfg.seed)
        self.unlabeled = np.setdiff1d(np.arange(n), self.labeled)

    def head(self) -> dict:
        """The classifier head round 0 starts from (seeded as in ``Experiment.fit_round``)."""
        seed = self.loop.derive_seed(self.cfg.seed, 0, self.loop._MODEL)
        m = self.exp.factory.classifier(seed, with_encoder=False)
        return {
            "dense": (np.asarray(m.head_dense.kernel[...]), np.asarray(m.head_dense.bias[...])),
            "out": (np.asarray(m.out.kernel[...]), np.asarray(m.out.bias[...])),
        }

    def warmup(self) -> None:
        """Compile every train / forward shape of the round and the BADGE kernel."""
        import jax

        from batl_jax import train
        from batl_jax.features import FeaturePasses

        exp = self.exp
        enc = exp.encoded["train"]
        which = np.searchsorted(np.asarray(exp.buckets), enc.lengths, side="left")
        per_bucket = [
            np.flatnonzero(which == i)[: exp.train_batch] for i in range(len(exp.buckets))
        ]
        per_bucket = [r for r in per_bucket if len(r)]
        rows = np.concatenate(per_bucket)
        rng = np.random.default_rng(0)

        def batches(epoch):
            return itertools.chain(
                *(
                    data.training_batches(enc, r, exp.train_batch, exp.buckets, rng)
                    for r in per_bucket
                )
            )

        model = exp.factory.classifier(0, with_encoder=True)
        fit = train.fit(
            model,
            exp.steps,
            batches,
            len(rows),
            exp.dataset.train.labels,
            batch_size=exp.train_batch,
            epochs=1,
            min_steps=0,
            lr=1e-9,
            warmup_ratio=0.1,
        )
        sub = {"train": _subset(enc, rows)}
        sub["test"] = sub["train"]  # the same shapes as the test pass
        passes = FeaturePasses(sub, exp.buckets, exp.passes.batch_size)
        passes.pool(exp.steps, fit.params, fit.rest, exp.spec.needs)
        passes.test_probs(exp.steps, fit.params, fit.rest)
        # BADGE's kernel compiles per (pool size, k): run it once on stand-in features.
        n = len(enc)
        feats = self._features(
            np.zeros((n, NUM_LABELS), np.float32),
            rng.standard_normal((n, exp.factory.hidden_size), dtype=np.float32),
        )
        self.select("badge", feats)
        jax.effects_barrier()

    def _features(self, logits, hidden):
        from batl_jax.strategies.base import PoolFeatures

        return PoolFeatures(sentence=hidden, hidden=hidden, logits=logits)

    def train(self):
        return self.exp.fit_round(0, self.labeled, None)

    def pool_pass(self, fit):
        return self.exp.passes.pool(self.exp.steps, fit.params, fit.rest, self.exp.spec.needs)

    def select(self, name: str, feats):
        spec = self.strategies.get(name)
        inp = self.strategies.SelectionInput(
            features=feats,
            unlabeled=self.unlabeled,
            labeled=self.labeled,
            labels=self.exp.dataset.train.labels,
            seed=self.loop.derive_seed(self.cfg.seed, 0, self.loop._SELECT),
            mesh=self.exp.mesh,
            config=None,
        )
        sel = spec.select(inp, self.cfg.al.batch_size)
        sel.validate(self.unlabeled, self.cfg.al.batch_size)
        return sel.indices

    def test_accuracy(self, fit) -> float:
        probs = self.exp.passes.test_probs(self.exp.steps, fit.params, fit.rest)
        return float((probs.argmax(1) == self.exp.dataset.test.labels).mean())


def _subset(enc, rows):
    return data.Encoded(enc.input_ids[rows], enc.lengths[rows], enc.pad_id)


# ----------------------------------------------------------------------------- small-text side


def _transformers_dataset(cls, split, tok, max_len: int):
    """small-text's ``TransformersDataset.from_arrays`` layout, built without it.

    ``from_arrays`` (1.4.1) calls ``tokenizer.encode_plus``, which transformers 5 removed;
    these are the same rows: ``(input_ids (1, max_len), attention_mask (1, max_len),
    label)``, padded to ``max_len`` and truncated, special tokens added.
    """
    import torch

    enc = tok(
        list(split.texts),
        padding="max_length",
        max_length=max_len,
        truncation=True,
        return_attention_mask=True,
    )
    ids = torch.tensor(enc["input_ids"], dtype=torch.long)
    mask = torch.tensor(enc["attention_mask"], dtype=torch.long)
    rows = [(ids[i : i + 1], mask[i : i + 1], int(y)) for i, y in enumerate(split.labels)]
    return cls(rows, target_labels=np.arange(NUM_LABELS))


class SmallTextRound:
    """The same round with small-text 1.4.1's classifier and query strategies."""

    def __init__(self, args, model_path: str, jax_round: JaxRound, head: dict, device: str):
        import small_text
        from small_text import TransformersDataset

        from batl_jax.model import hf_params

        self.st, self.args, self.model_path, self.head, self.device = (
            small_text,
            args,
            model_path,
            head,
            device,
        )
        ds = jax_round.exp.dataset
        tok = hf_params.load_tokenizer(model_path)
        t = time.perf_counter()
        self.pool = _transformers_dataset(TransformersDataset, ds.train, tok, args.max_len)
        self.test = _transformers_dataset(TransformersDataset, ds.test, tok, args.max_len)
        self.tokenize_s = time.perf_counter() - t
        self.labeled, self.unlabeled = jax_round.labeled, jax_round.unlabeled
        self.y = ds.train.labels
        self.cache_dir = str(common.temp_dir("batl_bench_st_"))
        self.save_s = 0.0

    def _classifier(self, labeled_rows, epochs: int):
        from small_text import TransformerBasedClassification, TransformerModelArguments

        from batl_jax.bench.encoder import copy_head

        clf = TransformerBasedClassification(
            TransformerModelArguments(self.model_path),
            num_classes=NUM_LABELS,
            num_epochs=epochs,
            lr=self.args.lr,
            mini_batch_size=self.args.batch,
            device=self.device,
            verbosity=0,
            cache_dir=self.cache_dir,
        )
        with common.quiet_logs():
            clf.initialize_transformer(self.cache_dir)  # what fit() does on first use
        copy_head(clf.model, self.head)
        return clf

    def _optimizer(self, clf, num_rows: int, epochs: int):
        """AdamW (decay off 1-D params) + 10 % warm-up, linear decay: batl_jax's recipe."""
        import torch
        import transformers

        decay = [p for p in clf.model.parameters() if p.ndim > 1]
        no_decay = [p for p in clf.model.parameters() if p.ndim <= 1]
        opt = torch.optim.AdamW(
            [{"params": decay, "weight_decay": 0.01}, {"params": no_decay, "weight_decay": 0.0}],
            lr=self.args.lr,
            eps=1e-8,
        )
        total = epochs * math.ceil(num_rows / self.args.batch)
        warm = max(1, int(round(total * 0.1)))
        return opt, transformers.get_linear_schedule_with_warmup(opt, warm, total)

    def train(self, labeled_rows=None, epochs=None):
        labeled_rows = self.labeled if labeled_rows is None else labeled_rows
        epochs = epochs or self.args.epochs
        clf = self._classifier(labeled_rows, epochs)
        orig_save = clf._save_model

        def timed_save(*a, **kw):  # small-text saves model + optimizer every epoch
            t = time.perf_counter()
            orig_save(*a, **kw)
            self.save_s += time.perf_counter() - t

        clf._save_model = timed_save
        opt, sched = self._optimizer(clf, len(labeled_rows), epochs)
        valid = self.pool[labeled_rows[: min(32, len(labeled_rows))]]
        with common.quiet_logs():
            clf.fit(
                self.pool[labeled_rows],
                validation_set=valid,
                early_stopping="none",
                model_selection="none",
                optimizer=opt,
                scheduler=sched,
            )
        clf.mini_batch_size = self.args.eval_batch  # its scoring batch = batl_jax's
        return clf

    def entropy(self, clf):
        q = self.st.PredictionEntropy()
        return q.query(
            clf, self.pool, self.unlabeled, self.labeled, self.y[self.labeled], n=self.args.k
        )

    def badge(self, clf):
        from small_text.integrations.pytorch.query_strategies import BADGE

        q = BADGE(num_classes=NUM_LABELS)
        return q.query(
            clf,
            self.pool,
            self.unlabeled,
            self.labeled,
            self.y[self.labeled],
            n=self.args.k,
            pbar=None,
        )

    def test_accuracy(self, clf) -> float:
        return float((clf.predict(self.test) == self.test.y).mean())

    def warmup(self):
        rows = self.labeled[: min(len(self.labeled), 2 * self.args.batch)]
        clf = self.train(rows, 1)
        clf.predict_proba(self.pool[rows])


# ----------------------------------------------------------------------------- suite

PHASES = ["train", "pool pass", "select entropy", "select BADGE"]


def run(args) -> dict:
    info = common.env_info()
    print("\n".join(common.header_lines(info)))
    root = common.data_dir()
    if root is None:
        print("NOTE: no AG News data dir (set BATL_DATA_DIR): round suite skipped")
        return {"suite": "round", "env": info, "skipped": "no data dir", "rows": []}
    model_path, model_label = common.resolve_model(args.model, args.smoke)
    workdir = common.temp_dir("batl_bench_round_")
    cfg = make_config(args, model_path, root)
    with common.quiet_logs():
        jr = JaxRound(cfg, workdir)
    n, n_test = len(jr.exp.dataset.train), len(jr.exp.dataset.test)
    steps = args.epochs * math.ceil(args.labeled / args.batch)
    enc = jr.exp.encoded["train"]
    settings = {
        "model": model_label,
        "pool": n,
        "labeled": int(len(jr.labeled)),
        "k": args.k,
        "epochs": args.epochs,
        "train_steps": steps,
        "batch": args.batch,
        "eval_batch": args.eval_batch,
        "lr": args.lr,
        "max_len": args.max_len,
        "buckets": list(jr.exp.buckets),
        "test_rows": n_test,
        "seed": args.seed,
        "reps": args.reps,
        "quick": args.quick,
        "smoke": args.smoke,
        "mean_length": float(enc.lengths.mean()),
    }
    print(
        f"round: {model_label}, full fine-tuning; pool {n} AG News rows ({len(jr.labeled)} "
        f"labeled, same rows both sides), {args.epochs} epoch(s) = {steps} steps of batch "
        f"{args.batch}, lr {args.lr:g}, max_len {args.max_len}, select k = {args.k} with "
        f"ENTROPY and BADGE; test accuracy on {n_test} test rows; {args.reps} timed rounds "
        f"per side after a warm-up, medians"
    )
    if args.quick:
        print(
            "(--quick: 128 labeled, 1 epoch, 512-row pool, k = 50, 128 test rows; the "
            "full run: 1,000 labeled, 3 epochs, 10k pool, k = 100, 2,000 test rows)"
        )
    head = jr.head()

    sides = {"batl_jax": jr}
    notes = []
    st = None
    if not args.no_small_text and common.peer("small_text") is not None and common.peer("torch"):
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
        if common.has_gpu() and device == "cpu":
            notes.append("torch has no CUDA here: small-text skipped on a GPU (not like for like)")
        else:
            st = SmallTextRound(args, model_path, jr, head, device)
            sides["small-text"] = st
    # batl_jax's head for round 0 is the one copied into small-text's model: check it.
    warm = {}
    for name, side in sides.items():
        t = time.perf_counter()
        with common.quiet_logs():
            side.warmup()
        warm[name] = time.perf_counter() - t
        print(f"  warm-up {name}: {warm[name]:.1f} s", flush=True)

    times = {name: {p: [] for p in PHASES} for name in sides}
    picks, acc, eval_s = {}, {}, {}
    for r in range(args.reps):
        for name, side in sides.items():
            ph = times[name]
            t0 = time.perf_counter()
            with common.quiet_logs():
                if name == "batl_jax":
                    fit = side.train()
                    t1 = time.perf_counter()
                    feats = side.pool_pass(fit)
                    t2 = time.perf_counter()
                    ent = side.select("entropy", feats)
                    t3 = time.perf_counter()
                    bad = side.select("badge", feats)
                    t4 = time.perf_counter()
                    ph["pool pass"].append(t2 - t1)
                else:
                    save_before = side.save_s
                    fit = side.train()
                    t1 = t2 = time.perf_counter()
                    ent = side.entropy(fit)
                    t3 = time.perf_counter()
                    bad = side.badge(fit)
                    t4 = time.perf_counter()
                    ph.setdefault("checkpoint saves (in train)", []).append(
                        side.save_s - save_before
                    )
            ph["train"].append(t1 - t0)
            ph["select entropy"].append(t3 - t2)
            ph["select BADGE"].append(t4 - t3)
            print(
                f"  rep {r + 1} {name}: train {t1 - t0:.1f} s, pass {t2 - t1:.1f} s, "
                f"entropy {t3 - t2:.2f} s, BADGE {t4 - t3:.2f} s",
                flush=True,
            )
            if r == args.reps - 1:
                picks[name] = {
                    "entropy": np.asarray(ent).tolist(),
                    "badge": np.asarray(bad).tolist(),
                }
                t = time.perf_counter()
                with common.quiet_logs():
                    acc[name] = side.test_accuracy(fit)
                eval_s[name] = time.perf_counter() - t
            del fit

    # Round totals per repetition (train + pass + selection of that rep), then medians.
    for ph in times.values():
        n_reps = len(ph["train"])
        base = [
            ph["train"][i] + (ph["pool pass"][i] if ph["pool pass"] else 0.0) for i in range(n_reps)
        ]
        ent, bad = ph["select entropy"], ph["select BADGE"]
        ph["round (entropy)"] = [base[i] + ent[i] for i in range(n_reps)]
        ph["round (BADGE)"] = [base[i] + bad[i] for i in range(n_reps)]
        ph["round (both)"] = [base[i] + ent[i] + bad[i] for i in range(n_reps)]
    med = {name: {p: common.median(v) for p, v in ph.items() if v} for name, ph in times.items()}
    rows = []
    labels = {
        "train": f"train ({len(jr.labeled)} rows x {args.epochs} ep, {steps} steps)",
        "pool pass": f"pool pass ({n} rows; batl_jax: shared)",
        "select entropy": "select ENTROPY (small-text: incl. its pass)",
        "select BADGE": "select BADGE (small-text: incl. its pass)",
        "checkpoint saves (in train)": "  of train: small-text checkpoint saves",
        "round (entropy)": "round with ENTROPY",
        "round (BADGE)": "round with BADGE",
        "round (both)": "round with both strategies",
    }
    ratio_rows = []
    for key, label in labels.items():
        a = med["batl_jax"].get(key)
        b = med.get("small-text", {}).get(key)
        # Only like-for-like rows get a ratio: small-text's select rows include its pass.
        rat = common.ratio(b, a) if key.startswith(("train", "round")) else None
        rows.append([label, common.fmt(a), common.fmt(b), common.fmt(rat) + ("x" if rat else "")])
        if rat is not None and key.startswith(("train", "round")):
            ratio_rows.append((f"round: batl_jax speedup, {label}", rat))
    rows.append(
        [
            "test accuracy",
            common.fmt(acc.get("batl_jax"), ".4f"),
            common.fmt(acc.get("small-text"), ".4f"),
            "",
        ]
    )
    rows.append(
        [
            f"  (evaluate {n_test} test rows, s, once)",
            common.fmt(eval_s.get("batl_jax")),
            common.fmt(eval_s.get("small-text")),
            "",
        ]
    )
    print()
    print(common.table(["phase (median s)", "batl_jax", "small-text", "batl_jax speedup"], rows))
    print(
        "warm-up (s): "
        + ", ".join(f"{k} {v:.1f}" for k, v in warm.items())
        + "  (batl_jax: compiles every train/forward shape and the BADGE kernel)"
    )
    if st is not None:
        overlap = len(set(picks["batl_jax"]["entropy"]) & set(picks["small-text"]["entropy"]))
        print(
            f"ENTROPY picks in common: {overlap}/{args.k} (two separately trained models, "
            f"different shuffles: not expected to agree)"
        )
        print(
            "small-text pads every input to max_len and makes one pool pass per strategy; "
            "its BADGE (1.4.1) lacks BADGE's 1 - p term on the predicted class"
        )
    for note in notes:
        print("NOTE:", note)
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
        "notes": notes,
    }


def ratios(result: dict) -> list[tuple[str, float]]:
    return list(result.get("ratios", {}).items())


def main(argv: list[str]) -> int:
    return common.run_suite(argv, _parse, run)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
