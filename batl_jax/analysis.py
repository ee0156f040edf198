"""The paper's analysis metrics of a selected batch (Section "Analysis", Eqs. 7–9).

For the pool ``U`` (the unlabeled rows at selection time, the batch ``S`` included) and
features ``x = [s(x); h_C(x)]`` of the round's model:

* diversity (Eq. 7, Zhdanov 2019): ``(mean_{x∈U} min_{s∈S} ‖x − s‖)^{-1}``;
* uncertainty (Eq. 8, as in ALPS): mean entropy (nats) over ``S`` of a *reference*
  classifier trained once on the full training split, the same for every strategy, seed
  and round (:class:`ReferenceClassifier`, cached on disk);
* density (Eq. 9, Zhu et al. 2008): mean over ``S`` of the mean cosine similarity of each
  selected sample to its ``k`` most similar other rows of ``U``.

Distances and similarities come from the sharded pool kernels of
:mod:`batl_jax.kernels.neighbors` (never a ``|U| × |S|`` or ``|U| × |U|`` matrix); their
per-row results are averaged here on the host in float64, so the device count changes
nothing but rounding inside a tile.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import time

import numpy as np
from flax import nnx
from jax.sharding import Mesh

from batl_jax import data, run_files, train
from batl_jax.kernels.neighbors import DEFAULT_TILE, knn_similarities, min_distances
from batl_jax.strategies.base import PoolFeatures

log = logging.getLogger(__name__)

# The reference classifier's seed: one reference per dataset and model, whatever the run seed.
_REFERENCE_SEED = 12345


# ----------------------------------------------------------------------------- features
def analysis_features(feats: PoolFeatures, rows: np.ndarray) -> np.ndarray:
    """``[s(x); h_C(x)]`` of ``rows`` as one float32 ``(len(rows), 2d)`` array (one copy)."""
    s, h = feats.sentence, feats.hidden
    out = np.empty((len(rows), s.shape[1] + h.shape[1]), np.float32)
    out[:, : s.shape[1]] = s[rows]
    out[:, s.shape[1] :] = h[rows]
    return out


def entropy(logits: np.ndarray) -> np.ndarray:
    """Predictive entropy ``-Σ p ln p`` (nats) of ``softmax(logits)`` per row, float64."""
    z = np.asarray(logits, np.float64)
    z = z - z.max(axis=1, keepdims=True)
    log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return -(np.exp(log_p) * log_p).sum(axis=1)


# ----------------------------------------------------------------------------- diversity
def diversity(pool, selected, *, mesh: Mesh, tile: int = DEFAULT_TILE) -> float | None:
    """Eq. 7: the inverse mean distance of pool rows to their nearest selected row.

    None when that mean is 0 (every pool row is selected or duplicates one), where the
    inverse is infinite and JSON has no number for it.
    """
    mean = float(np.mean(min_distances(pool, selected, mesh=mesh, tile=tile), dtype=np.float64))
    return 1.0 / mean if mean > 0 else None


# ----------------------------------------------------------------------------- density
def knn_density(
    pool, pool_ids, queries, query_ids, *, k: int = 10, mesh: Mesh, tile: int = DEFAULT_TILE
) -> float | None:
    """Eq. 9 averaged over the queries: mean cosine similarity to their ``k`` nearest rows.

    ``k`` is capped at the number of other pool rows; None when there are none.
    """
    k = min(k, len(pool_ids) - 1)
    if k < 1:
        return None
    sims = knn_similarities(pool, pool_ids, queries, query_ids, k=k, mesh=mesh, tile=tile)
    sims = sims.astype(np.float64)
    # A query outside the pool has k candidates more than needed, never fewer.
    return float(np.mean(np.where(np.isfinite(sims), sims, np.nan).mean(axis=1)))


# ----------------------------------------------------------------------------- reference
class ReferenceClassifier:
    """Eq. 8's classifier trained on the full training split; its entropy per training row.

    Trained once per (model, data, training recipe) and cached in the feature cache
    (``cache_dir/reference/<hash>.npy`` + ``.json``), so every strategy, seed and round
    of a study is scored by the same classifier. ``train.mode = head`` trains only the
    head on the cached frozen-encoder features: seconds on a CPU. ``train.mode = full``
    fine-tunes the whole model on every training row, as the paper does: as slow as a
    round of training on the full split (logged as a warning).

    Args:
      experiment: the :class:`batl_jax.loop.Experiment` whose data, model factory, mesh and
        feature passes are reused (read only; its own model and steps are not touched
        unless they have the reference's graph, in which case the compiled steps are
        shared).
    """

    def __init__(self, experiment):
        self.exp = experiment
        self._entropy: np.ndarray | None = None

    def epochs(self) -> int:
        e = self.exp.cfg.analysis.reference_epochs
        return self.exp.cfg.train.epochs if e < 0 else e

    def cache_key(self) -> str:
        """Everything the reference's predictions depend on, besides the token ids."""
        cfg, exp = self.exp.cfg, self.exp
        labels = np.ascontiguousarray(exp.dataset.train.labels, dtype=np.int64)
        t = cfg.train
        return "|".join(
            [exp.factory.identity(), "reference-v1", t.mode, str(exp.task.num_labels),
             hashlib.sha256(labels.tobytes()).hexdigest()[:16], str(self.epochs()),
             str(t.min_steps), str(t.lr), str(t.batch_size), str(t.warmup_ratio),
             str(t.weight_decay), str(t.dropout), str(_REFERENCE_SEED)]
        )  # fmt: skip

    def entropy(self) -> np.ndarray:
        """``(N,)`` float64 entropies (nats) of the reference classifier per training row."""
        if self._entropy is None:
            path = self.exp.passes.cache_path("train", self.cache_key(), "reference")
            if path is not None and path.is_file():
                self._entropy = np.load(path, allow_pickle=False)
                log.info("analysis: reference classifier entropies loaded from %s", path)
            else:
                self._entropy = self._train(path)
        return self._entropy

    def _train(self, path) -> np.ndarray:
        exp, cfg = self.exp, self.exp.cfg
        n = len(exp.dataset.train)
        head = exp.head_mode
        if head:
            log.info("analysis: training the reference classifier head on all %d rows", n)
        else:
            log.warning(
                "analysis: the uncertainty metric (Eq. 8) needs a reference classifier: "
                "fine-tuning the FULL model on all %d training rows for %d epochs, once "
                "(cached at %s); this costs as much as a round on the whole split. Set "
                "--config.analysis.enabled=False to skip the analysis metrics.",
                n, self.epochs(), path,
            )  # fmt: skip
        t0 = time.perf_counter()
        factory = copy.copy(exp.factory)  # shares the host weights; only the head differs
        factory.embed_dim = 0  # no BATL layer: the same reference for every strategy
        model = factory.classifier(_REFERENCE_SEED, with_encoder=not head)
        graphdef = nnx.split(model, nnx.Param, ...)[0]
        steps = exp.steps
        if steps.graphdef != graphdef or steps.loss_cfg != train.LossConfig():
            steps = train.Steps(graphdef, exp.mesh, train.LossConfig(), cfg.train.weight_decay)
        enc = exp.encoded["train"]
        rng = np.random.default_rng(_REFERENCE_SEED)
        buckets = (exp.buckets[-1],) if head else exp.buckets
        sentence = exp._pretrained_sentence("train") if head else None
        rows = np.arange(n)
        fit = train.fit(
            model, steps,
            lambda epoch: data.training_batches(enc, rows, exp.train_batch, buckets, rng),
            n, exp.dataset.train.labels, batch_size=exp.train_batch, epochs=self.epochs(),
            min_steps=cfg.train.min_steps, lr=cfg.train.lr,
            warmup_ratio=cfg.train.warmup_ratio, sentence_cache=sentence,
            desc="reference classifier",
        )  # fmt: skip
        logits = exp.passes.pool(steps, fit.params, fit.rest, frozenset(), sentence=sentence)
        ent = entropy(logits.logits)
        sentence_test = exp._pretrained_sentence("test") if head else None
        probs = exp.passes.test_probs(steps, fit.params, fit.rest, sentence_test)
        info = {
            "train_rows": n,
            "steps": fit.steps,
            "seconds": round(time.perf_counter() - t0, 2),
            "test": exp.task.metrics(probs, exp.dataset.test),
        }
        log.info("analysis: reference classifier trained: %s", info)
        if path is not None:
            exp.passes.save_cached(path, ent)
            run_files.atomic_write_text(path.with_suffix(".json"), json.dumps(info) + "\n")
        return ent


# ----------------------------------------------------------------------------- per round
class Analyzer:
    """Computes the three metrics of a round's selection; one instance per run.

    ``cfg.analysis``: ``density_k`` (Eq. 9's ``k``), ``reference_epochs`` (-1 =
    ``train.epochs``); the loop creates it only when ``analysis.enabled``.
    """

    def __init__(self, experiment):
        self.exp = experiment
        self.reference = ReferenceClassifier(experiment)

    def __call__(self, feats: PoolFeatures, selected, unlabeled) -> dict[str, float | None]:
        selected = np.asarray(selected, np.int64)
        unlabeled = np.asarray(unlabeled, np.int64)
        pos = np.searchsorted(unlabeled, selected)  # unlabeled is sorted (np.setdiff1d)
        if not np.array_equal(unlabeled[np.minimum(pos, len(unlabeled) - 1)], selected):
            raise ValueError("selected rows must be rows of the (sorted) unlabeled pool")
        x = analysis_features(feats, unlabeled)
        mesh = self.exp.mesh
        uncertainty = None
        # The reference classifier needs the labels of the whole training split: only a
        # simulated oracle knows them (a human-labelling run gets null here).
        if self.exp.cfg.al.oracle == "simulated":
            uncertainty = float(np.mean(self.reference.entropy()[selected]))
        return {
            "diversity": diversity(x, x[pos], mesh=mesh),
            "uncertainty": uncertainty,
            "density": knn_density(
                x, unlabeled, x[pos], selected, k=self.exp.cfg.analysis.density_k, mesh=mesh
            ),
        }
