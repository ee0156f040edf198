"""small-text's side of the ``round`` suite: the same round with small-text 1.4.1.

small-text runs its ``TransformerBasedClassification`` (``fit`` with early stopping and
model selection off and a 32-row validation set taken from the labeled rows, so it
trains on every labeled row) and its ``PredictionEntropy`` and ``BADGE`` query
strategies. It gets batl_jax's recipe: the same classifier head copied in, AdamW with
weight decay 0.01 off 1-D parameters, 10 % linear warm-up then linear decay, the same
number of steps and the same scoring batch. What stays different is small-text's own
design (``docs/benchmarks.md``, "What is held equal in round").
"""

from __future__ import annotations

import math
import time

import numpy as np

from benchmarks import inputs, report
from benchmarks.round_jax import NUM_LABELS


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

    def __init__(self, args, model_path: str, jax_round, head: dict, device: str):
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
        ds = jax_round.parts.dataset
        tok = hf_params.load_tokenizer(model_path)
        t = time.perf_counter()
        self.pool = _transformers_dataset(TransformersDataset, ds.train, tok, args.max_len)
        self.test = _transformers_dataset(TransformersDataset, ds.test, tok, args.max_len)
        self.tokenize_s = time.perf_counter() - t
        self.labeled, self.unlabeled = jax_round.labeled, jax_round.unlabeled
        self.y = ds.train.labels
        self.cache_dir = str(inputs.temp_dir("batl_bench_st_"))
        self.save_s = 0.0

    def _classifier(self, labeled_rows, epochs: int):
        from small_text import TransformerBasedClassification, TransformerModelArguments

        from benchmarks.encoder import copy_head

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
        with report.quiet_logs():
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
        with report.quiet_logs():
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
