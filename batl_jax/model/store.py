"""The final round's trained model of a run: kept in ``WORKDIR/model/`` (README, "Your own
project").

``params.safetensors`` holds the round model's parameters under their NNX paths joined by
``/`` (``head_dense/kernel``, ``encoder/layers/0/attention/query/kernel``); in
``train.mode = head`` only the head is there and the encoder is the pre-trained checkpoint
named in ``meta.json`` (``model_path``). ``meta.json`` says how to rebuild the model:
checkpoint, pooling, ``max_len``, label names, task, mode, round and compute dtype.
:func:`rebuild` turns both back into a :class:`SequenceClassifier` with its tokenizer, for
``batl_jax.predict`` and ``batl_jax.export``.
"""

from __future__ import annotations

import json
import os
import types
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from batl_jax.errors import ModelError, StateError

MODEL_DIR = "model"
PARAMS_FILE = "params.safetensors"
META_FILE = "meta.json"
FORMAT = 1  # meta.json's "format": bumped when the layout changes
# Keys meta.json must hold for rebuild().
META_KEYS = ("model", "model_path", "pooling", "max_len", "label_names", "task", "mode", "dtype")
# Parameters the predicting model leaves out: BATL's integrated-feature layer e(x) serves
# selection only, never the class probabilities.
SELECTION_ONLY = ("integrate/",)


def flatten(tree: Mapping, prefix: str = "") -> dict[str, np.ndarray]:
    """A nested pure dict (NNX ``to_pure_dict``) as ``{"a/b/c": array}``."""
    out: dict[str, np.ndarray] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, name + "/"))
        else:
            out[name] = np.ascontiguousarray(np.asarray(value))
    return out


def final_meta(parts, round_: int) -> dict[str, Any]:
    """``meta.json`` for the model of round ``round_`` of the run built as ``parts``
    (a :class:`batl_jax.setup.Parts`)."""
    cfg = parts.cfg
    return {
        "format": FORMAT,
        "model": cfg.model.name,
        "model_path": str(Path(parts.factory.checkpoint_dir).resolve()),
        "revision": cfg.model.revision,
        "pooling": cfg.model.pooling,
        "max_len": int(parts.buckets[-1]),
        "buckets": [int(b) for b in parts.buckets],
        "label_names": list(parts.task.label_names),
        "task": parts.task.name,
        "data_name": cfg.data.name,
        "no_relation_label": cfg.task.no_relation_label,
        "text_field": cfg.data.text_field,
        "mode": cfg.train.mode,
        "round": int(round_),
        "dtype": cfg.model.dtype,
        "dropout": float(cfg.train.dropout),
        "vocab_size": len(parts.tokenizer),
    }


def save_final(workdir: Path, params: Mapping, *, meta: Mapping) -> None:
    """Write ``workdir/model/params.safetensors`` and ``meta.json``, each atomically
    (temporary file, fsync, rename): a kill leaves the old model or the new one."""
    from safetensors.numpy import save

    missing = [k for k in META_KEYS if k not in meta]
    if missing:
        raise ValueError(f"meta lacks {missing}")  # a caller's bug, not a user's input
    folder = Path(workdir) / MODEL_DIR
    folder.mkdir(parents=True, exist_ok=True)
    tensors = flatten(params)
    tmp = folder / f"{PARAMS_FILE}.tmp"
    # Serialized in memory, written by Python: a full disk is an OSError naming the file
    # (safetensors' own writer raises its SafetensorError, a traceback at the entry points).
    data = save(tensors, metadata={"format": "batl_jax", "round": str(meta.get("round"))})
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, folder / PARAMS_FILE)
    text = json.dumps(dict(meta), indent=2, sort_keys=True) + "\n"
    tmp_meta = folder / f"{META_FILE}.tmp"
    with open(tmp_meta, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp_meta, folder / META_FILE)


def read_params(path: Path) -> dict[str, np.ndarray]:
    """The tensors of a safetensors file, as numpy arrays."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="numpy") as f:
            return {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:  # SafetensorError, OSError: a truncated or foreign file
        first = (str(e).strip().splitlines() or [""])[0][:160]
        raise StateError(
            f"cannot read {path} ({type(e).__name__}: {first}); the file is damaged: rerun "
            "the last round (delete the workdir's newest checkpoint and rerun) or restore it"
        ) from e


def read_meta(path: Path) -> dict:
    """A model's ``meta.json`` checked to hold every key :func:`rebuild` needs."""
    try:
        meta = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise StateError(f"cannot read {path} ({type(e).__name__}); restore the file") from e
    missing = [k for k in META_KEYS if not isinstance(meta, dict) or k not in meta]
    if missing:
        raise StateError(f"{path} lacks {', '.join(missing)}; restore the file")
    return meta


def load_final(workdir: Path) -> tuple[dict[str, np.ndarray], dict]:
    """``(flat params, meta)`` of the run in ``workdir``; a StateError when it has none."""
    workdir = Path(workdir)
    if not (workdir / "config.json").is_file():
        raise StateError(f"{workdir} holds no batl_jax run; pass the --workdir of a run")
    folder = workdir / MODEL_DIR
    if not (folder / PARAMS_FILE).is_file() or not (folder / META_FILE).is_file():
        raise StateError(
            f"workdir {workdir} has no trained model yet: run the rounds first (rerun its "
            "batl_jax.main command until the last round is done)"
        )
    return read_params(folder / PARAMS_FILE), read_meta(folder / META_FILE)


def task_tokenizer(model_dir: str, meta: Mapping):
    """The run's tokenizer: the checkpoint's, plus the task's tokens (relation markers)."""
    from batl_jax import tasks
    from batl_jax.model import hf_params

    tokenizer = hf_params.load_tokenizer(model_dir)
    cfg = types.SimpleNamespace(
        task=types.SimpleNamespace(
            name=meta["task"],
            no_relation_label=meta.get("no_relation_label", ""),
            input_format="distre",
            p_at_n=(100,),
        )
    )
    dataset = types.SimpleNamespace(name=meta.get("data_name", ""), label_names=meta["label_names"])
    tasks.get_task(cfg, dataset).prepare_tokenizer(tokenizer)
    return tokenizer


def apply_params(model, flat: Mapping[str, np.ndarray], where: str) -> None:
    """Put ``flat`` into ``model``'s parameters (every one must be there, shapes equal);
    ``flat`` may hold more (an encoder the caller built from its checkpoint, BATL's e(x))."""
    import jax.numpy as jnp
    from flax import nnx

    state = nnx.state(model, nnx.Param)
    pure = nnx.to_pure_dict(state)
    problems: list[str] = []

    def fill(node: dict, prefix: str) -> None:
        for key, value in node.items():
            name = f"{prefix}{key}"
            if isinstance(value, dict):
                fill(value, name + "/")
            elif name not in flat:
                problems.append(f"missing {name} {tuple(value.shape)}")
            elif tuple(flat[name].shape) != tuple(value.shape):
                problems.append(f"{name} has shape {tuple(flat[name].shape)}, not {value.shape}")
            else:
                node[key] = jnp.asarray(flat[name], dtype=value.dtype)

    fill(pure, "")
    if problems:
        raise ModelError(
            f"{where} does not fit the model it names ({len(problems)} problem(s), first: "
            f"{problems[0]}); it was written by another batl_jax version or edited: rerun "
            "the last round",
            details=problems,
        )
    nnx.replace_by_pure_dict(state, pure)
    nnx.update(model, state)


def rebuild(model_dir: str, meta: Mapping, head: Mapping[str, np.ndarray], where: str):
    """``(classifier, tokenizer)``: the encoder of ``model_dir`` with the trained
    parameters ``head`` on top (``head`` may hold the encoder too: full mode)."""
    from batl_jax.model.factory import ModelFactory

    tokenizer = task_tokenizer(model_dir, meta)
    factory = ModelFactory(
        model_dir,
        len(meta["label_names"]),
        pooling=meta["pooling"],
        dropout=float(meta.get("dropout", 0.1)),
        embed_dim=0,
        normalize=True,
        vocab_size=len(tokenizer),
        dtype=meta["dtype"],
    )
    model = factory.classifier(0, with_encoder=True)
    kept = {k: v for k, v in head.items() if not k.startswith(SELECTION_ONLY)}
    if meta["mode"] == "head":
        kept = {k: v for k, v in kept.items() if not k.startswith("encoder/")}
        kept.update(_encoder_params(model))
    apply_params(model, kept, where)
    return model, tokenizer


def _encoder_params(model) -> dict[str, np.ndarray]:
    """The model's own encoder parameters, flat (head mode keeps the pre-trained encoder)."""
    from flax import nnx

    return flatten(nnx.to_pure_dict(nnx.state(model.encoder, nnx.Param)), "encoder/")
