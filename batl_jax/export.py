"""``python -m batl_jax.export --workdir=W --out=DIR``: a run's final model as a Hugging
Face checkpoint (README, "Your own project").

``DIR`` gets ``config.json`` (with ``id2label`` / ``label2id``), ``model.safetensors`` and
the run's tokenizer files (relation marker tokens included). With ``model.pooling=cls``
it is a ``BertForSequenceClassification`` that
``transformers.AutoModelForSequenceClassification`` loads; with ``mean`` the head is in
``batl_head.safetensors``, explained in ``DIR/README.md`` (:mod:`batl_jax.model.export`).
``python -m batl_jax.predict --model=DIR`` loads either. A run without a final model yet,
or an ``--out`` that is a file or a folder that is not empty, is refused in one line
(exit status 2) and nothing is written.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path


def command_status(run: Callable[[], str]) -> int:
    """Run a command, print its result; what a user can fix becomes ``error: ...`` lines
    and the exit status of :func:`batl_jax.main.report_exception` (a bug keeps its traceback)."""
    from batl_jax.main import report_exception

    try:
        print(run(), flush=True)
    except BaseException as e:
        return report_exception(e)
    return 0


def export(workdir: Path, out: Path) -> str:
    """Export the final model of ``workdir`` to ``out``; returns what to tell the user."""
    from batl_jax.model import export as hf_export
    from batl_jax.model import store

    params, meta = store.load_final(workdir)
    hf_export.check_out(out)  # before the seconds of loading the model
    where = str(Path(workdir) / store.MODEL_DIR)
    model, tokenizer = store.rebuild(meta["model_path"], meta, params, where)
    hf_export.write(model, tokenizer, meta, out)
    head = (
        "load it with transformers.AutoModelForSequenceClassification.from_pretrained("
        f"{str(out)!r})"
        if meta["pooling"] == "cls"
        else (
            f"model.pooling={meta['pooling']} has no transformers head: AutoModel loads the "
            f"encoder and the classifier head is {out / hf_export.HEAD_FILE} (see "
            f"{out / 'README.md'})"
        )
    )
    return (
        f"wrote the model of round {meta.get('round')} ({len(meta['label_names'])} labels) to "
        f"{out}: {head}; python -m batl_jax.predict --model={out} uses it"
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m batl_jax.export", description=__doc__)
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.add_argument("--workdir", required=True, type=Path, help="the run's --workdir")
    p.add_argument("--out", required=True, type=Path, help="a new folder for the checkpoint")
    args = p.parse_args(argv)
    return command_status(lambda: export(args.workdir, args.out))


if __name__ == "__main__":
    sys.exit(main())
