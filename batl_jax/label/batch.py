"""The pending batch of a run's workdir: export it, check and import its labels, report.

All-or-nothing imports: every entry is checked against the pending batch (unknown labels,
ids not in the batch, repeats, blanks, malformed entries) and one bad entry means nothing
is written. Labels, once imported, are final (README, "Labelling with people").
"""

from __future__ import annotations

import json
from pathlib import Path

from batl_jax import oracle
from batl_jax.errors import DataError, StateError
from batl_jax.label import formats
from batl_jax.label.formats import Entry
from batl_jax.run_files import atomic_write_text, finished_info

MAX_SHOWN = 20  # problems listed under the error line


def finished(workdir: Path) -> str | None:
    """A sentence saying the run has finished, or None while it has rounds to go.

    The loop writes ``finished.json`` (rounds done and why) when the run ends, and removes
    it when a finished run continues (``al.rounds`` raised).
    """
    info = finished_info(workdir)
    if info is None:
        return None
    rounds, reason = info["rounds"], info["reason"]
    return (
        f"the run has finished after {rounds} rounds ({reason}), nothing is left to label "
        f"(results: {Path(workdir) / 'metrics.jsonl'})"
    )


def context(workdir: Path) -> tuple[dict, list[dict], dict[str, dict]]:
    """(pending.json, the pending batch's rows, labels so far); refuses a workdir with no
    batch and a finished run."""
    workdir = Path(workdir)
    if not (workdir / "config.json").is_file():
        raise StateError(f"{workdir} holds no batl_jax run; pass the --workdir of a run")
    pending = oracle.read_pending(workdir)
    if pending is None:
        raise StateError(
            f"no query batch is pending in {workdir}: run python -m batl_jax.main with "
            "--config.al.oracle=human first; it stops with a batch to label"
        )
    done = finished(workdir)
    if done:
        raise StateError(f"{done}; to label more, raise al.rounds and rerun batl_jax.main")
    return pending, oracle.read_batch(workdir, pending["round"]), oracle.read_labels(workdir)


def what(round_: int) -> str:
    return "the initial set (round -1)" if round_ == -1 else f"round {round_}'s batch"


def allowed(names: list[str], limit: int = 12) -> str:
    return ", ".join(names[:limit]) + (", ..." if len(names) > limit else "")


def unlabeled(workdir: Path, everything: bool | None = None) -> tuple[dict, list[dict]]:
    """(pending.json, the batch rows still to label, or all of them with ``everything``;
    None: the caller has no --all flag)."""
    pending, batch, labels = context(workdir)
    rows = batch if everything else [b for b in batch if b["id"] not in labels]
    if not rows:
        raise StateError(
            f"every sample of {what(pending['round'])} is labeled; rerun the batl_jax.main "
            "command of this run to continue"
            + (" (or pass --all to export the batch again)" if everything is False else "")
        )
    return pending, rows


def _out_folder(workdir: Path, out: Path | None) -> Path:
    out = Path(out) if out else Path(workdir) / "export"
    for parent in (out, *out.parents):
        if parent.exists() and not parent.is_dir():
            raise StateError(f"--out {out}: {parent} is a file, not a folder; pass a folder")
        if parent.exists():
            break
    return out


def export(workdir: Path, out: Path | None = None, everything: bool = False) -> list[Path]:
    """Write the pending batch (or its unlabeled rest) for labelling; returns the files."""
    pending, rows = unlabeled(workdir, everything)
    r, names = pending["round"], pending["label_names"]
    out = _out_folder(workdir, out)
    relation = any("entities" in b for b in rows)
    stem = f"round_{r}"
    files = {
        out / f"{stem}.csv": formats.csv_text(rows, relation),
        out / f"{stem}.jsonl": formats.jsonl_text(rows, relation),
        out / f"{stem}.labelstudio.json": json.dumps(
            formats.labelstudio_tasks(rows, r), ensure_ascii=False, indent=1, default=str
        )
        + "\n",
        out / f"{stem}.argilla.json": json.dumps(
            formats.argilla_records(rows, r), ensure_ascii=False, indent=1
        )
        + "\n",
        out / f"{stem}.labels.txt": formats.labels_text(names),
        out / "labelstudio_config.xml": formats.labelstudio_config(names, relation),
    }
    out.mkdir(parents=True, exist_ok=True)
    for path, text in files.items():
        atomic_write_text(path, text)
    return list(files)


def _check(entries: list[Entry], pending: dict, row_of: dict, labels: dict, allow_blank: bool):
    """(problems, new label records, already-imported count, blanks skipped)."""
    r, names = pending["round"], pending["label_names"]
    errors: list[str] = []
    new: list[dict] = []
    seen: dict[str, str] = {}
    repeats = blanks = 0
    for e in entries:
        rid = "" if e.id is None else str(e.id).strip()
        label = "" if e.label is None else str(e.label).strip()
        if e.problem:
            errors.append(f"{e.where}: {e.problem}")
        elif not rid:
            errors.append(f"{e.where}: no id")
        elif rid not in row_of:
            errors.append(f"{e.where}: id {rid!r} is not in {what(r)}")
        elif rid in seen:
            errors.append(f"{e.where}: id {rid!r} repeats {seen[rid]}")
        elif not label:
            if allow_blank:
                blanks += 1
            else:
                errors.append(
                    f"{e.where}: blank label for id {rid!r} (delete the line, or pass "
                    "--allow-blank to import the others)"
                )
        elif label not in names:
            errors.append(f"{e.where}: unknown label {label!r} for id {rid!r}")
        elif rid in labels and labels[rid]["label"] != label:
            errors.append(
                f"{e.where}: id {rid!r} already has label {labels[rid]['label']!r} "
                "(labels.jsonl); imported labels are final"
            )
        elif rid in labels:
            repeats += 1
        else:
            new.append(
                {"id": rid, "label": label, "round": r, "row": row_of[rid], "source": e.where}
            )
        if rid and not e.problem:
            seen.setdefault(rid, e.where)
    return errors, new, repeats, blanks


def import_entries(workdir: Path, read, allow_blank: bool = False, rest: str = "") -> str:
    """Check the entries ``read()`` returns against the pending batch and append the labels.

    ``read`` is called under the import lock, after the batch is known to be pending
    (files are parsed, or a server is asked, only then); ``rest`` says how to label the
    samples still missing (default: export them). Returns the summary line.
    """
    workdir = Path(workdir)
    with oracle.locked(workdir):
        pending, batch, labels = context(workdir)
        r, names = pending["round"], pending["label_names"]
        row_of = {b["id"]: b["row"] for b in batch}
        missing = [i for i in row_of if i not in labels]
        if not missing:
            raise StateError(
                f"no batch is pending: every sample of {what(r)} is labeled; rerun the "
                "batl_jax.main command of this run to continue"
            )
        errors, new, repeats, blanks = _check(read(), pending, row_of, labels, allow_blank)
        if errors:
            more = len(errors) - MAX_SHOWN
            raise DataError(
                f"{len(errors)} problem(s) in the labels, nothing imported; first: {errors[0]}; "
                f"fix them and import again (labels: {allowed(names)})",
                details=errors[:MAX_SHOWN] + ([f"... and {more} more"] if more > 0 else []),
            )
        if new:
            oracle.append_labels(workdir, new)
    have = len(row_of) - len(missing) + len(new)
    parts = [f"imported {len(new)} label(s) for {what(r)}: {have} of {len(row_of)} labeled"]
    if repeats:
        parts.append(f"{repeats} already imported")
    if blanks:
        parts.append(f"{blanks} blank skipped")
    if have == len(row_of):
        parts.append("complete: rerun the batl_jax.main command of this run to continue")
    else:
        rest = rest or f"python -m batl_jax.label export --workdir={workdir} exports them"
        parts.append(f"{len(row_of) - have} still to label ({rest})")
    return "; ".join(parts)


def import_labels(workdir: Path, files: list[Path], allow_blank: bool = False) -> str:
    """Import filled-in label files (all or nothing); returns the summary line."""
    return import_entries(
        workdir, lambda: [e for f in files for e in formats.parse_file(Path(f))], allow_blank
    )


def status(workdir: Path) -> str:
    """Where labelling stands: the pending batch, the allowed labels, or that the run ended."""
    workdir = Path(workdir)
    if not (workdir / "config.json").is_file():
        raise StateError(f"{workdir} holds no batl_jax run; pass the --workdir of a run")
    done = finished(workdir)
    if done:
        return f"{done}; {len(oracle.read_labels(workdir))} human labels in total"
    pending, batch, labels = context(workdir)
    count = sum(b["id"] in labels for b in batch)
    state = "complete" if count == len(batch) else f"{len(batch) - count} to label"
    return (
        f"{what(pending['round'])}: {count} of {len(batch)} labeled ({state}); "
        f"{len(labels)} human labels in total; labels: {allowed(pending['label_names'], 50)}"
    )
