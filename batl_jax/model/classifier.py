"""The task model: encoder, s(x), h_C(x) = tanh(W_1 s + b_1), logits and e(x).

README, "Method decisions" (classifier head, integrated feature e(x)) gives the choices the
paper leaves open.

``SequenceClassifier`` owns the classifier head and, for BATL, the integrated-feature
layer ``e(x) = normalize(W_e [s; h_C] + b_e)``. With ``encoder=None`` it is the
head alone and takes cached sentence features (``train.mode = head``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from batl_jax.model.bert import BertEncoder


def pool_sentence(hidden: jax.Array, attention_mask: jax.Array, pooling: str) -> jax.Array:
    """Sentence representation s(x): the [CLS] state, or the mean over non-pad tokens."""
    if pooling == "cls":
        return hidden[:, 0]
    if pooling == "mean":
        m = attention_mask.astype(hidden.dtype)[..., None]
        return (hidden * m).sum(axis=1) / jnp.maximum(m.sum(axis=1), 1.0)
    raise ValueError(f"unknown pooling {pooling!r}")


class SequenceClassifier(nnx.Module):
    """Encoder (optional) + classifier head + optional BATL integrated-feature layer.

    Args:
      encoder: a :class:`BertEncoder`, or None when inputs are cached sentence features.
      hidden_size: width of s(x) (the encoder's hidden size).
      num_labels: C.
      pooling: "cls" or "mean".
      dropout: rate of the dropout before and after the head's dense layer.
      embed_dim: width of e(x); 0 leaves the BATL layer out.
      normalize: L2-normalise e(x).
    """

    def __init__(
        self,
        encoder: BertEncoder | None,
        hidden_size: int,
        num_labels: int,
        *,
        pooling: str = "cls",
        dropout: float = 0.1,
        embed_dim: int = 0,
        normalize: bool = True,
        rngs: nnx.Rngs,
    ):
        self.encoder = encoder
        self.pooling = pooling
        self.normalize = normalize
        init = nnx.initializers.normal(0.02)
        self.head_dense = nnx.Linear(hidden_size, hidden_size, kernel_init=init, rngs=rngs)
        self.out = nnx.Linear(hidden_size, num_labels, kernel_init=init, rngs=rngs)
        self.dropout = nnx.Dropout(dropout, rngs=rngs)
        self.integrate = (
            nnx.Linear(2 * hidden_size, embed_dim, kernel_init=init, rngs=rngs)
            if embed_dim
            else None
        )

    def sentence(self, input_ids, attention_mask, *, deterministic: bool = True) -> jax.Array:
        if self.encoder is None:
            raise ValueError("this classifier has no encoder: it takes sentence features")
        # [CLS] pooling reads position 0 only: the last layer computes nothing else.
        hidden = self.encoder(
            input_ids,
            attention_mask,
            deterministic=deterministic,
            first_token_only=self.pooling == "cls",
        )
        return pool_sentence(hidden, attention_mask, self.pooling)

    def head(self, s: jax.Array, *, deterministic: bool = True) -> dict[str, jax.Array]:
        h = jnp.tanh(self.head_dense(self.dropout(s, deterministic=deterministic)))
        logits = self.out(self.dropout(h, deterministic=deterministic))
        out = {"sentence": s, "hidden": h, "logits": logits}
        if self.integrate is not None:
            # e(x) sees the clean h_C (no dropout): it is a feature, not a regularised path.
            e = self.integrate(jnp.concatenate([s, h], axis=-1))
            if self.normalize:
                e = e / jnp.maximum(jnp.linalg.norm(e, axis=-1, keepdims=True), 1e-12)
            out["embedding"] = e
        return out

    def __call__(self, batch: dict[str, jax.Array], *, deterministic: bool = True):
        """``batch`` holds ``input_ids`` + ``attention_mask``, or cached ``sentence`` features."""
        if "sentence" in batch:
            s = batch["sentence"]
        else:
            s = self.sentence(
                batch["input_ids"], batch["attention_mask"], deterministic=deterministic
            )
        return self.head(s, deterministic=deterministic)


def head_weights(params) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """``(W_1, b_1, W_C, b_C)`` of the classifier head from a model's ``nnx.Param`` state
    (head-only or with the encoder: the head sits at the top of either)."""
    return (
        params["head_dense"]["kernel"].get_value(),
        params["head_dense"]["bias"].get_value(),
        params["out"]["kernel"].get_value(),
        params["out"]["bias"].get_value(),
    )


def head_dropout_key(rest) -> jax.Array:
    """The head's dropout stream after training (key folded with its counter): a key
    seeded by the round's model seed, so MC-dropout masks drawn from it are reproducible."""
    stream = rest["dropout"]["rngs"]
    return jax.random.fold_in(stream["key"].get_value(), stream["count"].get_value())


def masked_head_logits(weights, s: jax.Array, keep_s: jax.Array, keep_h: jax.Array, rate: float):
    """Logits of :meth:`SequenceClassifier.head` with *given* dropout keep-masks ``(d,)``
    applied to every row (consistent MC dropout: one parameter draw for the whole pool,
    Kirsch et al. 2019), scaled by ``1/(1-rate)`` as ``nnx.Dropout`` does."""
    w1, b1, w2, b2 = weights
    keep = 1.0 - rate
    h = jnp.tanh((s * (keep_s / keep).astype(s.dtype)) @ w1 + b1)
    return (h * (keep_h / keep).astype(h.dtype)) @ w2 + b2
