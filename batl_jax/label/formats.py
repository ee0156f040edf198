"""The files people label: what ``export`` writes and what ``import`` reads.

Written for a batch (the rows of ``queries/round_<r>.jsonl``):

- ``round_<r>.csv`` / ``round_<r>.jsonl``: ``id``, ``text``, ``head``/``tail`` (relation
  extraction), the input file's original columns, the model's hints, an empty ``label``;
- ``round_<r>.labelstudio.json`` + ``labelstudio_config.xml``: Label Studio tasks (the
  ``batl_id`` data field carries our id) with the model's top hint as a prediction;
- ``round_<r>.argilla.json``: Argilla 2.x records as ``Dataset.records.to_json`` writes
  them (``fields``, ``metadata``, ``suggestions``), for ``dataset.records.from_json``;
- ``round_<r>.labels.txt``: the allowed labels, one per line.

Read back: a filled-in CSV or JSONL; Label Studio's JSON, JSON-MIN and CSV exports (its own
task ``id`` is ignored: ``batl_id`` names the sample); an Argilla ``records.to_json`` file
(the last response to the ``label`` question). Every entry comes back as an :class:`Entry`;
a malformed one carries the problem instead of a label, so the importer reports it with
the others and imports nothing.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
from pathlib import Path
from xml.sax.saxutils import quoteattr

from batl_jax.errors import DataError

# Our own column names: an original column of the same name is not repeated.
RESERVED = ("id", "batl_id", "text", "head", "tail", "hints", "label")
CONTROL = "label"  # the Label Studio <Choices> name and the Argilla question name


@dataclasses.dataclass(frozen=True)
class Entry:
    """One labelled sample of a file: where it is, its id and label, or what is wrong."""

    where: str
    id: object = None
    label: object = None
    problem: str | None = None


# ----------------------------------------------------------------------------- writing


def hint_text(hints: list[dict]) -> str:
    return "; ".join(f"{h['label']} ({h['prob']:.2f})" for h in hints)


def original_columns(rows: list[dict]) -> list[str]:
    """The batch's original input columns (first-seen order), without our own names."""
    names: dict[str, None] = {}
    for b in rows:
        for name in b.get("columns") or {}:
            if name not in RESERVED:
                names.setdefault(name, None)
    return list(names)


def _cell(value) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def csv_text(rows: list[dict], relation: bool) -> str:
    extra = original_columns(rows)
    cols = ["id", "text"] + (["head", "tail"] if relation else []) + extra + ["hints", "label"]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n")
    writer.writeheader()
    for b in rows:
        flat = {"id": b["id"], "text": b["text"], "hints": hint_text(b["hints"]), "label": ""}
        if relation:
            ent = b["entities"]
            flat.update(head=ent["head"]["text"], tail=ent["tail"]["text"])
        given = b.get("columns") or {}
        flat.update({name: _cell(given.get(name)) for name in extra})
        writer.writerow(flat)
    return buf.getvalue()


def jsonl_text(rows: list[dict], relation: bool) -> str:
    extra = original_columns(rows)
    lines = []
    for b in rows:
        rec = {"id": b["id"], "text": b["text"], "hints": b["hints"], "label": ""}
        if relation:
            rec["entities"] = b["entities"]
        given = b.get("columns") or {}
        rec.update({name: given.get(name) for name in extra})
        lines.append(json.dumps(rec, ensure_ascii=False, default=str) + "\n")
    return "".join(lines)


def labelstudio_task(b: dict, round_: int, extra: list[str]) -> dict:
    """One Label Studio task: our id as ``batl_id``, the top hint as a prediction."""
    data = {"batl_id": b["id"], "text": b["text"], "hints": hint_text(b["hints"])}
    if "entities" in b:
        data.update(head=b["entities"]["head"]["text"], tail=b["entities"]["tail"]["text"])
    given = b.get("columns") or {}
    data.update({name: given.get(name) for name in extra})
    task: dict[str, object] = {"data": data}
    if b["hints"]:
        top = b["hints"][0]
        task["predictions"] = [
            {
                "model_version": f"batl_jax round {round_}",
                "score": top["prob"],
                "result": [
                    {
                        "from_name": CONTROL,
                        "to_name": "text",
                        "type": "choices",
                        "value": {"choices": [top["label"]]},
                    }
                ],
            }
        ]
    return task


def labelstudio_tasks(rows: list[dict], round_: int) -> list[dict]:
    extra = original_columns(rows)
    return [labelstudio_task(b, round_, extra) for b in rows]


def labelstudio_config(label_names: list[str], relation: bool) -> str:
    header = '  <Header value="head: $head | tail: $tail"/>\n' if relation else ""
    choices = "".join(f"    <Choice value={quoteattr(n)}/>\n" for n in label_names)
    return (
        "<View>\n" + header + '  <Text name="text" value="$text"/>\n'
        f'  <Choices name="{CONTROL}" toName="text" choice="single" showInLine="true">\n'
        + choices
        + "  </Choices>\n</View>\n"
    )


def _metadata_value(value):
    """Argilla metadata takes strings, numbers and lists of them; anything else as JSON."""
    if isinstance(value, (str, int, float)) and not isinstance(value, bool):
        return value
    return json.dumps(value, ensure_ascii=False, default=str)


def argilla_records(rows: list[dict], round_: int) -> list[dict]:
    """Records in the layout of Argilla 2.x ``Record.to_dict`` (``records.to_json``)."""
    extra = original_columns(rows)
    out = []
    for b in rows:
        fields = {"text": b["text"]}
        if "entities" in b:
            fields.update(head=b["entities"]["head"]["text"], tail=b["entities"]["tail"]["text"])
        given = b.get("columns") or {}
        metadata = {"round": round_, "hints": hint_text(b["hints"])}
        metadata.update({n: _metadata_value(given[n]) for n in extra if given.get(n) is not None})
        suggestions = {}
        if b["hints"]:
            top = b["hints"][0]
            suggestions[CONTROL] = {
                "value": top["label"],
                "score": top["prob"],
                "agent": f"batl_jax round {round_}",
            }
        out.append(
            {
                "id": b["id"],
                "fields": fields,
                "metadata": metadata,
                "suggestions": suggestions,
                "responses": {},
                "vectors": {},
                "_server_id": None,
            }
        )
    return out


def labels_text(label_names: list[str]) -> str:
    return "".join(f"{n}\n" for n in label_names)


# ----------------------------------------------------------------------------- reading


def read_text(path: Path) -> str:
    if path.is_dir():
        raise DataError(f"label file {path} is a folder; pass the file you filled in")
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


def _type(x) -> str:
    return {dict: "an object", list: "a list", str: "a string", type(None): "null"}.get(
        type(x), type(x).__name__
    )


def labelstudio_entry(where: str, task: dict) -> Entry:
    """The choice of the last non-cancelled annotation of a Label Studio task (JSON export
    or the API), or what is malformed about the task."""
    data = task.get("data")
    if not isinstance(data, dict):
        return Entry(where, problem=f"'data' is {_type(data)}, not an object")
    rid = data.get("batl_id")
    anns = task.get("annotations") or []
    if not isinstance(anns, list):
        return Entry(where, rid, problem=f"'annotations' is {_type(anns)}, not a list")
    for k, ann in reversed(list(enumerate(anns, start=1))):
        if not isinstance(ann, dict):
            return Entry(where, rid, problem=f"annotation {k} is {_type(ann)}, not an object")
        if ann.get("was_cancelled"):
            continue
        results = ann.get("result") or []
        if not isinstance(results, list):
            return Entry(where, rid, problem=f"annotation {k}: 'result' is {_type(results)}")
        for res in results:
            if not isinstance(res, dict):
                return Entry(where, rid, problem=f"annotation {k}: a result is {_type(res)}")
            if res.get("from_name", CONTROL) != CONTROL:
                continue
            value = res.get("value")
            if not isinstance(value, dict):
                return Entry(where, rid, problem=f"annotation {k}: 'value' is {_type(value)}")
            choices = value.get("choices")
            if choices is None:
                continue
            if not isinstance(choices, list) or not all(isinstance(c, str) for c in choices):
                problem = f"annotation {k}: 'choices' is not a list of labels"
                return Entry(where, rid, problem=problem)
            if len(choices) > 1:
                return Entry(where, rid, problem=f"annotation {k} has {len(choices)} choices")
            if choices:
                return Entry(where, rid, choices[0])
    return Entry(where, rid, None)


def _argilla_entry(where: str, rec: dict) -> Entry:
    """The last response to the ``label`` question of an Argilla record."""
    responses = rec.get("responses") or {}
    if not isinstance(responses, dict):
        return Entry(where, rec.get("id"), problem=f"'responses' is {_type(responses)}")
    answers = responses.get(CONTROL)
    if answers is None:
        return Entry(where, rec.get("id"), None)
    if not isinstance(answers, list) or not all(isinstance(a, dict) for a in answers):
        return Entry(where, rec.get("id"), problem="'responses.label' is not a list of objects")
    return Entry(where, rec.get("id"), answers[-1].get("value") if answers else None)


def _json_entries(name: str, text: str) -> list[Entry]:
    try:
        tasks = json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(
            f"{name} is not valid JSON (line {e.lineno}: {e.msg}); export the annotations "
            "again (Label Studio: Export, JSON) and import that file"
        ) from e
    if not isinstance(tasks, list):
        raise DataError(
            f"{name}: expected a list of tasks (a Label Studio JSON export) or of records "
            "(Argilla); export the annotations as JSON and import that file"
        )
    out = []
    for i, t in enumerate(tasks, start=1):
        where = f"{name} task {i}"
        if not isinstance(t, dict):
            out.append(Entry(where, problem=f"the task is {_type(t)}, not an object"))
        elif "data" in t:  # Label Studio's JSON export
            out.append(labelstudio_entry(where, t))
        elif "fields" in t:  # Argilla records.to_json
            out.append(_argilla_entry(where, t))
        else:  # Label Studio's JSON-MIN export, or a plain list of {"id", "label"}
            out.append(Entry(where, t.get("batl_id", t.get("id")), t.get("label")))
    return out


def _csv_entries(name: str, text: str) -> list[Entry]:
    reader = csv.DictReader(io.StringIO(text))
    fields = [f.strip().lower() for f in reader.fieldnames or []]
    # Label Studio's CSV export has its own task "id" beside our "batl_id".
    key = "batl_id" if "batl_id" in fields else "id"
    if key not in fields or "label" not in fields:
        raise DataError(
            f"{name}: the header needs 'id' and 'label' columns (or Label Studio's 'batl_id' and "
            f"'label'; has {fields}); export the batch with python -m batl_jax.label export and "
            "fill in its label column"
        )
    reader.fieldnames = fields
    out, start = [], 2
    try:
        for rec in reader:
            out.append(Entry(f"{name} line {start}", rec.get(key), rec.get("label")))
            start = reader.line_num + 1
    except csv.Error as e:  # a NUL byte, a field past the size limit
        raise DataError(f"{name} line {start} is not readable CSV ({e}); fix that line") from e
    return out


def _jsonl_entries(name: str, text: str) -> list[Entry]:
    out = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{name} line {number}"
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"{where} is not valid JSON ({e.msg}); fix that line") from e
        if not isinstance(rec, dict):
            out.append(Entry(where, problem=f"the line is {_type(rec)}, not an object"))
        else:
            out.append(Entry(where, rec.get("batl_id", rec.get("id")), rec.get("label")))
    return out


def parse_file(path: Path) -> list[Entry]:
    """Every entry of a CSV, JSONL, Label Studio or Argilla file (by its suffix)."""
    path = Path(path)
    text, name = read_text(path), path.name
    suffix = path.suffix.lower()
    if suffix == ".csv":
        entries = _csv_entries(name, text)
    elif suffix == ".json":
        entries = _json_entries(name, text)
    else:
        entries = _jsonl_entries(name, text)
    if not entries:
        raise DataError(f"{name} holds no labels; fill in the exported file first")
    return entries
