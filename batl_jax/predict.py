"""``python -m batl_jax.predict``: the label and class probabilities of every row of a file
(README, "Your own project").

    python -m batl_jax.predict --workdir=W --input=FILE --output=FILE [--text-field=text]
    python -m batl_jax.predict --model=DIR --input=FILE --output=FILE [--text-field=text]
    python -m batl_jax.predict --workdir=W --pool --output=FILE

The model is a run's final model (``--workdir``) or a folder written by
``batl_jax.export`` (``--model``). ``--input`` is a CSV, TSV, JSON(L) or Parquet file;
``--pool`` scores the rows of the run's pool that are still unlabeled. ``--output``
(``.csv`` or ``.jsonl``) holds every input column plus ``predicted_label`` and one
probability per class (CSV: ``prob_<label>`` columns; JSONL: a ``probs`` object), in the
input's row order. Rows are tokenised, batched and padded to length buckets as the
loop scores its pool.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from pathlib import Path

import numpy as np

from batl_jax.errors import ConfigError, DataError
from batl_jax.export import command_status

OUTPUT_FORMATS = (".csv", ".jsonl")
PREDICTED = "predicted_label"


def check_output(path: Path) -> str:
    """The output format (``.csv`` / ``.jsonl``), checked before any work."""
    suffix = Path(path).suffix.lower()
    if suffix not in OUTPUT_FORMATS:
        raise ConfigError(f"--output {path}: name it FILE.csv or FILE.jsonl")
    if Path(path).is_dir():
        raise ConfigError(f"--output {path} is a folder; pass a file name (.csv or .jsonl)")
    return suffix


def load_model(workdir: Path | None, model_dir: Path | None):
    """``(classifier, tokenizer, meta)`` from a run's workdir or an exported folder."""
    from batl_jax.model import export, store

    if model_dir is not None:
        return export.load_exported(model_dir)
    assert workdir is not None  # the command line asks for one of the two
    params, meta = store.load_final(workdir)
    where = str(Path(workdir) / store.MODEL_DIR)
    model, tokenizer = store.rebuild(meta["model_path"], meta, params, where)
    return model, tokenizer, meta


def probabilities(model, tokenizer, meta, texts: list[str], batch_size: int) -> np.ndarray:
    """``(N, C)`` class probabilities, scored in length buckets like the pool pass."""
    from batl_jax import data, sharding, train
    from batl_jax.features import FeaturePasses
    from batl_jax.strategies.base import softmax

    mesh = sharding.make_mesh()
    max_len = int(meta["max_len"])
    buckets = data.check_buckets(meta.get("buckets") or data.DEFAULT_BUCKETS, max_len)
    shards = sharding.num_shards(mesh)
    encoded = {"input": data.encode_texts(texts, tokenizer, max_len)}
    passes = FeaturePasses(encoded, buckets, -(-batch_size // shards) * shards)
    graphdef, params, rest = train.split_model(model)
    steps = train.Steps(graphdef, mesh, train.LossConfig(), 0.0)
    params = sharding.put_tree(params, sharding.replicated(mesh))
    rest = sharding.put_tree(rest, sharding.replicated(mesh))
    out = passes.run(steps, params, rest, "input", ("logits",), desc="predict")
    return softmax(out["logits"])


def read_input(path: Path, text_field: str) -> tuple[list[dict], list[str], list[str]]:
    """``(records, columns, texts)`` of ``--input``; every row needs a non-blank text."""
    from batl_jax.data.reading import file_format, read_table

    path = Path(path)
    file_format(path, "--input")
    if not path.is_file():
        raise DataError(f"--input {path}: no such file; pass the file to predict")
    records, columns = read_table(path, "--input")
    if text_field not in columns:
        raise DataError(
            f"--input {path} has no column {text_field!r}; its columns are "
            f"{', '.join(columns)}: pass --text-field=ONE_OF_THEM"
        )
    texts = [r.get(text_field) for r in records]
    blank = [i + 1 for i, t in enumerate(texts) if t is None or not str(t).strip()]
    if blank:
        raise DataError(
            f"--input {path}: {len(blank)} row(s) have no text in {text_field!r} (first: row "
            f"{blank[0]}); fill them in or remove them"
        )
    if not records:
        raise DataError(f"--input {path} has no rows; pass a file with texts to predict")
    return records, columns, [str(t) for t in texts]


def pool_rows(workdir: Path) -> tuple[list[dict], list[str], list[str]]:
    """``(records, columns, texts)`` of the run's pool rows that are still unlabeled (the
    held-out evaluation rows of ``al.test_size`` are not in the pool)."""
    from batl_jax import labeled_dataset

    run = labeled_dataset.load_run(workdir)
    split = run.pool
    labeled = set(run.labeled_rows()) | set(run.held_out.tolist())
    rows = [i for i in range(len(split)) if i not in labeled]
    if not rows:
        raise DataError(f"every row of the pool of {workdir} is labeled; nothing to predict")
    columns = ["id", "text", *[c for c in (split.columns or {}) if c not in ("id", "text")]]
    records = []
    for i in rows:
        rec = {"id": split.ids[i], "text": split.texts[i]}
        for name, values in (split.columns or {}).items():
            rec.setdefault(name, values[i])
        records.append(rec)
    return records, columns, [split.texts[i] for i in rows]


def render(records, columns, probs: np.ndarray, label_names, suffix: str) -> str:
    """The output file's text: the input columns, the predicted label, the probabilities."""
    prob_columns = [f"prob_{n}" for n in label_names]
    clash = sorted({PREDICTED, "probs", *prob_columns} & set(columns))
    if clash:
        raise DataError(
            f"the input already has column(s) {', '.join(clash)}, which the output adds; "
            "rename them in the input"
        )
    predicted = [label_names[i] for i in probs.argmax(axis=1)]
    if suffix == ".jsonl":
        lines = []
        for rec, label, p in zip(records, predicted, probs, strict=True):
            out = {**rec, PREDICTED: label}
            out["probs"] = {n: round(float(v), 6) for n, v in zip(label_names, p, strict=True)}
            lines.append(json.dumps(out, ensure_ascii=False, default=str) + "\n")
        return "".join(lines)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow([*columns, PREDICTED, *prob_columns])
    for rec, label, p in zip(records, predicted, probs, strict=True):
        cells = ["" if rec.get(c) is None else rec.get(c) for c in columns]
        writer.writerow([*cells, label, *(f"{float(v):.6f}" for v in p)])
    return buf.getvalue()


def predict(args) -> str:
    """Run the command of ``args``; returns the summary line."""
    from batl_jax.run_files import atomic_write_text

    if (args.workdir is None) == (args.model is None):
        raise ConfigError("pass one of --workdir=W (a run) or --model=DIR (an export)")
    if (args.input is None) == (not args.pool):
        raise ConfigError("pass one of --input=FILE or --pool (the run's unlabeled rows)")
    if args.pool and args.workdir is None:
        raise ConfigError("--pool scores a run's unlabeled rows: pass --workdir=W with it")
    if args.batch_size < 1:
        raise ConfigError(f"--batch-size={args.batch_size}: use a positive number")
    suffix = check_output(args.output)
    model, tokenizer, meta = load_model(args.workdir, args.model)
    if meta["task"] != "classification":
        raise ConfigError(
            f"the model is a {meta['task']} model; predict handles classification models only"
        )
    if args.pool:
        records, columns, texts = pool_rows(args.workdir)
    else:
        field = args.text_field or meta.get("text_field") or "text"
        records, columns, texts = read_input(args.input, field)
    probs = probabilities(model, tokenizer, meta, texts, args.batch_size)
    text = render(records, columns, probs, list(meta["label_names"]), suffix)
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(Path(args.output), text)
    return f"wrote {len(records)} predictions to {args.output}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m batl_jax.predict", description=__doc__)
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.add_argument("--workdir", type=Path, help="a run's --workdir (its final model)")
    p.add_argument("--model", type=Path, help="a folder written by batl_jax.export")
    p.add_argument("--input", type=Path, help="CSV/TSV/JSON(L)/Parquet file of texts")
    p.add_argument("--pool", action="store_true", help="the run's pool rows still unlabeled")
    p.add_argument("--output", type=Path, required=True, help="FILE.csv or FILE.jsonl")
    p.add_argument("--text-field", default="", help="text column (default: the run's, or text)")
    p.add_argument("--batch-size", type=int, default=128, help="rows per scoring batch")
    args = p.parse_args(argv)
    import datasets

    datasets.disable_progress_bars()  # reading --input is quick; stderr is for errors
    return command_status(lambda: predict(args))


if __name__ == "__main__":
    sys.exit(main())
