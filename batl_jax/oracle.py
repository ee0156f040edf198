"""Human labels (``al.oracle = human``): the query batches a run waits on, the labels given.

With a human oracle a round ends after selection: the chosen rows are written as a
query batch, the checkpoint records them as *pending*, and the run stops. People label
the batch with ``python -m batl_jax.label`` (export → label → import); rerunning
``batl_jax.main`` continues once every pending row has a label. Files in the workdir:

``queries/round_<r>.jsonl``
    The batch selected in round ``r`` (``r = -1``: the random initial set), one row per
    sample in selection order: ``round``, ``row``, ``id``, ``text``, ``entities``
    (relation extraction), ``columns`` (the input file's original columns, when the
    dataset keeps them) and ``hints``, the round's model's top predictions.
``queries/pending.json``
    Which batch the run waits for, and the label names; read by ``batl_jax.label``.
``labels.jsonl``
    Every human label, one line per id, never edited or removed: an import rewrites the
    file atomically as old lines + new lines, so a kill leaves the old or the new file.

Human labels replace the dataset's labels of those rows (the dataset may have none for
the pool). This module imports no JAX, so the ``label`` tool starts instantly.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
from pathlib import Path

import numpy as np

from batl_jax.errors import StateError
from batl_jax.run_files import atomic_write_text, is_primary

QUERIES = "queries"
PENDING = "pending.json"
LABELS = "labels.jsonl"
NUM_HINTS = 3


def query_path(workdir: Path, round_: int) -> Path:
    return Path(workdir) / QUERIES / f"round_{round_}.jsonl"


def _hints(logits: np.ndarray, label_names: list[str]) -> list[dict]:
    z = np.asarray(logits, np.float64)
    p = np.exp(z - z.max())
    p /= p.sum()
    top = np.argsort(-p, kind="stable")[:NUM_HINTS]
    return [{"label": label_names[i], "prob": round(float(p[i]), 4)} for i in top]


def _plain(value):
    """JSON for the values of original columns that ``json`` does not know (numpy, dates)."""
    return value.item() if isinstance(value, np.generic) else str(value)


def _entities(example) -> dict:
    def span(s):
        return {"text": example.text[s[0] : s[1]], "start": int(s[0]), "end": int(s[1])}

    return {"head": span(example.head), "tail": span(example.tail)}


def write_batch(
    workdir: Path, round_: int, rows, split, label_names: list[str], task: str, hint_logits=None
) -> Path:
    """Write ``queries/round_<round_>.jsonl`` and point ``queries/pending.json`` at it.

    Both atomically, the batch first: a kill in between leaves a batch no one waits for,
    which the resumed run (redoing the round deterministically) rewrites identically.
    """
    path = query_path(workdir, round_)
    if not is_primary():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = []
    for j, row in enumerate(np.asarray(rows, np.int64).tolist()):
        rec = {"round": round_, "row": row, "id": split.ids[row], "text": split.texts[row]}
        if split.examples is not None and hasattr(split.examples[row], "head"):
            rec["entities"] = _entities(split.examples[row])
        columns = getattr(split, "columns", None)  # the input file's own columns, if kept
        if columns:
            rec["columns"] = {name: values[row] for name, values in columns.items()}
        rec["hints"] = [] if hint_logits is None else _hints(hint_logits[j], label_names)
        # Keys sorted, except inside ``columns``: those keep the input file's order.
        rec = dict(sorted(rec.items()))
        lines.append(json.dumps(rec, ensure_ascii=False, default=_plain) + "\n")
    atomic_write_text(path, "".join(lines))
    write_pending(workdir, round_, len(lines), label_names, task)
    return path


def write_pending(workdir: Path, round_: int, size: int, label_names: list[str], task: str):
    """``queries/pending.json``: the batch the run waits for (read by ``batl_jax.label``)."""
    if not is_primary():
        return
    pending = {
        "round": round_,
        "file": f"{QUERIES}/{query_path(workdir, round_).name}",
        "size": size,
        "label_names": list(label_names),
        "task": task,
    }
    atomic_write_text(Path(workdir) / QUERIES / PENDING, json.dumps(pending, indent=2) + "\n")


def read_pending(workdir: Path) -> dict | None:
    path = Path(workdir) / QUERIES / PENDING
    if not path.is_file():
        return None
    try:
        pending = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(pending["round"], int) and isinstance(pending["label_names"], list):
            return pending
        raise TypeError("round or label_names of the wrong type")
    except (ValueError, KeyError, TypeError) as e:  # JSON and UTF-8 errors are ValueErrors
        raise StateError(
            f"{path} is damaged; rerun batl_jax.main with the same --workdir to rewrite it"
        ) from e


def read_batch(workdir: Path, round_: int) -> list[dict]:
    path = query_path(workdir, round_)
    try:
        rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
        if all(isinstance(r, dict) and {"id", "row", "text", "hints"} <= r.keys() for r in rows):
            return rows
        raise ValueError("a line is not a query record")
    except FileNotFoundError as e:
        raise StateError(
            f"{path} is missing; rerun batl_jax.main with the same --workdir to rewrite it"
        ) from e
    except (ValueError, UnicodeDecodeError) as e:  # JSONDecodeError is a ValueError
        raise StateError(
            f"{path} is damaged; rerun batl_jax.main with the same --workdir to rewrite it"
        ) from e


def read_labels(workdir: Path) -> dict[str, dict]:
    """Every human label so far, by id (``labels.jsonl``; empty when there is none)."""
    path = Path(workdir) / LABELS
    if not path.exists():
        return {}
    out: dict[str, dict] = {}
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise StateError(f"{path} is not UTF-8; restore it from a backup") from e
    for number, line in enumerate(text.splitlines(), start=1):
        try:
            rec = json.loads(line)
            if not isinstance(rec["label"], str):
                raise TypeError("label is not a string")
            key = str(rec["id"])
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise StateError(
                f"{path} line {number} is damaged; restore the file from a backup (labels "
                "are only ever appended, so any older copy plus a re-import works)"
            ) from e
        if key in out and out[key]["label"] != rec["label"]:
            raise StateError(
                f"{path} line {number} gives id {key} the label {rec['label']!r}, an earlier "
                f"line {out[key]['label']!r}; labels are final: remove the line that is wrong"
            )
        out[key] = rec
    return out


def append_labels(workdir: Path, records: list[dict]) -> None:
    """Add ``records`` to ``labels.jsonl``: old content + new lines, written atomically."""
    path = Path(workdir) / LABELS
    old = path.read_text(encoding="utf-8") if path.exists() else ""
    now = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    new = "".join(
        json.dumps({**r, "imported_at": now}, ensure_ascii=False, sort_keys=True) + "\n"
        for r in records
    )
    atomic_write_text(path, old + new)


def waiting_message(workdir: Path, round_: int, missing: int, total: int) -> str:
    """What a stopped run tells the user (one line)."""
    what = "initial set (round -1)" if round_ == -1 else f"round {round_}"
    count = f"{missing} samples" if missing == total else f"{missing} of {total} samples still"
    w = str(workdir)
    return (
        f"{what}: {count} to label: run python -m batl_jax.label export --workdir={w}, label "
        f"the exported file, import it with python -m batl_jax.label import --workdir={w} FILE, "
        "then rerun this command"
    )


class HumanOracle:
    """The loop's side of human labelling: ask for a batch; check and apply the answers."""

    def __init__(self, workdir: Path, split, label_names: list[str], task: str):
        self.workdir, self.split = Path(workdir), split
        self.label_names, self.task = list(label_names), task
        # The labels the loop trains on: the dataset's (never shown for unlabeled rows),
        # overwritten by the human label of every labeled row in :meth:`ready`.
        self.labels = np.array(split.labels, dtype=np.int32, copy=True)
        # A pool that came partly labeled starts from those rows (resume.initial_state);
        # a fully labeled one is a rehearsal: people label every row, the file's labels
        # never stand in for theirs.
        known = int((self.labels >= 0).sum())
        self.carried = 0 < known < len(self.labels)

    def ask(self, round_: int, rows, hint_logits=None) -> None:
        write_batch(
            self.workdir, round_, rows, self.split, self.label_names, self.task, hint_logits
        )

    def ready(self, labeled: np.ndarray, pending: np.ndarray | None, round_: int) -> str | None:
        """Put the human labels into :attr:`labels`; None when every labeled row
        has one (training may go on), else the message asking for the missing ones.

        ``round_`` is the loop's next round; the pending batch was selected in the round
        before it (-1: the initial set).
        """
        labels = read_labels(self.workdir)
        index = {name: i for i, name in enumerate(self.label_names)}
        pending_set = set() if pending is None else set(np.asarray(pending).tolist())
        missing = []
        for row in np.asarray(labeled).tolist():
            rec = labels.get(self.split.ids[row])
            if rec is not None and rec.get("label") in index:
                self.labels[row] = index[rec["label"]]
            elif row in pending_set:
                missing.append(row)
            elif self.carried and self.split.labels[row] >= 0:
                continue  # a label the input file already carried (the starting set)
            else:
                raise StateError(
                    f"{self.workdir / LABELS} has no label for id {self.split.ids[row]} of an "
                    "earlier round; restore labels.jsonl from a backup or start a new --workdir"
                )
        if not missing:
            return None
        # The batch files are derived state: rewrite them if deleted or stale (no hints then).
        if not query_path(self.workdir, round_ - 1).exists():
            self.ask(round_ - 1, np.asarray(pending))
        elif _pending_round(self.workdir) != round_ - 1:
            write_pending(self.workdir, round_ - 1, len(pending_set), self.label_names, self.task)
        return waiting_message(self.workdir, round_ - 1, len(missing), len(pending_set))


def _pending_round(workdir: Path) -> int | None:
    try:
        return (read_pending(workdir) or {}).get("round")
    except StateError:  # damaged: the caller rewrites it
        return None


@contextlib.contextmanager
def locked(workdir: Path):
    """Hold an exclusive lock while importing (two imports at once would lose one's lines).

    The lock is taken on the ``queries`` folder itself, so a refused import leaves the
    workdir byte-for-byte as it was; no folder (no batch yet) needs no lock.
    """
    folder = Path(workdir) / QUERIES
    if not folder.is_dir():
        yield
        return
    import fcntl

    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
