"""A trained batl_jax classifier as a Hugging Face checkpoint, and back.

With ``model.pooling = cls`` the task model is exactly ``BertForSequenceClassification``:
s(x) is the [CLS] state, ``h_C = tanh(W_1 s + b_1)`` is BERT's pooler (dense + tanh) and
the logits ``W_C h_C + b_C`` its ``classifier`` (dropout sits between them in both, and
is off when predicting). So ``W_1, b_1`` become ``bert.pooler.dense`` and ``W_C, b_C``
``classifier``, and ``transformers.AutoModelForSequenceClassification`` reproduces the
class probabilities.

With ``mean`` pooling transformers has no matching head: the folder then holds the
encoder as a ``BertModel`` (``model.safetensors``) and the head in ``batl_head.safetensors``
(``head_dense`` = W_1, b_1 and ``out`` = W_C, b_C; kernels are (in, out)), explained in
the folder's README.md. Either folder carries ``batl_jax.json`` (pooling, ``max_len``,
labels, task), so :func:`load_exported` (``batl_jax.predict --model=DIR``) loads both.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from batl_jax.errors import ModelError
from batl_jax.model import store

BATL_FILE = "batl_jax.json"
HEAD_FILE = "batl_head.safetensors"
# batl_jax.json keys copied from the run's model meta.
_META_KEYS = (*store.META_KEYS, "buckets", "round", "text_field", "data_name", "dropout")

_MEAN_README = """\
# batl_jax classifier with mean pooling

Exported by `python -m batl_jax.export` from an active-learning run ({round_text}).
Labels (index: name): {labels}.

transformers has no sequence-classification head that pools by the mean, so this folder
holds two parts:

* `config.json`, `model.safetensors`, tokenizer files: the fine-tuned (or, in head mode,
  the pre-trained) encoder as a `BertModel` (`transformers.AutoModel.from_pretrained`).
* `batl_head.safetensors`: the classifier head, `head_dense/kernel` (H, H),
  `head_dense/bias` (H), `out/kernel` (H, C), `out/bias` (C); kernels are (in, out).

The class probabilities of a text are

    s = sum_t mask_t * h_t / sum_t mask_t          (last hidden state h, attention mask)
    p = softmax(tanh(s @ head_dense/kernel + head_dense/bias) @ out/kernel + out/bias)

with the tokenizer's special tokens and at most {max_len} tokens (truncation=True).
`python -m batl_jax.predict --model=THIS_DIR --input=FILE --output=FILE` does all of it.
"""


def _encoder_tensors(model) -> dict[str, np.ndarray]:
    """The encoder's parameters under Hugging Face BERT names (torch (out, in) layout)."""
    from flax import nnx

    from batl_jax.model import hf_params

    flat = store.flatten(nnx.to_pure_dict(nnx.state(model.encoder, nnx.Param)), "encoder/")
    out = {}
    for path, arr in flat.items():
        nnx_path = path.replace("/", ".")
        name = hf_params.hf_name(nnx_path)  # the loader's key table, read backwards
        if name == nnx_path:
            raise AssertionError(f"no Hugging Face name for {nnx_path}")  # a bug, not input
        out[name] = arr.T if nnx_path.endswith(".kernel") else arr
    return out


def _head(model) -> dict[str, np.ndarray]:
    from flax import nnx

    state = nnx.to_pure_dict(nnx.state(model, nnx.Param))
    head = {k: state[k] for k in ("head_dense", "out")}
    return {k: np.ascontiguousarray(v, np.float32) for k, v in store.flatten(head).items()}


def hf_tensors(model, pooling: str) -> dict[str, np.ndarray]:
    """The state dict of the exported checkpoint (see the module doc)."""
    enc = {k: np.ascontiguousarray(v, np.float32) for k, v in _encoder_tensors(model).items()}
    if pooling != "cls":
        return enc  # a BertModel: the head goes to batl_head.safetensors
    head = _head(model)
    tensors = {f"bert.{k}": v for k, v in enc.items()}
    tensors["bert.pooler.dense.weight"] = np.ascontiguousarray(head["head_dense/kernel"].T)
    tensors["bert.pooler.dense.bias"] = head["head_dense/bias"]
    tensors["classifier.weight"] = np.ascontiguousarray(head["out/kernel"].T)
    tensors["classifier.bias"] = head["out/bias"]
    return tensors


def hf_config(checkpoint_dir: Path, vocab_size: int, meta: Mapping) -> dict:
    """The checkpoint's ``config.json`` with the labels, the vocabulary (task tokens
    included) and the architecture transformers should build."""
    config = json.loads((Path(checkpoint_dir) / "config.json").read_text(encoding="utf-8"))
    names = list(meta["label_names"])
    cls = meta["pooling"] == "cls"
    config.update(
        architectures=["BertForSequenceClassification" if cls else "BertModel"],
        model_type="bert",
        vocab_size=int(vocab_size),
        id2label={str(i): n for i, n in enumerate(names)},
        label2id={n: i for i, n in enumerate(names)},
        torch_dtype="float32",
    )
    if cls:
        config["problem_type"] = "single_label_classification"
    return config


def check_out(out: Path) -> None:
    """``--out`` must be a new folder (or an empty one): an export never overwrites."""
    out = Path(out)
    if out.is_file():
        raise ModelError(f"--out {out} is a file; pass a new folder to export into")
    if out.is_dir() and any(out.iterdir()):
        raise ModelError(f"--out {out} is a folder that is not empty; pass a new folder")


def write(model, tokenizer, meta: Mapping, out: Path) -> list[Path]:
    """Write the checkpoint of ``model`` (a :class:`SequenceClassifier`) into the new
    folder ``out``: built in a temporary sibling, then renamed, so a failure leaves
    nothing. Returns the files written."""
    from safetensors.numpy import save_file

    out = Path(out)
    check_out(out)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    try:
        pooling = meta["pooling"]
        tensors = hf_tensors(model, pooling)
        save_file(tensors, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        vocab = tensors[("bert." if pooling == "cls" else "") + "embeddings.word_embeddings.weight"]
        config = hf_config(meta["model_path"], vocab.shape[0], meta)
        (tmp / "config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
        tokenizer.model_max_length = int(meta["max_len"])
        tokenizer.save_pretrained(str(tmp))
        batl = {k: meta[k] for k in _META_KEYS if k in meta}
        batl["model_path"] = "."  # the encoder is this folder's
        if pooling != "cls":
            save_file(_head(model), str(tmp / HEAD_FILE), metadata={"format": "batl_jax"})
            batl["head_file"] = HEAD_FILE
            (tmp / "README.md").write_text(_readme(meta), encoding="utf-8")
        (tmp / BATL_FILE).write_text(json.dumps(batl, indent=2) + "\n", encoding="utf-8")
        if out.is_dir():
            out.rmdir()  # empty (checked above): the rename needs the name free
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return sorted(out.iterdir())


def _readme(meta: Mapping) -> str:
    labels = ", ".join(f"{i}: {n}" for i, n in enumerate(meta["label_names"]))
    round_text = f"the model of round {meta['round']}" if "round" in meta else "its final model"
    return _MEAN_README.format(labels=labels, max_len=meta["max_len"], round_text=round_text)


def _exported_head(folder: Path, meta: Mapping) -> dict[str, np.ndarray]:
    """The head of an exported folder in batl_jax's layout (kernels (in, out))."""
    if meta["pooling"] != "cls":
        return store.read_params(folder / meta.get("head_file", HEAD_FILE))
    hf = store.read_params(folder / "model.safetensors")
    names: tuple[str, ...] = ("bert.pooler.dense.weight", "bert.pooler.dense.bias")
    names += ("classifier.weight", "classifier.bias")
    missing = [n for n in names if n not in hf]
    if missing:
        raise ModelError(
            f"{folder / 'model.safetensors'} lacks {', '.join(missing)}; export the run again"
        )
    return {
        "head_dense/kernel": hf["bert.pooler.dense.weight"].T,
        "head_dense/bias": hf["bert.pooler.dense.bias"],
        "out/kernel": hf["classifier.weight"].T,
        "out/bias": hf["classifier.bias"],
    }


def load_exported(folder: Path):
    """``(classifier, tokenizer, meta)`` of a folder written by :func:`write`."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ModelError(f"--model {folder} is not a folder; pass a folder from batl_jax.export")
    if not (folder / BATL_FILE).is_file():
        raise ModelError(
            f"--model {folder} has no {BATL_FILE}: it is not a batl_jax export; pass a folder "
            "written by python -m batl_jax.export (or use --workdir)"
        )
    meta = store.read_meta(folder / BATL_FILE)
    meta = {**meta, "model_path": str(folder.resolve()), "mode": "head"}  # encoder: the folder's
    model, tokenizer = store.rebuild(str(folder), meta, _exported_head(folder, meta), str(folder))
    return model, tokenizer, meta
