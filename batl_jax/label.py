"""Human labelling of a run's query batch (``al.oracle = human``).

    python -m batl_jax.label status --workdir=W
    python -m batl_jax.label export --workdir=W [--out=DIR] [--all]
    python -m batl_jax.label import --workdir=W FILE [FILE ...] [--allow-blank]

``export`` writes the batch the run waits for (by default only the samples still
without a label) as ``round_<r>.csv`` and ``round_<r>.jsonl`` (``id``, ``text``,
``head``/``tail`` entities for relation extraction, the model's top predictions as
hints, and an empty ``label`` column to fill in), plus ``round_<r>.labelstudio.json``
and ``labelstudio_config.xml`` for Label Studio. ``import`` reads a filled-in CSV or
JSONL, or a Label Studio JSON / JSON-MIN export, checks every line (unknown labels,
ids not in the batch, duplicates, blanks: all reported with line numbers, nothing
imported if any is wrong) and appends the labels to ``W/labels.jsonl``. Partial
batches are fine: the run continues once every sample of the batch has a label.
A label, once imported, is final (importing the same label again is a no-op).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from pathlib import Path
from xml.sax.saxutils import quoteattr

from batl_jax import oracle
from batl_jax.errors import BatlError, DataError, StateError
from batl_jax.run_files import atomic_write_text

_MAX_SHOWN = 20  # problems listed under the error line


def _context(workdir: Path) -> tuple[dict, list[dict], dict[str, dict]]:
    """(pending.json, the pending batch's rows, labels so far); refuses a workdir with no batch."""
    if not (workdir / "config.json").is_file():
        raise StateError(f"{workdir} holds no batl_jax run; pass the --workdir of a run")
    pending = oracle.read_pending(workdir)
    if pending is None:
        raise StateError(
            f"no query batch is pending in {workdir}: run python -m batl_jax.main with "
            "--config.al.oracle=human first; it stops with a batch to label"
        )
    return pending, oracle.read_batch(workdir, pending["round"]), oracle.read_labels(workdir)


def _what(round_: int) -> str:
    return "the initial set (round -1)" if round_ == -1 else f"round {round_}'s batch"


# ----------------------------------------------------------------------------- export


def _hint_text(hints: list[dict]) -> str:
    return "; ".join(f"{h['label']} ({h['prob']:.2f})" for h in hints)


def _labelstudio_config(label_names: list[str], relation: bool) -> str:
    header = '  <Header value="head: $head | tail: $tail"/>\n' if relation else ""
    choices = "".join(f"    <Choice value={quoteattr(n)}/>\n" for n in label_names)
    return (
        "<View>\n" + header + '  <Text name="text" value="$text"/>\n'
        '  <Choices name="label" toName="text" choice="single" showInLine="true">\n'
        + choices
        + "  </Choices>\n</View>\n"
    )


def export(workdir: Path, out: Path | None = None, everything: bool = False) -> list[Path]:
    """Write the pending batch (or its unlabeled rest) for labelling; returns the files."""
    pending, batch, labels = _context(workdir)
    r, names = pending["round"], pending["label_names"]
    rows = batch if everything else [b for b in batch if b["id"] not in labels]
    if not rows:
        raise StateError(
            f"every sample of {_what(r)} is labeled; rerun the batl_jax.main command of this "
            "run to continue (or pass --all to export the batch again)"
        )
    out = Path(out) if out else workdir / "export"
    out.mkdir(parents=True, exist_ok=True)
    relation = any("entities" in b for b in rows)
    stem = out / f"round_{r}"

    buf = io.StringIO()
    cols = ["id", "text"] + (["head", "tail"] if relation else []) + ["hints", "label"]
    writer = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n")
    writer.writeheader()
    jsonl, tasks = [], []
    for b in rows:
        ent = b.get("entities", {})
        flat = {"id": b["id"], "text": b["text"], "hints": _hint_text(b["hints"]), "label": ""}
        if relation:
            flat.update(head=ent["head"]["text"], tail=ent["tail"]["text"])
        writer.writerow(flat)
        rec = {"id": b["id"], "text": b["text"], "hints": b["hints"], "label": ""}
        if relation:
            rec["entities"] = ent
        jsonl.append(json.dumps(rec, ensure_ascii=False) + "\n")
        data = {"batl_id": b["id"], "text": b["text"], "hints": flat["hints"]}
        if relation:
            data.update(head=flat["head"], tail=flat["tail"])
        task = {"data": data}
        if b["hints"]:
            top = b["hints"][0]
            task["predictions"] = [
                {
                    "model_version": f"batl_jax round {r}",
                    "score": top["prob"],
                    "result": [
                        {
                            "from_name": "label",
                            "to_name": "text",
                            "type": "choices",
                            "value": {"choices": [top["label"]]},
                        }
                    ],
                }
            ]
        tasks.append(task)
    files = [
        stem.with_suffix(".csv"),
        stem.with_suffix(".jsonl"),
        stem.with_suffix(".labelstudio.json"),
        out / "labelstudio_config.xml",
    ]
    texts = [
        buf.getvalue(),
        "".join(jsonl),
        json.dumps(tasks, ensure_ascii=False, indent=1) + "\n",
        _labelstudio_config(names, relation),
    ]
    for path, text in zip(files, texts, strict=True):
        atomic_write_text(path, text)
    return files


# ----------------------------------------------------------------------------- import


def _read_text(path: Path) -> str:
    if not path.is_file():
        raise DataError(f"no such label file: {path}; pass the file you filled in")
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8-sig")  # spreadsheets often prepend a BOM
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise DataError(
            f"{path}: line {line} is not valid UTF-8 (byte 0x{raw[e.start]:02x}); save the file "
            "as UTF-8 (in a spreadsheet: CSV UTF-8) and import it again"
        ) from e


def _ls_label(task: dict) -> str | None:
    """The choice of the last non-cancelled Label Studio annotation of ``task``."""
    for ann in reversed(task.get("annotations") or []):
        if ann.get("was_cancelled"):
            continue
        for res in ann.get("result") or []:
            choices = (res.get("value") or {}).get("choices")
            if choices:
                return str(choices[0])
    return None


def parse_file(path: Path) -> list[tuple[str, object, object]]:
    """``(where, id, label)`` of every entry of a CSV, JSONL or Label Studio JSON file."""
    path = Path(path)
    text, name = _read_text(path), path.name
    entries: list[tuple[str, object, object]] = []
    if path.suffix.lower() == ".csv":
        reader = csv.DictReader(io.StringIO(text))
        fields = [f.strip().lower() for f in reader.fieldnames or []]
        if "id" not in fields or "label" not in fields:
            raise DataError(
                f"{name}: the header needs 'id' and 'label' columns (has {fields}); export the "
                "batch with python -m batl_jax.label export and fill in its label column"
            )
        reader.fieldnames = fields
        start = 2
        for rec in reader:
            entries.append((f"{name} line {start}", rec.get("id"), rec.get("label")))
            start = reader.line_num + 1
    elif path.suffix.lower() == ".json":
        try:
            tasks = json.loads(text)
        except json.JSONDecodeError as e:
            raise DataError(f"{name} is not valid JSON (line {e.lineno}: {e.msg})") from e
        if not isinstance(tasks, list):
            raise DataError(f"{name}: expected a list of tasks (a Label Studio JSON export)")
        for i, t in enumerate(tasks, start=1):
            where = f"{name} task {i}"
            if not isinstance(t, dict):
                entries.append((where, None, None))
            elif "data" in t:  # Label Studio's JSON export
                entries.append((where, (t["data"] or {}).get("batl_id"), _ls_label(t)))
            else:  # JSON-MIN export, or a plain list of {"id", "label"}
                entries.append((where, t.get("batl_id", t.get("id")), t.get("label")))
    else:
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            where = f"{name} line {number}"
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{where} is not valid JSON ({e.msg}); fix that line") from e
            if not isinstance(rec, dict):
                rec = {}
            entries.append((where, rec.get("batl_id", rec.get("id")), rec.get("label")))
    if not entries:
        raise DataError(f"{name} holds no labels; fill in the exported file first")
    return entries


def import_labels(workdir: Path, files: list[Path], allow_blank: bool = False) -> str:
    """Check every entry of ``files`` against the pending batch and append the labels.

    All or nothing: one bad entry and nothing is imported. Returns the summary line.
    """
    workdir = Path(workdir)
    with oracle.locked(workdir):
        pending, batch, labels = _context(workdir)
        r, names = pending["round"], pending["label_names"]
        row_of = {b["id"]: b["row"] for b in batch}
        missing = [i for i in row_of if i not in labels]
        if not missing:
            raise StateError(
                f"no batch is pending: every sample of {_what(r)} is labeled; rerun the "
                "batl_jax.main command of this run to continue"
            )
        entries = [e for f in files for e in parse_file(Path(f))]
        errors, new, seen, repeats, blanks = [], [], {}, 0, 0
        for where, rid, label in entries:
            rid = "" if rid is None else str(rid).strip()
            label = "" if label is None else str(label).strip()
            if not rid:
                errors.append(f"{where}: no id")
            elif rid not in row_of:
                errors.append(f"{where}: id {rid!r} is not in {_what(r)}")
            elif rid in seen:
                errors.append(f"{where}: id {rid!r} repeats {seen[rid]}")
            elif not label:
                if allow_blank:
                    blanks += 1
                else:
                    errors.append(
                        f"{where}: blank label for id {rid!r} (delete the line, or pass "
                        "--allow-blank to import the others)"
                    )
            elif label not in names:
                errors.append(f"{where}: unknown label {label!r} for id {rid!r}")
            elif rid in labels and labels[rid]["label"] != label:
                errors.append(
                    f"{where}: id {rid!r} already has label {labels[rid]['label']!r} "
                    "(labels.jsonl); imported labels are final"
                )
            elif rid in labels:
                repeats += 1
            else:
                new.append({"id": rid, "label": label, "round": r, "row": row_of[rid],
                            "source": where})  # fmt: skip
            if rid:
                seen.setdefault(rid, where)
        if errors:
            allowed = ", ".join(names[:12]) + (", ..." if len(names) > 12 else "")
            raise DataError(
                f"{len(errors)} problem(s) in the labels, nothing imported; first: {errors[0]}; "
                f"fix them and import again (labels: {allowed})",
                details=errors[:_MAX_SHOWN]
                + (
                    [f"... and {len(errors) - _MAX_SHOWN} more"] if len(errors) > _MAX_SHOWN else []
                ),
            )
        if new:
            oracle.append_labels(workdir, new)
    have = len(row_of) - len(missing) + len(new)
    parts = [f"imported {len(new)} label(s) for {_what(r)}: {have} of {len(row_of)} labeled"]
    if repeats:
        parts.append(f"{repeats} already imported")
    if blanks:
        parts.append(f"{blanks} blank skipped")
    if have == len(row_of):
        parts.append("complete: rerun the batl_jax.main command of this run to continue")
    else:
        parts.append(
            f"{len(row_of) - have} still to label (python -m batl_jax.label export "
            f"--workdir={workdir} exports them)"
        )
    return "; ".join(parts)


def status(workdir: Path) -> str:
    pending, batch, labels = _context(workdir)
    done = sum(b["id"] in labels for b in batch)
    state = "complete" if done == len(batch) else f"{len(batch) - done} to label"
    return (
        f"{_what(pending['round'])}: {done} of {len(batch)} labeled ({state}); "
        f"{len(labels)} human labels in total"
    )


# ----------------------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m batl_jax.label", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    for name in ("status", "export", "import"):
        s = sub.add_parser(name)
        s.add_argument("--workdir", required=True, type=Path, help="the run's --workdir")
        if name == "export":
            s.add_argument("--out", type=Path, help="output folder (default WORKDIR/export)")
            s.add_argument("--all", action="store_true", help="the whole batch, labeled or not")
        if name == "import":
            s.add_argument("files", nargs="+", type=Path, help="filled-in CSV/JSONL/JSON")
            s.add_argument("--allow-blank", action="store_true", help="skip blank labels")
    args = p.parse_args(argv)
    try:
        if args.command == "export":
            for f in export(args.workdir, args.out, args.all):
                print(f)
        elif args.command == "import":
            print(import_labels(args.workdir, args.files, args.allow_blank))
        else:
            print(status(args.workdir))
    except BatlError as e:
        print(f"error: {e}", file=sys.stderr)
        for line in e.details:
            print(f"  {line}", file=sys.stderr)
        return e.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
