"""Hugging Face BERT checkpoints -> NNX modules, and the matching tokenizer.

A checkpoint is a directory (or a hub id, downloaded once with ``huggingface_hub``)
holding ``config.json`` and weights in one of these forms, in order of preference:

1. ``model.safetensors``;
2. sharded safetensors listed by ``model.safetensors.index.json``;
3. ``flax_model.msgpack`` (HF's Flax layout: kernels already (in, out)).

Pickled ``pytorch_model.bin`` files are refused (loading a pickle can run code);
``python -m batl_jax.model.convert DIR`` turns one into ``model.safetensors``.

Loading follows jax-ml/bonsai: every tensor name is normalised to one canonical
HF style (no ``bert.`` prefix, ``LayerNorm.weight/bias``, torch (out, in) layout),
mapped through one key table to an NNX path plus a transform, and shape-checked
against the module built abstractly with ``nnx.eval_shape`` (no random
initialisation of weights that are about to be overwritten). All mismatches and
missing tensors are reported together in one :class:`ModelError`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import pathlib
import re
from collections.abc import Callable, Iterable
from typing import Any, TypeVar, cast

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from batl_jax.errors import ModelError
from batl_jax.model.bert import BertConfig, BertEncoder, BertMLMHead, BertPooler

log = logging.getLogger(__name__)

CONVERT_COMMAND = "python -m batl_jax.model.convert"
_ALLOW_PATTERNS = [
    "config.json",
    "*.safetensors",
    "model.safetensors.index.json",
    "flax_model.msgpack",
    "tokenizer*",
    "vocab.txt",
    "special_tokens_map.json",
    "merges.txt",
]

# ----------------------------------------------------------------------------- key table

_TRANSPOSE = "transpose"  # torch Linear (out, in) -> NNX kernel (in, out)


def _linear(hf: str, path: str) -> list[tuple[str, str, str | None]]:
    return [(f"{hf}.weight", f"{path}.kernel", _TRANSPOSE), (f"{hf}.bias", f"{path}.bias", None)]


def _layer_norm(hf: str, path: str) -> list[tuple[str, str, str | None]]:
    return [(f"{hf}.weight", f"{path}.scale", None), (f"{hf}.bias", f"{path}.bias", None)]


def _embed(hf: str, path: str) -> list[tuple[str, str, str | None]]:
    return [(f"{hf}.weight", f"{path}.embedding", None)]


_L = "encoder.layer.{i}"  # HF layer prefix
_N = "encoder.layers.{i}"  # NNX layer prefix (the first component names the target module)

# Canonical HF name template -> NNX path template (+ transform). "{i}" is a layer index;
# the same table, read backwards, names the HF tensors that a checkpoint lacks.
_KEY_TABLE: list[tuple[str, str, str | None]] = [
    *_embed("embeddings.word_embeddings", "encoder.embeddings.word_embeddings"),
    *_embed("embeddings.position_embeddings", "encoder.embeddings.position_embeddings"),
    *_embed("embeddings.token_type_embeddings", "encoder.embeddings.token_type_embeddings"),
    *_layer_norm("embeddings.LayerNorm", "encoder.embeddings.layer_norm"),
    *_linear(f"{_L}.attention.self.query", f"{_N}.attention.query"),
    *_linear(f"{_L}.attention.self.key", f"{_N}.attention.key"),
    *_linear(f"{_L}.attention.self.value", f"{_N}.attention.value"),
    *_linear(f"{_L}.attention.output.dense", f"{_N}.attention.output"),
    *_layer_norm(f"{_L}.attention.output.LayerNorm", f"{_N}.attention.layer_norm"),
    *_linear(f"{_L}.intermediate.dense", f"{_N}.intermediate"),
    *_linear(f"{_L}.output.dense", f"{_N}.output"),
    *_layer_norm(f"{_L}.output.LayerNorm", f"{_N}.layer_norm"),
    *_linear("pooler.dense", "pooler.dense"),
    *_linear("cls.predictions.transform.dense", "mlm_head.dense"),
    *_layer_norm("cls.predictions.transform.LayerNorm", "mlm_head.layer_norm"),
    ("cls.predictions.bias", "mlm_head.bias", None),
]

# Tensors that are read elsewhere or deliberately dropped (not "unknown").
_DECODER_WEIGHT = "cls.predictions.decoder.weight"  # tied to the word embeddings
_DECODER_BIAS = "cls.predictions.decoder.bias"  # an alias of cls.predictions.bias
_IGNORED = re.compile(r"^(embeddings\.position_ids|cls\.seq_relationship\..*)$")


def _template_regex(template: str) -> re.Pattern:
    return re.compile("^" + re.escape(template).replace(r"\{i\}", r"(?P<i>\d+)") + "$")


_FORWARD = [(_template_regex(hf), nx, t) for hf, nx, t in _KEY_TABLE]
_BACKWARD = [(_template_regex(nx), hf) for hf, nx, _ in _KEY_TABLE]


def canonical_key(key: str) -> str:
    """One HF style for every checkpoint: no ``bert.`` prefix, ``LayerNorm.weight/bias``."""
    key = key.removeprefix("bert.")
    # TF-era checkpoints name LayerNorm parameters gamma/beta.
    key = re.sub(r"LayerNorm\.gamma$", "LayerNorm.weight", key)
    return re.sub(r"LayerNorm\.beta$", "LayerNorm.bias", key)


def _to_nnx(key: str) -> tuple[str, str | None] | None:
    """Canonical HF key -> (NNX path, transform), or None if the table has no entry."""
    for pattern, template, transform in _FORWARD:
        m = pattern.match(key)
        if m:
            return template.format(**m.groupdict()), transform
    return None


def hf_name(path: str) -> str:
    """NNX path -> canonical HF tensor name (the key table read backwards); unknown paths as is."""
    for pattern, template in _BACKWARD:
        m = pattern.match(path)
        if m:
            return template.format(**m.groupdict())
    return path


# ----------------------------------------------------------------------------- reading files


def resolve_checkpoint(
    name_or_path: str, *, revision: str | None = None, cache_dir: str | None = None
) -> pathlib.Path:
    """A local model directory as is; otherwise a hub id, downloaded (or found in the cache)."""
    local = pathlib.Path(name_or_path).expanduser()
    if local.is_dir():
        return local
    if local.exists():
        raise ModelError(f"{name_or_path} is a file: pass the model directory that contains it")
    s = str(name_or_path)
    looks_like_path = (
        s.startswith(("/", "./", "../", "~", "."))
        or s.count("/") > 1
        or (os.sep != "/" and os.sep in s)
    )
    if looks_like_path:
        raise ModelError(
            f"no such directory: {name_or_path}; pass an existing model directory "
            f"(with config.json and model.safetensors) or a hub id such as 'bert-base-uncased'"
        )
    from huggingface_hub import snapshot_download

    try:
        return pathlib.Path(
            snapshot_download(
                s, revision=revision, cache_dir=cache_dir, allow_patterns=_ALLOW_PATTERNS
            )
        )
    except Exception as e:  # every hub failure means the same to the user
        raise ModelError(
            f"model {s!r} is neither a local directory nor reachable on the Hugging Face hub "
            f"({type(e).__name__}: {e}); pass a local model directory, or check the network "
            f"and HF_HUB_OFFLINE (unset it to download)"
        ) from e


def _read_safetensors(files: Iterable[pathlib.Path]) -> dict[str, np.ndarray]:
    from safetensors import safe_open

    out = {}
    for f in files:
        try:
            with safe_open(f, framework="numpy") as sf:
                for k in sf.keys():
                    out[k] = sf.get_tensor(k)
        except Exception as e:  # SafetensorError, OSError, ...: a truncated or foreign file
            first = (str(e).strip().splitlines() or [""])[0][:160]
            raise ModelError(
                f"cannot read {f} ({type(e).__name__}: {first}); the file is damaged or not "
                "safetensors: re-download the model"
            ) from e
    return out


def _read_flax_msgpack(file: pathlib.Path) -> dict[str, np.ndarray]:
    """HF Flax params -> torch-style names and layouts, so one key table serves both."""
    from flax.serialization import msgpack_restore

    try:
        tree = msgpack_restore(file.read_bytes())
    except Exception as e:  # msgpack raises several types for damaged files
        raise ModelError(
            f"cannot read {file} ({type(e).__name__}); the file is damaged: re-download the model"
        ) from e
    if not isinstance(tree, dict):
        raise ModelError(f"{file} holds no parameter tree; re-download the model")
    tree = tree.get("params", tree)  # some files wrap the tree in {"params": ...}
    out = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        names = [str(p.key) for p in path]
        arr = np.asarray(leaf)
        if names[-1] == "kernel":  # Flax Dense (in, out) -> torch (out, in); a numpy view
            arr = arr.T
        if names[-1] in ("kernel", "embedding", "scale"):
            names[-1] = "weight"
        out[".".join(names)] = arr
    return out


def _read_weights(path: pathlib.Path) -> dict[str, np.ndarray]:
    if (path / "model.safetensors").is_file():
        return _read_safetensors([path / "model.safetensors"])
    index = path / "model.safetensors.index.json"
    if index.is_file():
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        missing = [s for s in shards if not (path / s).is_file()]
        if missing:
            raise ModelError(
                f"{index} lists shards missing from {path}: {', '.join(missing)}; "
                f"download the complete checkpoint"
            )
        return _read_safetensors(path / s for s in shards)
    if (path / "flax_model.msgpack").is_file():
        return _read_flax_msgpack(path / "flax_model.msgpack")
    if (path / "pytorch_model.bin").is_file() or (path / "pytorch_model.bin.index.json").is_file():
        raise ModelError(
            f"{path} holds only a pickled pytorch_model.bin, and pickle checkpoints are refused "
            f"(loading one can run arbitrary code); convert it once with: "
            f"{CONVERT_COMMAND} {path}"
        )
    raise ModelError(
        f"no weights in {path}: expected model.safetensors, model.safetensors.index.json or "
        f"flax_model.msgpack; if the hub repository only has pytorch_model.bin, download it to "
        f"a directory and run {CONVERT_COMMAND} DIR"
    )


# ----------------------------------------------------------------------------- loading


@dataclasses.dataclass
class PretrainedBert:
    """What :func:`load_pretrained` returns."""

    config: BertConfig
    encoder: BertEncoder
    pooler: BertPooler | None
    mlm_head: BertMLMHead | None
    path: pathlib.Path
    has_pooler_weights: bool
    has_mlm_weights: bool


_M = TypeVar("_M", bound=nnx.Module)


def _assemble(
    ctor: Callable[[], _M], name: str, tensors: dict[str, np.ndarray], errors: list[str]
) -> _M | None:
    """Build ``ctor()``'s module abstractly, fill its Params from ``tensors``, merge.

    ``tensors`` maps NNX paths (``"<name>.<path in module>"``) to already-transformed
    arrays. Shape mismatches and missing Params are appended to ``errors``; then None
    is returned. The non-Param state (dropout RNG keys and counters) is created by the
    real constructor under ``jax.jit``: only those outputs are kept, so the weight
    initialisers are dead code and never run, and the keys equal those of an eagerly
    built module with the same seed.
    """
    abstract = nnx.eval_shape(ctor)
    graphdef, params, rest = cast(tuple[Any, Any, Any], nnx.split(abstract, nnx.Param, ...))
    rest = jax.jit(lambda: cast(tuple[Any, Any, Any], nnx.split(ctor(), nnx.Param, ...))[2])()
    pure: Any = nnx.to_pure_dict(params)
    ok = True
    for path, var in nnx.to_flat_state(params):
        full = ".".join([name, *map(str, path)])
        expected = var.get_value()
        if full not in tensors:
            errors.append(f"missing {hf_name(full)} (for {full} {tuple(expected.shape)})")
            ok = False
            continue
        arr = tensors[full]
        if tuple(arr.shape) != tuple(expected.shape):
            errors.append(
                f"{hf_name(full)} has shape {tuple(arr.shape)}, but config.json implies "
                f"{tuple(expected.shape)} for {full}"
            )
            ok = False
            continue
        node = pure
        for p in path[:-1]:
            node = node[p]
        node[path[-1]] = jnp.asarray(arr, dtype=expected.dtype)
    if not ok:
        return None
    nnx.replace_by_pure_dict(params, pure)
    return nnx.merge(graphdef, params, rest)


def _nnx_tensors(
    raw: dict[str, np.ndarray], path: pathlib.Path
) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
    """``raw`` under NNX paths, transformed; and the MLM decoder weight, kept for the tie check."""
    tensors: dict[str, np.ndarray] = {}
    unknown = []
    decoder_weight = None
    for key, arr in raw.items():
        canon = canonical_key(key)
        if canon == _DECODER_WEIGHT:
            decoder_weight = arr
            continue
        if canon == _DECODER_BIAS:
            canon = "cls.predictions.bias"  # HF ties the two; either may be saved
        if _IGNORED.match(canon):
            continue
        mapped = _to_nnx(canon)
        if mapped is None:
            unknown.append(key)
            continue
        nnx_path, transform = mapped
        tensors[nnx_path] = arr.T if transform == _TRANSPOSE else arr
    if unknown:
        log.debug("ignoring %d tensors unknown to BERT in %s: %s", len(unknown), path, unknown)
    return tensors, decoder_weight


def _untied_decoder(decoder_weight: np.ndarray | None, tensors: dict[str, np.ndarray]) -> list[str]:
    """The error for a saved MLM decoder that differs from the word embeddings; none if tied."""
    word = tensors.get("encoder.embeddings.word_embeddings.embedding")
    if decoder_weight is None or word is None or np.array_equal(decoder_weight, word):
        return []
    return [
        f"{_DECODER_WEIGHT} differs from the word embeddings: untied MLM decoders are not supported"
    ]


def load_pretrained(
    name_or_path: str,
    *,
    with_pooler: bool = True,
    with_mlm_head: bool = False,
    dtype=jnp.float32,
    param_dtype=jnp.float32,
    rngs_seed: int = 0,
    revision: str | None = None,
    cache_dir: str | None = None,
) -> PretrainedBert:
    """Load a BERT checkpoint into NNX modules.

    Args:
      name_or_path: a model directory, or a hub id (see :func:`resolve_checkpoint`).
      with_pooler: also return the pooler; randomly initialised (and
        ``has_pooler_weights=False``) when the checkpoint has none, e.g. MiniLM.
      with_mlm_head: also return the MLM head; a ModelError if the checkpoint has none.
      dtype: computation dtype; ``param_dtype``: storage dtype of the parameters.
      rngs_seed: seeds Params that the checkpoint lacks (``params=seed``) and the
        dropout streams (``dropout=seed + 1``).
      revision, cache_dir: passed to the hub download.
    """
    path = resolve_checkpoint(name_or_path, revision=revision, cache_dir=cache_dir)
    config = BertConfig.from_json_file(path / "config.json")
    tensors, decoder_weight = _nnx_tensors(_read_weights(path), path)

    has_pooler = any(k.startswith("pooler.") for k in tensors)
    has_mlm = any(k.startswith("mlm_head.") for k in tensors)
    if with_mlm_head and not has_mlm:
        raise ModelError(
            f"checkpoint {path} has no MLM head (no cls.predictions.* tensors); ALPS needs one "
            f"to score surprisal: use a checkpoint saved from BertForMaskedLM or "
            f"BertForPreTraining (e.g. bert-base-uncased), or choose another strategy"
        )

    def rngs():
        return nnx.Rngs(params=rngs_seed, dropout=rngs_seed + 1)

    kw = dict(dtype=dtype, param_dtype=param_dtype)
    errors: list[str] = []
    encoder = _assemble(lambda: BertEncoder(config, rngs=rngs(), **kw), "encoder", tensors, errors)
    pooler = None
    if with_pooler:
        if has_pooler:
            pooler = _assemble(
                lambda: BertPooler(config, rngs=rngs(), **kw), "pooler", tensors, errors
            )
        else:
            pooler = BertPooler(config, rngs=rngs(), **kw)
    mlm_head = None
    if with_mlm_head:
        mlm_head = _assemble(
            lambda: BertMLMHead(config, rngs=rngs(), **kw), "mlm_head", tensors, errors
        )
        errors += _untied_decoder(decoder_weight, tensors)
    layers = {int(m.group(1)) for k in tensors if (m := re.match(r"encoder\.layers\.(\d+)\.", k))}
    if extra := sorted(i for i in layers if i >= config.num_hidden_layers):
        errors.append(f"weights of layer(s) {extra} beyond num_hidden_layers")
    if errors:
        raise ModelError(
            f"checkpoint {path} does not match its config.json ({len(errors)} problem(s), "
            f"first: {errors[0]}); re-download the model or fix config.json",
            details=errors,
        )
    assert encoder is not None  # _assemble returned None only beside an error, raised above
    return PretrainedBert(config, encoder, pooler, mlm_head, path, has_pooler, has_mlm)


_VOCAB_FILES = ("tokenizer.json", "vocab.txt", "vocab.json", "spiece.model")


def load_tokenizer(name_or_path: str, *, revision: str | None = None, cache_dir: str | None = None):
    """The checkpoint's fast tokenizer, with any built-in padding/truncation switched off.

    Some ``tokenizer.json`` files (MiniLM's pads and truncates to 128) carry their own
    length policy; batl_jax buckets lengths itself, so those are disabled.
    """
    import transformers

    path = resolve_checkpoint(name_or_path, revision=revision, cache_dir=cache_dir)
    # A missing or damaged config.json first: transformers would report it as a tokenizer
    # problem, or (no tokenizer files either) build a 5-token tokenizer without a word.
    BertConfig.from_json_file(path / "config.json")
    if not any((path / f).is_file() for f in _VOCAB_FILES):
        raise ModelError(
            f"cannot load a tokenizer from {path}: it has none of {', '.join(_VOCAB_FILES)}; "
            "copy the model's tokenizer.json (or vocab.txt) into the directory"
        )
    try:
        tok = transformers.AutoTokenizer.from_pretrained(
            str(path), use_fast=True, trust_remote_code=False
        )
    except Exception as e:  # transformers raises many types for bad dirs
        raise ModelError(
            f"the tokenizer files in {path} are unreadable ({type(e).__name__}: {e}); "
            "re-download or restore tokenizer.json (or vocab.txt with tokenizer_config.json)"
        ) from e
    backend = getattr(tok, "backend_tokenizer", None)
    if backend is None:
        raise ModelError(
            f"{path} gives only a slow (Python) tokenizer; batl_jax needs a fast one: "
            f"add the model's tokenizer.json to the directory"
        )
    backend.no_padding()
    backend.no_truncation()
    return tok
