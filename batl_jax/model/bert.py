"""BERT in Flax NNX: the encoder, the pooler and the masked-language-model head.

The modules mirror Hugging Face's PyTorch ``BertModel`` (post-LayerNorm
transformer, absolute position embeddings) closely enough that a checkpoint
loaded by :mod:`batl_jax.model.hf_params` reproduces its last hidden state to
~1e-6 in float32. Three details matter for that parity:

* LayerNorm uses the two-pass variance (``use_fast_variance=False``) and the
  checkpoint's ``layer_norm_eps`` (1e-12 for BERT), as torch does;
* ``hidden_act="gelu"`` is the exact erf GELU, not the tanh approximation;
* torch ``Linear`` weights are (out, in); NNX kernels are (in, out).

Attribute names follow HF's where that keeps the checkpoint key table in
``hf_params`` readable (``embeddings.word_embeddings``, ``layers[i].attention.query``).

``dtype`` is the computation dtype and ``param_dtype`` the storage dtype of the
parameters: bfloat16 compute keeps float32 parameters, and the attention softmax
and LayerNorm statistics are always computed in float32. Every matmul takes its
operands in the compute dtype and returns float32 (``preferred_element_type``):
in bfloat16 that is what lets XLA:CPU run the dot on the CPU's bfloat16 units
(AVX512-BF16, AMX) instead of converting both operands to float32 first, and the
dense layers' backward pass stays in bfloat16 too (:mod:`batl_jax.model.matmul`); in
float32 it changes nothing.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from batl_jax.errors import ModelError
from batl_jax.model import attention, matmul

# model_type values whose checkpoints use exactly BERT's architecture and key names.
_BERT_MODEL_TYPES = ("bert",)

# HF activation names -> functions. "gelu" is erf-exact in HF; the others are the tanh form.
_ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "gelu": lambda x: jax.nn.gelu(x, approximate=False),
    "gelu_new": lambda x: jax.nn.gelu(x, approximate=True),
    "gelu_pytorch_tanh": lambda x: jax.nn.gelu(x, approximate=True),
    "gelu_fast": lambda x: jax.nn.gelu(x, approximate=True),
    "relu": jax.nn.relu,
    "silu": jax.nn.silu,
    "swish": jax.nn.silu,
}


@dataclasses.dataclass(frozen=True)
class BertConfig:
    """The architecture hyper-parameters of a BERT checkpoint (HF ``config.json`` names)."""

    vocab_size: int = 30522
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    pad_token_id: int = 0

    def __post_init__(self):
        if self.hidden_size % self.num_attention_heads:
            raise ModelError(
                f"hidden_size={self.hidden_size} is not a multiple of "
                f"num_attention_heads={self.num_attention_heads}: fix the model's config.json"
            )
        if self.hidden_act not in _ACTIVATIONS:
            raise ModelError(
                f"hidden_act={self.hidden_act!r} is not supported: use one of "
                f"{sorted(_ACTIVATIONS)} in the model's config.json"
            )

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @classmethod
    def from_hf_dict(cls, d: dict[str, Any]) -> BertConfig:
        """Build from a HF ``config.json`` dict; unknown keys are ignored.

        Raises ModelError for checkpoints that are not BERT-shaped (another
        ``model_type``, or relative position embeddings), whose weights this
        encoder cannot reproduce.
        """
        model_type = d.get("model_type")
        if model_type is not None and model_type not in _BERT_MODEL_TYPES:
            raise ModelError(
                f"model_type={model_type!r} is not supported: batl_jax implements the BERT "
                f"architecture only (model_type 'bert'); pick a BERT checkpoint such as "
                f"'bert-base-uncased' or 'sentence-transformers/all-MiniLM-L6-v2'"
            )
        pos_type = d.get("position_embedding_type", "absolute")
        if pos_type != "absolute":
            raise ModelError(
                f"position_embedding_type={pos_type!r} is not supported: only 'absolute' "
                f"position embeddings are implemented; pick a checkpoint that uses them"
            )
        names = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: v for k, v in d.items() if k in names}
        if kwargs.get("pad_token_id") is None:
            kwargs.pop("pad_token_id", None)  # some configs store null
        return cls(**kwargs)

    @classmethod
    def from_json_file(cls, path: str | os.PathLike) -> BertConfig:
        try:
            with open(path, encoding="utf-8") as f:
                d = json.load(f)
        except FileNotFoundError as e:
            raise ModelError(
                f"no config.json at {path}: a model directory needs the HF config.json "
                f"next to its weights; copy it from the model's hub page"
            ) from e
        except json.JSONDecodeError as e:
            raise ModelError(f"{path} is not valid JSON ({e}): re-download the model") from e
        return cls.from_hf_dict(d)


def _layer_norm(config: BertConfig, dtype, param_dtype, rngs: nnx.Rngs) -> nnx.LayerNorm:
    # Two-pass variance: the fast E[x^2]-E[x]^2 form costs ~1e-5 of parity with torch.
    return nnx.LayerNorm(
        config.hidden_size,
        epsilon=config.layer_norm_eps,
        use_fast_variance=False,
        dtype=dtype,
        param_dtype=param_dtype,
        rngs=rngs,
    )


def _dense(n_in: int, n_out: int, dtype, param_dtype, rngs: nnx.Rngs) -> nnx.Linear:
    # float32 keeps lax.dot_general (and its autodiff) bit for bit; a narrower compute
    # dtype takes matmul.dot_general, whose backward also stays in that dtype.
    low = jnp.dtype(dtype) != jnp.dtype(jnp.float32)
    return nnx.Linear(
        n_in,
        n_out,
        kernel_init=nnx.initializers.normal(0.02),  # BERT's initializer_range
        dtype=dtype,
        param_dtype=param_dtype,
        preferred_element_type=jnp.float32,
        dot_general=matmul.dot_general if low else jax.lax.dot_general,
        rngs=rngs,
    )


class BertEmbeddings(nnx.Module):
    """word + position + token-type embeddings, then LayerNorm and dropout.

    The lookups and their sum stay in the storage dtype; the LayerNorm returns the
    compute dtype. (An ``nnx.Embed`` with a compute dtype casts its whole table, 30k
    rows, on every call, to gather a few hundred of them.)
    """

    def __init__(self, config: BertConfig, *, rngs: nnx.Rngs, dtype, param_dtype):
        init = nnx.initializers.normal(0.02)
        kw = dict(dtype=None, param_dtype=param_dtype, embedding_init=init, rngs=rngs)
        self.word_embeddings = nnx.Embed(config.vocab_size, config.hidden_size, **kw)
        self.position_embeddings = nnx.Embed(
            config.max_position_embeddings, config.hidden_size, **kw
        )
        self.token_type_embeddings = nnx.Embed(config.type_vocab_size, config.hidden_size, **kw)
        self.layer_norm = _layer_norm(config, dtype, param_dtype, rngs)
        self.dropout = nnx.Dropout(config.hidden_dropout_prob, rngs=rngs)

    def __call__(self, input_ids, token_type_ids, *, deterministic: bool) -> jax.Array:
        positions = jnp.arange(input_ids.shape[-1])[None, :]
        x = (
            self.word_embeddings(input_ids)
            + self.position_embeddings(positions)
            + self.token_type_embeddings(token_type_ids)
        )
        return self.dropout(self.layer_norm(x), deterministic=deterministic)


class BertAttention(nnx.Module):
    """Multi-head self-attention plus its output projection, dropout, residual and LayerNorm."""

    def __init__(
        self, config: BertConfig, *, rngs: nnx.Rngs, dtype, param_dtype, attention_rows: int
    ):
        h = config.hidden_size
        self.num_heads = config.num_attention_heads
        self.head_dim = config.head_dim
        self.dtype = dtype
        self.attention_rows = attention_rows
        self.query = _dense(h, h, dtype, param_dtype, rngs)
        self.key = _dense(h, h, dtype, param_dtype, rngs)
        self.value = _dense(h, h, dtype, param_dtype, rngs)
        self.output = _dense(h, h, dtype, param_dtype, rngs)
        self.layer_norm = _layer_norm(config, dtype, param_dtype, rngs)
        self.attn_dropout = nnx.Dropout(config.attention_probs_dropout_prob, rngs=rngs)
        self.dropout = nnx.Dropout(config.hidden_dropout_prob, rngs=rngs)

    def __call__(
        self, x: jax.Array, bias: jax.Array, *, deterministic: bool, first_only: bool = False
    ) -> jax.Array:
        """``(B, L, H)`` states; with ``first_only`` only position 0 attends (over every
        key) and the result is ``(B, 1, H)``."""
        b = x.shape[0]

        def heads(t):  # (B, L, H) -> (B, L, N, D), in the compute dtype
            return t.reshape(b, t.shape[1], self.num_heads, self.head_dim).astype(self.dtype)

        queries = x[:, :1] if first_only else x
        q, k, v = heads(self.query(queries)), heads(self.key(x)), heads(self.value(x))
        if deterministic:
            ctx = attention.attention(q, k, v, bias, dtype=self.dtype, rows=self.attention_rows)
        else:
            drop = functools.partial(self.attn_dropout, deterministic=False)
            ctx = attention.attend(q, k, v, bias, dtype=self.dtype, dropout=drop)
        ctx = ctx.reshape(b, queries.shape[1], -1)
        out = self.dropout(self.output(ctx), deterministic=deterministic)
        return self.layer_norm(out + queries)


class BertLayer(nnx.Module):
    """One post-LN transformer block: attention, then the GELU feed-forward block."""

    def __init__(
        self, config: BertConfig, *, rngs: nnx.Rngs, dtype, param_dtype, attention_rows: int
    ):
        self.hidden_act = config.hidden_act
        self.attention = BertAttention(
            config, rngs=rngs, dtype=dtype, param_dtype=param_dtype, attention_rows=attention_rows
        )
        self.intermediate = _dense(
            config.hidden_size, config.intermediate_size, dtype, param_dtype, rngs
        )
        self.output = _dense(config.intermediate_size, config.hidden_size, dtype, param_dtype, rngs)
        self.layer_norm = _layer_norm(config, dtype, param_dtype, rngs)
        self.dropout = nnx.Dropout(config.hidden_dropout_prob, rngs=rngs)

    def __call__(
        self, x: jax.Array, bias: jax.Array, *, deterministic: bool, first_only: bool = False
    ) -> jax.Array:
        x = self.attention(x, bias, deterministic=deterministic, first_only=first_only)
        h = _ACTIVATIONS[self.hidden_act](self.intermediate(x))
        h = self.dropout(self.output(h), deterministic=deterministic)
        return self.layer_norm(h + x)


class BertEncoder(nnx.Module):
    """BERT without heads: token ids -> last hidden state (B, L, H).

    Args:
      config: the architecture.
      rngs: ``params`` initialises the weights (normally overwritten by a checkpoint);
        ``dropout`` (or ``default``) seeds the dropout streams.
      dtype: computation dtype (float32 or bfloat16).
      param_dtype: storage dtype of the parameters.
      attention_rows: rows per attention chunk (:mod:`batl_jax.model.attention`; the
        results do not depend on it); None: the default backend's choice, 0: whole batch.
    """

    def __init__(
        self,
        config: BertConfig,
        *,
        rngs: nnx.Rngs,
        dtype=jnp.float32,
        param_dtype=jnp.float32,
        attention_rows: int | None = None,
    ):
        self.config = config
        self.dtype = dtype
        if attention_rows is None:
            attention_rows = attention.default_rows()
        self.embeddings = BertEmbeddings(config, rngs=rngs, dtype=dtype, param_dtype=param_dtype)
        # flax 0.12 refuses plain Python lists of Modules as attributes: nnx.List registers
        # the elements as graph nodes (paths "layers/0/...").
        self.layers = nnx.List(
            [
                BertLayer(
                    config,
                    rngs=rngs,
                    dtype=dtype,
                    param_dtype=param_dtype,
                    attention_rows=attention_rows,
                )
                for _ in range(config.num_hidden_layers)
            ]
        )

    def __call__(
        self,
        input_ids: jax.Array,
        attention_mask: jax.Array,
        token_type_ids: jax.Array | None = None,
        *,
        deterministic: bool = True,
        first_token_only: bool = False,
    ) -> jax.Array:
        """The last hidden state ``(B, L, H)``; ``(B, 1, H)``, position 0's, with
        ``first_token_only``: the last layer then computes that position alone (its keys
        and values still cover every token): about a seventh of a 6-layer encoder's work,
        which [CLS] pooling does not read."""
        if token_type_ids is None:
            token_type_ids = jnp.zeros_like(input_ids)
        # Additive mask as HF builds it: 0 on real keys, the float32 minimum on padding.
        keep = attention_mask[:, None, None, :].astype(jnp.float32)
        bias = (1.0 - keep) * jnp.finfo(jnp.float32).min
        x = self.embeddings(input_ids, token_type_ids, deterministic=deterministic)
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            x = layer(
                x, bias, deterministic=deterministic, first_only=first_token_only and i == last
            )
        return x


class BertPooler(nnx.Module):
    """BERT's pooler: ``tanh(dense(hidden[:, 0]))``."""

    def __init__(
        self, config: BertConfig, *, rngs: nnx.Rngs, dtype=jnp.float32, param_dtype=jnp.float32
    ):
        h = config.hidden_size
        self.dense = _dense(h, h, dtype, param_dtype, rngs)

    def __call__(self, hidden: jax.Array) -> jax.Array:
        return jnp.tanh(self.dense(hidden[:, 0]))


class BertMLMHead(nnx.Module):
    """Masked-LM head: dense, activation, LayerNorm, then the tied decoder.

    The decoder weight is the encoder's word-embedding table (BERT ties them), so
    it is passed at call time rather than stored twice: only its bias lives here.
    """

    def __init__(
        self, config: BertConfig, *, rngs: nnx.Rngs, dtype=jnp.float32, param_dtype=jnp.float32
    ):
        self.hidden_act = config.hidden_act
        self.dtype = dtype
        self.dense = _dense(config.hidden_size, config.hidden_size, dtype, param_dtype, rngs)
        self.layer_norm = _layer_norm(config, dtype, param_dtype, rngs)
        self.bias = nnx.Param(jnp.zeros((config.vocab_size,), param_dtype))

    def __call__(self, hidden: jax.Array, word_embeddings: jax.Array) -> jax.Array:
        """Logits (..., V) from hidden states (..., H) and the (V, H) embedding table."""
        h = self.layer_norm(_ACTIVATIONS[self.hidden_act](self.dense(hidden)))
        w = jnp.asarray(word_embeddings, self.dtype)
        logits = jnp.einsum("...h,vh->...v", h, w, preferred_element_type=jnp.float32)
        return (logits + self.bias[...]).astype(self.dtype)


def resize_token_embeddings(
    encoder: BertEncoder, new_vocab_size: int, *, mlm_head: BertMLMHead | None = None
) -> None:
    """Grow the word-embedding table in place to ``new_vocab_size`` rows.

    New rows are the mean of the existing rows, so added tokens (relation-extraction
    markers such as ``[E1]``) start at the centre of the embedding cloud instead of at
    a random point. ``encoder.config.vocab_size`` is updated to match.

    The MLM decoder is tied to this table, so its output width follows automatically;
    only its bias has a vocabulary-sized parameter. Pass ``mlm_head`` to grow that bias
    too (new entries = mean of the old bias, like HF's mean resizing); an MLM head used
    with a resized encoder without this would fail on a shape mismatch.
    """
    emb = encoder.embeddings.word_embeddings
    old = emb.embedding[...]
    n_old = old.shape[0]
    if new_vocab_size < n_old:
        raise ValueError(f"cannot shrink the vocabulary from {n_old} to {new_vocab_size} rows")
    if new_vocab_size == n_old:
        return
    extra = new_vocab_size - n_old
    # Mean in float32, then back to the storage dtype.
    mean = old.astype(jnp.float32).mean(axis=0, keepdims=True).astype(old.dtype)
    # A new shape needs a new Variable: v[...] = x only writes into the existing shape.
    emb.embedding = nnx.Param(jnp.concatenate([old, jnp.repeat(mean, extra, axis=0)], axis=0))
    emb.num_embeddings = new_vocab_size
    encoder.config = dataclasses.replace(encoder.config, vocab_size=new_vocab_size)
    if mlm_head is not None:
        bias = mlm_head.bias[...]
        if bias.shape[0] != n_old:
            raise ValueError(
                f"mlm_head has {bias.shape[0]} vocabulary entries, the encoder {n_old}"
            )
        fill = jnp.full((extra,), bias.astype(jnp.float32).mean(), bias.dtype)
        mlm_head.bias = nnx.Param(jnp.concatenate([bias, fill]))
