"""BERT in Flax NNX and the loader for Hugging Face checkpoints."""

from batl_jax.model.bert import (
    BertConfig,
    BertEncoder,
    BertMLMHead,
    BertPooler,
    resize_token_embeddings,
)
from batl_jax.model.hf_params import (
    PretrainedBert,
    load_pretrained,
    load_tokenizer,
    resolve_checkpoint,
)

__all__ = [
    "BertConfig",
    "BertEncoder",
    "BertMLMHead",
    "BertPooler",
    "PretrainedBert",
    "load_pretrained",
    "load_tokenizer",
    "resize_token_embeddings",
    "resolve_checkpoint",
]
