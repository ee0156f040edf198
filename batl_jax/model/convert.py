"""Convert a pickled ``pytorch_model.bin`` checkpoint to ``model.safetensors``.

    python -m batl_jax.model.convert DIR [--out OUT_DIR]

batl_jax refuses to read pickle files itself (unpickling can run arbitrary code),
so this one-off step, run only on the user's request, reads the pickle with
``torch.load(weights_only=True)`` (torch's restricted unpickler: tensors and plain
containers only) and writes the same tensors as safetensors. Sharded
``pytorch_model.bin.index.json`` checkpoints are merged into one file. Without
``--out`` the file is written next to the pickle; with it, config and tokenizer
files are copied along so OUT_DIR is a complete model directory.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import shutil
import sys

from batl_jax.errors import BatlError, ModelError

# Files that make a model directory usable besides its weights.
_SIDE_FILES = (
    "config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.txt",
    "special_tokens_map.json",
    "merges.txt",
)


def _import_torch():
    try:
        import torch
    except ImportError as e:
        raise ModelError(
            "converting pytorch_model.bin needs PyTorch, which is not installed: "
            "pip install torch (the CPU build is enough), then rerun the conversion"
        ) from e
    return torch


def _pickle_files(src: pathlib.Path) -> list[pathlib.Path]:
    single = src / "pytorch_model.bin"
    if single.is_file():
        return [single]
    index = src / "pytorch_model.bin.index.json"
    if index.is_file():
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        missing = [s for s in shards if not (src / s).is_file()]
        if missing:
            raise ModelError(f"{index} lists missing shards: {', '.join(missing)}; download them")
        return [src / s for s in shards]
    raise ModelError(f"no pytorch_model.bin (or its index) in {src}: nothing to convert")


def convert(src: str | pathlib.Path, out: str | pathlib.Path | None = None) -> pathlib.Path:
    """Write ``OUT/model.safetensors`` from the pickle in ``src``; returns its path."""
    src = pathlib.Path(src).expanduser()
    if not src.is_dir():
        raise ModelError(f"no such directory: {src}; pass the directory holding pytorch_model.bin")
    dst_dir = pathlib.Path(out).expanduser() if out is not None else src
    target = dst_dir / "model.safetensors"
    if target.exists():
        raise ModelError(
            f"{target} already exists and is not overwritten: delete it first, or pass "
            f"--out to write somewhere else"
        )
    files = _pickle_files(src)
    torch = _import_torch()
    from safetensors.torch import save_file

    tensors = {}
    for f in files:
        state = torch.load(f, map_location="cpu", weights_only=True)
        if (
            isinstance(state, dict)
            and "state_dict" in state
            and isinstance(state["state_dict"], dict)
        ):
            state = state["state_dict"]
        for k, v in state.items():
            if not isinstance(v, torch.Tensor):
                continue  # e.g. metadata ints; safetensors holds tensors only
            # Tied weights (decoder == word embeddings) share storage, which safetensors
            # refuses; cloning gives every name its own contiguous buffer.
            tensors[k] = v.detach().clone().contiguous()
    if not tensors:
        raise ModelError(f"{files[0]} holds no tensors: is it a model state dict?")

    dst_dir.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".safetensors.tmp")
    # "format": "pt" lets transformers read the file back as well.
    save_file(tensors, str(tmp), metadata={"format": "pt"})
    tmp.replace(target)  # atomic: an interrupted run never leaves a half-written file
    if dst_dir.resolve() != src.resolve():
        for name in _SIDE_FILES:
            if (src / name).is_file() and not (dst_dir / name).exists():
                shutil.copy2(src / name, dst_dir / name)
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m batl_jax.model.convert",
        description="Convert pytorch_model.bin to model.safetensors (never overwrites).",
    )
    parser.add_argument("dir", help="model directory holding pytorch_model.bin")
    parser.add_argument("--out", default=None, help="output directory (default: DIR)")
    args = parser.parse_args(argv)
    try:
        target = convert(args.dir, args.out)
    except BatlError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
