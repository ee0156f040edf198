"""BALD and BatchBALD (Kirsch et al. 2019) on MC-dropout predictions of the pool.

The feature pass runs ``bald.mc_samples`` stochastic passes with dropout on in the
head (``bald.dropout_scope = head``) or in the whole model (``all``).
"""

from __future__ import annotations

import dataclasses

import jax
import numpy as np

from batl_jax.kernels.batchbald import bald_select, batchbald_select
from batl_jax.strategies.base import (
    FeatureContext,
    FeatureValue,
    Selection,
    SelectionInput,
    register,
)


@dataclasses.dataclass(frozen=True)
class MCDropout:
    """``(K, N, C)`` logits of ``samples`` stochastic passes over the pool.

    ``scope = head``: dropout in the classifier head only, on the round's s(x) from the
    deterministic pass (K cheap head passes); ``all``: dropout in the whole model.
    """

    samples: int
    scope: str
    name: str = "mc_logits"
    static: bool = False
    pass_keys: tuple[str, ...] = ("sentence",)

    def compute(self, ctx: FeatureContext, fit, have) -> FeatureValue:
        rest = have["_rest"]
        sentence = have["sentence"] if self.scope == "head" else None
        out = []
        for i in range(self.samples):
            o = ctx.forward(
                fit,
                ("logits",),
                stochastic=True,
                sentence=sentence,
                rest=rest,
                desc=f"MC dropout {i + 1}/{self.samples}",
            )
            rest = o["_rest"]
            out.append(o["logits"])
        return FeatureValue(np.stack(out))


def _features(section) -> tuple[MCDropout]:
    return (MCDropout(int(section.mc_samples), section.dropout_scope),)


def _mc_probs(inp: SelectionInput) -> np.ndarray:
    if inp.features is None:
        raise ValueError("BALD/BatchBALD need MC-dropout logits (declared in features=)")
    z = inp.features["mc_logits"].astype(np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    p = np.exp(z)
    return (p / p.sum(axis=-1, keepdims=True)).astype(np.float32)


def _candidates(inp: SelectionInput) -> np.ndarray:
    m = np.zeros(inp.pool.num_rows, dtype=bool)
    m[inp.unlabeled] = True
    return m


@register("bald", features=_features, config_section="bald")
def select_bald(inp: SelectionInput, k: int) -> Selection:
    """Top-k single-sample mutual information between prediction and model parameters."""
    picks, scores = bald_select(_mc_probs(inp), _candidates(inp), k)
    return Selection(indices=picks, scores={"bald": scores})


@register("batchbald", features=_features, config_section="bald")
def select_batchbald(inp: SelectionInput, k: int) -> Selection:
    """Greedy joint mutual information: exact while C^n ≤ ``bald.max_configs``, sampled beyond."""
    cfg = inp.config
    picks, scores = batchbald_select(
        _mc_probs(inp),
        _candidates(inp),
        k,
        key=jax.random.key(inp.seed),
        max_configs=cfg.max_configs,
        num_samples=cfg.num_samples,
        mesh=inp.mesh,
    )
    return Selection(indices=picks, scores={"joint_mutual_information": scores})
