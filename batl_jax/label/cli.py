"""``python -m batl_jax.label``: status, export, import, push, pull, dataset (package doc)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from batl_jax.errors import BatlError
from batl_jax.label import batch, labelstudio


def _parser() -> argparse.ArgumentParser:
    from batl_jax import label

    p = argparse.ArgumentParser(prog="python -m batl_jax.label", description=label.__doc__)
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    sub = p.add_subparsers(dest="command", required=True)
    for name in ("status", "export", "import", "push", "pull", "dataset"):
        s = sub.add_parser(name)
        s.add_argument("--workdir", required=True, type=Path, help="the run's --workdir")
        if name == "dataset":
            s.add_argument("--out", required=True, type=Path, help="FILE.csv or FILE.jsonl")
        if name == "export":
            s.add_argument("--out", type=Path, help="output folder (default WORKDIR/export)")
            s.add_argument("--all", action="store_true", help="the whole batch, labeled or not")
        if name == "import":
            s.add_argument("files", nargs="+", type=Path, help="filled-in CSV/JSONL/JSON")
        if name in ("import", "pull"):
            s.add_argument("--allow-blank", action="store_true", help="skip blank labels")
        if name in ("push", "pull"):
            s.add_argument("--url", help="Label Studio server (remembered after a push)")
            s.add_argument("--api-key", help="access token (default: env LABEL_STUDIO_API_KEY)")
            s.add_argument(
                "--project", help="project id or title (push creates it; remembered after)"
            )
    return p


def _run(args) -> str:
    if args.command == "dataset":  # every labeled row so far (batl_jax.labeled_dataset)
        from batl_jax import labeled_dataset

        return labeled_dataset.write(args.workdir, args.out)
    if args.command == "export":
        return "\n".join(str(f) for f in batch.export(args.workdir, args.out, args.all))
    if args.command == "import":
        return batch.import_labels(args.workdir, args.files, args.allow_blank)
    if args.command == "push":
        return labelstudio.push(args.workdir, args.url, args.api_key, args.project)
    if args.command == "pull":
        return labelstudio.pull(
            args.workdir, args.url, args.api_key, args.project, args.allow_blank
        )
    return batch.status(args.workdir)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        print(_run(args))
    except BatlError as e:
        print(f"error: {e}", file=sys.stderr)
        for line in e.details:
            print(f"  {line}", file=sys.stderr)
        return e.exit_code
    except OSError as e:  # a folder that cannot be written, a full disk
        where = f" {e.filename}" if e.filename else ""
        print(f"error: cannot use{where} ({e.strerror or e}); fix the path", file=sys.stderr)
        return 2
    return 0
