"""A run's labeled dataset: every labeled pool row, its label, when and where it came from
(README, "Your own project"; ``python -m batl_jax.label dataset --workdir=W --out=FILE``).

Each row of the output (``.csv`` or ``.jsonl``, in the pool's order) has

* ``id``, ``text``, ``label`` (the label name the model trained on);
* ``round``: the round whose selection asked for the row (``selected.jsonl``), or -1 for
  the starting set (the random initial set, or labels the input file already carried);
* ``source``: ``existing`` (carried by the input file), ``human`` (imported into
  ``labels.jsonl``) or ``simulated`` (revealed from the dataset by a simulated oracle);
* ``split``: ``train`` (the model trained on it) or ``evaluation`` (``al.test_size``'s
  held-out rows, labelled first and only ever tested on; their round is -1);
* the input file's original columns (``data.name=files``), with its label column
  (``data.label_field``) filled in with the final label. An original column named like
  one of the five above, other than the configured id/text/label column, is written as
  ``input_<name>``.

The labeled rows are the latest checkpoint's labeled set and held-out rows, less the rows
of a pending batch that people have not labeled yet.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
from pathlib import Path
from typing import Any

import numpy as np

from batl_jax import oracle, seeds
from batl_jax.errors import ConfigError, StateError

FIELDS = ("id", "text", "label", "round", "source", "split")
FORMATS = (".csv", ".jsonl")


@dataclasses.dataclass(frozen=True)
class Run:
    """What a workdir says about its labels: config, pool, checkpoint state, human labels."""

    workdir: Path
    cfg: Any
    label_names: list[str]
    pool: Any  # data.Split
    labeled: np.ndarray  # the checkpoint's labeled rows
    pending: np.ndarray  # rows of the batch people were asked to label (may be labeled)
    human: dict[str, dict]  # labels.jsonl by id
    selected_round: dict[int, int]  # pool row -> round that selected it
    held_out: np.ndarray  # al.test_size's evaluation rows (never trained on)

    @property
    def human_oracle(self) -> bool:
        return self.cfg.al.oracle == "human"

    def labeled_rows(self) -> list[int]:
        """Rows with a label now: the checkpoint's and the held-out ones, less pending rows
        still unlabeled."""
        pending = set(self.pending.tolist())
        return [
            int(r)
            for r in np.sort(np.concatenate([self.labeled, self.held_out]))
            if not (self.human_oracle and r in pending and self.pool.ids[r] not in self.human)
        ]

    def label_of(self, row: int) -> tuple[str, str]:
        """``(label name, source)`` of a labeled row."""
        if self.human_oracle:
            rec = self.human.get(self.pool.ids[row])
            if rec is not None:
                return str(rec["label"]), "human"
        label = int(self.pool.labels[row])
        if label < 0:
            raise StateError(
                f"{self.workdir / oracle.LABELS} has no label for id {self.pool.ids[row]}, "
                "which the checkpoint counts as labeled; restore labels.jsonl from a backup"
            )
        return self.label_names[label], ("existing" if self.human_oracle else "simulated")


def _config(workdir: Path):
    import ml_collections

    path = Path(workdir) / "config.json"
    if not path.is_file():
        raise StateError(f"{workdir} holds no batl_jax run; pass the --workdir of a run")
    try:
        return ml_collections.ConfigDict(json.loads(path.read_text(encoding="utf-8")))
    except (ValueError, TypeError) as e:
        raise StateError(f"{path} is damaged ({type(e).__name__}); restore it") from e


def _selected_rounds(workdir: Path, done: int) -> dict[int, int]:
    """Pool row -> the round that selected it, over the rounds the checkpoint has done."""
    from batl_jax.run_files import JsonlLog

    out: dict[int, int] = {}
    for rec in JsonlLog(Path(workdir) / "selected.jsonl").rows():
        if int(rec["round"]) < done:
            for row in rec["rows"]:
                out[int(row)] = int(rec["round"])
    return out


def _state(workdir: Path):
    from batl_jax.checkpointing import Checkpointer

    folder = Path(workdir) / "checkpoints"
    if not folder.is_dir() or not any(p.name.isdigit() for p in folder.iterdir()):
        raise StateError(
            f"workdir {workdir} has no checkpoint yet: run its batl_jax.main command first"
        )
    ckpt = Checkpointer(Path(workdir))
    try:
        return ckpt.restore_latest()
    finally:
        ckpt.close()


def load_run(workdir: Path) -> Run:
    """Read ``workdir``'s config, pool, latest checkpoint and human labels."""
    from batl_jax import data, tasks  # noqa: F401 -- tasks registers the relation datasets

    workdir = Path(workdir)
    cfg = _config(workdir)
    state = _state(workdir)
    dataset = data.load_dataset(cfg, cfg.seed)
    labeled = np.asarray(state.labeled, np.int64)
    if len(labeled) and labeled.max() >= len(dataset.train):
        raise StateError(
            f"the checkpoint of {workdir} does not fit the data ({len(dataset.train)} pool "
            "rows): the data changed since the run; restore it"
        )
    pending = np.asarray([] if state.pending is None else state.pending, np.int64)
    return Run(
        workdir=workdir,
        cfg=cfg,
        label_names=list(dataset.label_names),
        pool=dataset.train,
        labeled=labeled,
        pending=pending,
        human=oracle.read_labels(workdir),
        selected_round=_selected_rounds(workdir, int(state.round)),
        held_out=seeds.evaluation_rows(
            dataset.train.labels, int(cfg.al.get("test_size", 0)), int(cfg.seed)
        ),
    )


def _original_columns(run: Run) -> list[tuple[str, str]]:
    """(column in the input, name in the output) of every original column written."""
    d = run.cfg.data
    roles = {"id": d.id_field, "text": d.text_field, "label": d.label_field}
    out = []
    for name in run.pool.columns or {}:
        if name in FIELDS and roles.get(name) == name:
            continue  # the same values as ours (the label filled in)
        out.append((name, f"input_{name}" if name in FIELDS else name))
    return out


def records(run: Run) -> tuple[list[dict], list[str]]:
    """The labeled rows as output records, and the output's column order."""
    columns = _original_columns(run)
    label_field = run.cfg.data.label_field
    held_out = set(run.held_out.tolist())
    out = []
    for row in run.labeled_rows():
        label, source = run.label_of(row)
        rec: dict[str, Any] = {
            "id": run.pool.ids[row],
            "text": run.pool.texts[row],
            "label": label,
            "round": run.selected_round.get(row, -1),
            "source": source,
            "split": "evaluation" if row in held_out else "train",
        }
        for name, as_name in columns:
            value = run.pool.columns[name][row]
            rec[as_name] = label if name == label_field else value
        out.append(rec)
    return out, [*FIELDS, *(as_name for _, as_name in columns)]


def render(rows: list[dict], columns: list[str], suffix: str) -> str:
    if suffix == ".jsonl":
        return "".join(json.dumps(r, ensure_ascii=False, default=str) + "\n" for r in rows)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: "" if v is None else v for k, v in r.items()})
    return buf.getvalue()


def write(workdir: Path, out_path: Path) -> str:
    """Write ``workdir``'s labeled dataset to ``out_path`` (``.csv`` or ``.jsonl``,
    atomically); returns the summary line."""
    from batl_jax.run_files import atomic_write_text

    out_path = Path(out_path)
    suffix = out_path.suffix.lower()
    if suffix not in FORMATS:
        raise ConfigError(f"--out {out_path}: name it FILE.csv or FILE.jsonl")
    if out_path.is_dir():
        raise ConfigError(f"--out {out_path} is a folder; pass a file name (.csv or .jsonl)")
    run = load_run(workdir)
    rows, columns = records(run)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out_path, render(rows, columns, suffix))
    counts = {s: sum(r["source"] == s for r in rows) for s in ("existing", "human", "simulated")}
    shown = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
    return f"wrote {len(rows)} labeled rows ({shown or 'none'}) to {out_path}"
