"""One round of Algorithm 1 as values in, values out.

Fit the round's model on the labeled rows, evaluate it on the test split, compute the
strategy's pool features, select ``k`` rows and measure the batch (the paper's analysis
metrics). :func:`run_round` returns a :class:`RoundResult`; writing it down (files,
checkpoints, the human oracle) is the loop's business. Every draw of round ``r`` comes
from ``(seed, r)`` (:mod:`batl_jax.seeds`), so a resumed run repeats it exactly.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Mapping
from typing import Any

import jax
import numpy as np
from flax import nnx

from batl_jax import analysis, data, strategies, train
from batl_jax.errors import StateError
from batl_jax.faults import kill_point  # test hooks (BATL_KILL_AT); no-ops otherwise
from batl_jax.features import PoolFeatures, static_features
from batl_jax.features import pool_features as _pool_pass
from batl_jax.seeds import MODEL, SELECT, TRAIN, derive_seed
from batl_jax.setup import Parts
from batl_jax.strategies import FeatureValue

# fn(features, selected rows, unlabeled rows) -> analysis metrics of the batch.
Analyze = Callable[[PoolFeatures, np.ndarray, np.ndarray], dict]
# fn(stop-set predictions) -> (the row's "stop" section, why the run stops now or None).
StopCheck = Callable[[np.ndarray], tuple[dict, str | None]]


@dataclasses.dataclass(frozen=True)
class RoundResult:
    """What round ``round`` produced.

    ``metrics`` is its ``metrics.jsonl`` row; ``selected`` its ``selected.jsonl`` row
    and ``hint_logits`` the model's logits of the picks (label hints for people), both
    None in the last round; ``params`` the trained parameters as a host dict when the
    next round continues from them (``train.from_scratch = False``) and in the last round
    (the run's model, kept in the workdir). ``stop_predictions`` are the round model's
    labels of the stop set; ``stopped`` says why the stopping rule ended the run here.
    """

    round: int
    metrics: dict
    selection: strategies.Selection | None
    selected: dict | None
    hint_logits: np.ndarray | None
    params: dict | None
    deviations: tuple[dict, ...]
    stop_predictions: np.ndarray
    stopped: str | None = None


def prepare(parts: Parts) -> tuple[dict[str, FeatureValue], float]:
    """The run's features of the pre-trained model (head mode's s(x), ALPS's surprisal),
    computed before round 0; returns them and the seconds it took."""
    t0 = time.perf_counter()
    if parts.head_mode:
        parts.ctx.pretrained_sentence("train")
        if len(parts.dataset.test):  # a run may have no labeled test split
            parts.ctx.pretrained_sentence("test")
    static = static_features(parts.ctx, parts.features)
    return static, time.perf_counter() - t0


def training_sampler(parts: Parts) -> str:
    """``train.sampler``, except in head mode: cached features have no length to bucket,
    so the head trains on random batches whatever the setting."""
    return "random" if parts.head_mode else parts.cfg.train.sampler


def fit(parts: Parts, r: int, labeled: np.ndarray, labels: np.ndarray, prev_params=None):
    """Train round ``r``'s model on the ``labeled`` rows, seeded by (seed, round).

    ``prev_params`` (a pure dict) warm-starts the model instead of the fresh pre-trained
    weights (``train.from_scratch = False``). Returns a :class:`train.FitResult`.
    """
    seed, rec = parts.cfg.seed, parts.recipe
    model = parts.factory.classifier(derive_seed(seed, r, MODEL), with_encoder=not parts.head_mode)
    if prev_params is not None:
        params_state = nnx.state(model, nnx.Param)
        nnx.replace_by_pure_dict(params_state, prev_params)
        nnx.update(model, params_state)
    enc = parts.encoded["train"]
    rng = np.random.default_rng(derive_seed(seed, r, TRAIN))
    buckets = (parts.buckets[-1],) if parts.head_mode else parts.buckets
    sampler = training_sampler(parts)
    epoch_rngs: dict[int, np.random.Generator] = {}
    served = [0]

    def batches(epoch):
        epoch_rngs.setdefault(epoch, np.random.default_rng(rng.integers(2**31)))
        for batch in data.training_batches(
            enc, labeled, parts.train_batch, buckets, epoch_rngs[epoch], sampler=sampler
        ):
            served[0] += 1
            if served[0] == 2:
                kill_point(f"round{r}:train")  # test hook: mid-training
            yield batch

    result = train.fit(
        model,
        parts.steps,
        batches,
        len(labeled),
        labels,
        batch_size=parts.train_batch,
        epochs=rec.epochs,
        min_steps=rec.min_steps,
        lr=rec.lr,
        warmup_ratio=rec.warmup_ratio,
        sentence_cache=parts.ctx.model_input("train"),
        desc=f"round {r} train",
    )
    if result.steps and not math.isfinite(result.final_loss):
        raise StateError(
            f"round {r}: the training loss is not finite ({result.final_loss}): the model "
            "diverged; lower --config.train.lr"
        )
    return result


def _held_out_tests(parts: Parts) -> bool:
    """Whether the run is tested on ``al.test_size``'s held-out pool rows."""
    return not len(parts.dataset.test) and bool(len(parts.held_out))


def test_split(parts: Parts, labels: np.ndarray) -> data.Split:
    """The rows the round's model is tested on: the labeled test split, or else the
    held-out pool rows of ``al.test_size`` with their labels (people's, when human)."""
    if not _held_out_tests(parts):
        return parts.dataset.test
    split = parts.dataset.train.subset(parts.held_out)
    return dataclasses.replace(split, labels=np.asarray(labels)[parts.held_out])


def test_probs(parts: Parts, fit_result) -> np.ndarray:
    """``(n_test, C)`` class probabilities of the round's model on :func:`test_split`."""
    if _held_out_tests(parts):
        return parts.passes.test_probs(
            parts.steps,
            fit_result.params,
            fit_result.rest,
            parts.ctx.model_input("train"),
            split="train",
            rows=parts.held_out,
        )[parts.held_out]  # the pass returns pool-sized outputs, filled at its rows
    return parts.passes.test_probs(
        parts.steps, fit_result.params, fit_result.rest, parts.ctx.model_input("test")
    )


def evaluate(parts: Parts, fit_result, split: data.Split) -> dict[str, float]:
    """The task's test metrics on ``split`` (:func:`test_split`); empty when it has no rows."""
    if len(split) == 0:
        return {}
    probs = test_probs(parts, fit_result)
    if not np.isfinite(probs).all():
        raise StateError("the test predictions are not finite: the model diverged")
    return parts.task.metrics(probs, split)


def pool_features(parts: Parts, fit_result, static=None) -> PoolFeatures:
    """The round model's pool pass and every feature the strategy declared."""
    return _pool_pass(parts.ctx, fit_result, parts.features, static)


def select(parts, feats, r, labeled, unlabeled, labels) -> strategies.Selection:
    """The strategy's ``k`` picks from ``unlabeled``; it sees the labels of L only."""
    known = np.full(len(labels), -1, dtype=np.asarray(labels).dtype)
    known[labeled] = np.asarray(labels)[labeled]
    inp = strategies.SelectionInput(
        features=feats,
        unlabeled=unlabeled,
        labeled=labeled,
        labels=known,
        seed=derive_seed(parts.cfg.seed, r, SELECT),
        mesh=parts.mesh,
        config=parts.section,
    )
    k = min(parts.cfg.al.batch_size, len(unlabeled))
    kill_point(f"round{r}:select")  # test hook: features done, selection not
    selection = parts.spec.select(inp, k)
    selection.validate(unlabeled, k)
    for name, col in selection.scores.items():
        col = np.asarray(col)
        if np.issubdtype(col.dtype, np.floating) and not np.isfinite(col).all():
            raise StateError(f"round {r}: the strategy's {name!r} scores are not finite")
    return selection


def stop_predictions(parts: Parts, fit_result, feats: PoolFeatures | None = None) -> np.ndarray:
    """The round model's predicted labels of the stop set (from ``feats`` when given)."""
    rows = parts.stop_rows
    if feats is None:
        out = parts.passes.run(
            parts.steps,
            fit_result.params,
            fit_result.rest,
            "train",
            ("logits",),
            sentence=parts.ctx.model_input("train"),
            desc="stop set",
            rows=rows,
        )
        logits = out["logits"][rows]
    else:
        logits = feats.logits[rows]
    return np.argmax(logits, axis=1).astype(np.int32)


def _selected_row(parts: Parts, r: int, selection: strategies.Selection) -> dict:
    return {
        "round": r,
        "rows": selection.indices.tolist(),
        "ids": [parts.dataset.train.ids[i] for i in selection.indices],
        "scores": {k: np.asarray(v, np.float64).tolist() for k, v in selection.scores.items()},
    }


def run_round(
    parts: Parts,
    r: int,
    labeled: np.ndarray,
    labels: np.ndarray,
    *,
    prev_params=None,
    last: bool,
    static: Mapping[str, FeatureValue] | None = None,
    analyze: Analyze | None = None,
    stop_check: StopCheck | None = None,
    times: Mapping[str, float] | None = None,
) -> RoundResult:
    """Round ``r``: fit, evaluate, check the stopping rule and (unless ``last`` or the rule
    stops the run) select and analyse the batch."""
    unlabeled = np.setdiff1d(parts.pool_rows, labeled)
    times = dict(times or {})
    t0 = time.perf_counter()
    fit_result = fit(parts, r, labeled, labels, prev_params)
    times["train_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    tested_on = test_split(parts, labels)
    test = evaluate(parts, fit_result, tested_on)
    times["eval_s"] = time.perf_counter() - t0
    row: dict[str, Any] = {
        "test_majority_rate": parts.task.majority_rate(tested_on) if len(tested_on) else None,
        "round": r,
        "labeled": int(len(labeled)),
        "strategy": parts.spec.name,
        "seed": parts.cfg.seed,
        "train_steps": fit_result.steps,
        "test": test,
    }
    selection, hint, feats, stopped = None, None, None, None
    deviations: tuple[dict, ...] = ()
    if not last:
        kill_point(f"round{r}:score")  # test hook: before the pool feature pass
        t0 = time.perf_counter()
        feats = pool_features(parts, fit_result, static)
        times["features_s"] = time.perf_counter() - t0
    preds = stop_predictions(parts, fit_result, feats)
    if stop_check is not None:
        row["stop"], stopped = stop_check(preds)
    if feats is not None and stopped is None:
        t0 = time.perf_counter()
        selection = select(parts, feats, r, labeled, unlabeled, labels)
        times["select_s"] = time.perf_counter() - t0
        if analyze is not None:
            t0 = time.perf_counter()
            row["analysis"] = analyze(feats, selection.indices, unlabeled)
            times["analysis_s"] = time.perf_counter() - t0
        deviations, hint = feats.deviations, feats.logits[selection.indices]
    last = last or stopped is not None
    row["time"] = times
    params = None
    if last or not parts.recipe.from_scratch:
        params = jax.device_get(nnx.to_pure_dict(fit_result.params))
    return RoundResult(
        round=r,
        metrics=row,
        selection=selection,
        selected=None if selection is None else _selected_row(parts, r, selection),
        hint_logits=hint,
        params=params,
        deviations=deviations,
        stop_predictions=preds,
        stopped=stopped,
    )


def make_analyze(parts: Parts, reference_entropy: Callable[[], np.ndarray] | None) -> Analyze:
    """The analysis metrics of a batch (Eqs. 7-9) for this run's settings."""
    density_k = parts.cfg.analysis.density_k

    def analyze(feats: PoolFeatures, selected: np.ndarray, unlabeled: np.ndarray) -> dict:
        return analysis.batch_metrics(
            feats.sentence,
            feats.hidden,
            selected,
            unlabeled,
            mesh=parts.mesh,
            density_k=density_k,
            reference_entropy=reference_entropy,
        )

    return analyze
