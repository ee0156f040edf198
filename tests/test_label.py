"""Human in the loop: export → label → import → continue, as the README describes.

The end-to-end test removes the pool's labels from the data (people supply them); the
"people" answer with the true CSAbstruct labels, so the finished run must equal a
simulated-oracle run on the labeled data, row for row. The other tests work on a workdir
holding only what the loop writes for people (``oracle.write_batch``): the export files,
Label Studio / Argilla files read back, and malformed files refused without a trace.
"""

from __future__ import annotations

import csv
import gzip
import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from batl_jax import label, run_files
from batl_jax import main as batl_main
from batl_jax.errors import StateError
from tests.run_helpers import (
    DATA_DIR,
    small_csabstruct,
    strip_times,
    tiny_config,
    tree_hashes,
    write_jsonl_gz,
)
from tests.tiny_bert import save_tiny_bert

needs_data = pytest.mark.skipif(not Path(DATA_DIR).is_dir(), reason="data dir not available")

OVERRIDES = dict(al__strategy="entropy", train__mode="head", analysis__enabled=False)


def _gold(data_dir: Path) -> dict[str, str]:
    with gzip.open(data_dir / "csabstruct" / "train.jsonl.gz", "rt") as f:
        return {str(i): json.loads(line)["label"] for i, line in enumerate(f)}


def _fill_csv(src: Path, dst: Path, gold: dict, first: int | None = None) -> Path:
    rows = list(csv.DictReader(src.open(newline="")))[:first]
    with dst.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        for r in rows:
            w.writerow({**r, "label": gold[r["id"]]})
    return dst


def _labelstudio_export(src: Path, dst: Path, gold: dict) -> Path:
    """What Label Studio's JSON export of the imported tasks looks like once annotated."""
    tasks = json.loads(src.read_text())
    for i, t in enumerate(tasks):
        t["id"] = 1000 + i  # Label Studio's own task id (ignored)
        choice = {"choices": [gold[t["data"]["batl_id"]]]}
        t["annotations"] = [
            {"was_cancelled": False, "result": [{"from_name": "label", "value": choice}]}
        ]
    dst.write_text(json.dumps(tasks))
    return dst


def _fill_jsonl(src: Path, dst: Path, gold: dict) -> Path:
    recs = [json.loads(line) for line in src.read_text().splitlines()]
    dst.write_text("".join(json.dumps({**r, "label": gold[r["id"]]}) + "\n" for r in recs))
    return dst


@needs_data
def test_export_label_import_continue_equals_simulated_run(tmp_path, capsys):
    model = save_tiny_bert(tmp_path / "model")
    labeled_data = small_csabstruct(tmp_path / "data")
    gold = _gold(labeled_data)
    # The same rows with the pool's labels removed: only people can label them.
    unlabeled_data = tmp_path / "unlabeled"
    with gzip.open(labeled_data / "csabstruct" / "train.jsonl.gz", "rt") as f:
        write_jsonl_gz(
            unlabeled_data / "csabstruct" / "train.jsonl.gz",
            [{"text": json.loads(line)["text"]} for line in f],
        )
    (unlabeled_data / "csabstruct" / "test.jsonl.gz").write_bytes(
        (labeled_data / "csabstruct" / "test.jsonl.gz").read_bytes()
    )

    sim = tmp_path / "simulated"
    batl_main.run(tiny_config(model, data__dir=str(labeled_data), **OVERRIDES), str(sim))

    cfg = tiny_config(model, data__dir=str(unlabeled_data), al__oracle="human", **OVERRIDES)
    work = tmp_path / "human"
    wd = f"--workdir={work}"

    # 1. The run stops at once: the random initial set (round -1) needs labels first.
    assert batl_main.run(cfg, str(work)) == []
    assert "initial set (round -1): 20 samples to label" in capsys.readouterr().out
    assert label.main(["export", wd]) == 0
    out = work / "export"
    first = [json.loads(x) for x in (out / "round_-1.jsonl").read_text().splitlines()]
    assert len(first) == 20 and all(r["hints"] == [] for r in first)

    # 2. A partial import (CSV, 12 rows) is kept; the run still waits for the other 8.
    _fill_csv(out / "round_-1.csv", tmp_path / "part.csv", gold, first=12)
    assert label.main(["import", wd, str(tmp_path / "part.csv")]) == 0
    assert batl_main.run(cfg, str(work)) == []
    assert "8 of 20 samples still to label" in capsys.readouterr().out

    # 3. The rest through Label Studio: export holds only the 8 unlabeled samples.
    assert label.main(["export", wd]) == 0
    tasks = json.loads((out / "round_-1.labelstudio.json").read_text())
    assert len(tasks) == 8
    ls = _labelstudio_export(out / "round_-1.labelstudio.json", tmp_path / "ls.json", gold)
    assert label.main(["import", wd, str(ls)]) == 0
    assert "complete" in capsys.readouterr().out

    # 4. Round 0 trains on the human labels, selects, and stops for its batch (with hints).
    rows = batl_main.run(cfg, str(work))
    assert [r["round"] for r in rows] == [0]
    assert "round 0: 20 samples to label" in capsys.readouterr().out
    batch = [json.loads(x) for x in (work / "queries" / "round_0.jsonl").read_text().splitlines()]
    assert len(batch) == 20 and all(len(r["hints"]) == 3 for r in batch)
    assert label.main(["export", wd]) == 0
    _fill_jsonl(out / "round_0.jsonl", tmp_path / "round0.jsonl", gold)
    assert label.main(["import", wd, str(tmp_path / "round0.jsonl")]) == 0

    # 5. The last round: same rows as the simulated oracle, and nothing left to label.
    rows = batl_main.run(cfg, str(work))
    assert [r["labeled"] for r in rows] == [20, 40]
    for name in ("metrics.jsonl", "selected.jsonl"):
        assert strip_times(work / name) == strip_times(sim / name), name
    labels = [json.loads(x) for x in (work / "labels.jsonl").read_text().splitlines()]
    assert len(labels) == 40 and len({r["id"] for r in labels}) == 40
    assert all(gold[r["id"]] == r["label"] for r in labels)
    with pytest.raises(StateError, match="the run has finished after 2 rounds"):
        label.import_labels(work, [tmp_path / "round0.jsonl"])
    assert label.main(["status", wd]) == 0
    assert "the run has finished" in capsys.readouterr().out
    assert label.main(["export", wd]) == 2
    assert "error: the run has finished" in capsys.readouterr().err


# -- the label tool on a pending batch (no model: the files the loop writes) -------------

NAMES = ["background", "method", "result"]


def pending_workdir(root: Path, rounds: int = 3) -> Path:
    """A workdir waiting for round 0's batch of rows 1, 3, 4 of a six-row pool whose input
    file had the columns ``source`` and ``n`` besides ``text`` and ``label``."""
    import numpy as np

    from batl_jax import oracle

    root.mkdir(parents=True, exist_ok=True)
    (root / "config.json").write_text(json.dumps({"name": "t", "al": {"rounds": rounds}}))
    split = SimpleNamespace(
        ids=[f"s{i}" for i in range(6)],
        texts=[f"sentence {i}" for i in range(6)],
        examples=None,
        columns={"source": [f"doc{i}" for i in range(6)], "n": list(range(6)), "label": [""] * 6},
    )
    logits = np.array([[1.0, 2.0, 3.0], [3.0, 2.0, 1.0], [0.0, 5.0, 0.0]])
    oracle.write_batch(root, 0, [1, 3, 4], split, NAMES, "classification", logits)
    return root


def test_export_writes_every_format_with_original_columns(tmp_path, capsys):
    work = pending_workdir(tmp_path / "w")
    files = label.export(work)
    out = work / "export"
    assert sorted(f.name for f in files) == sorted(
        [
            "round_0.csv",
            "round_0.jsonl",
            "round_0.labelstudio.json",
            "round_0.argilla.json",
            "round_0.labels.txt",
            "labelstudio_config.xml",
        ]
    )
    rows = list(csv.DictReader((out / "round_0.csv").open()))
    assert list(rows[0]) == ["id", "text", "source", "n", "hints", "label"]
    assert [(r["id"], r["source"], r["n"], r["label"]) for r in rows] == [
        ("s1", "doc1", "1", ""),
        ("s3", "doc3", "3", ""),
        ("s4", "doc4", "4", ""),
    ]
    assert rows[0]["hints"].startswith("result (0.67)")
    assert (out / "round_0.labels.txt").read_text() == "background\nmethod\nresult\n"
    tasks = json.loads((out / "round_0.labelstudio.json").read_text())
    assert tasks[2]["data"] == {
        "batl_id": "s4",
        "text": "sentence 4",
        "source": "doc4",
        "n": 4,
        "hints": "method (0.99); background (0.01); result (0.01)",
    }
    assert tasks[2]["predictions"][0]["result"][0]["value"] == {"choices": ["method"]}
    records = json.loads((out / "round_0.argilla.json").read_text())
    assert records[1]["id"] == "s3" and records[1]["fields"] == {"text": "sentence 3"}
    assert records[1]["metadata"]["source"] == "doc3" and records[1]["metadata"]["round"] == 0
    assert records[1]["suggestions"] == {
        "label": {"value": "background", "score": 0.6652, "agent": "batl_jax round 0"}
    }
    assert label.main(["status", f"--workdir={work}"]) == 0
    assert "0 of 3 labeled" in capsys.readouterr().out.replace("labels: ", "")
    assert "labels: background, method, result" in label.status(work)


def test_labelstudio_csv_export_imports_by_batl_id(tmp_path):
    """Label Studio's CSV export: sorted columns, every value quoted, its own task ``id``."""
    work = pending_workdir(tmp_path / "w")
    f = tmp_path / "project-1-at-2025.csv"
    cols = [
        "annotation_id",
        "annotator",
        "batl_id",
        "created_at",
        "hints",
        "id",
        "label",
        "lead_time",
        "n",
        "source",
        "text",
        "updated_at",
    ]
    with f.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=cols, quoting=csv.QUOTE_NONNUMERIC)
        w.writeheader()
        for task_id, (bid, lab) in enumerate([("s1", "method"), ("s3", "result")], start=1):
            w.writerow({"id": task_id, "batl_id": bid, "label": lab, "annotator": 1, "n": 2})
    assert "imported 2 label(s)" in label.import_labels(work, [f])
    got = {r["id"]: r["label"] for r in map(json.loads, (work / "labels.jsonl").open())}
    assert got == {"s1": "method", "s3": "result"}


def test_argilla_records_with_responses_import(tmp_path):
    work = pending_workdir(tmp_path / "w")
    label.export(work)
    records = json.loads((work / "export" / "round_0.argilla.json").read_text())
    for rec, answer in zip(records, ["result", "method", None], strict=True):
        if answer:
            rec["responses"] = {"label": [{"value": answer, "user_id": "u1"}]}
    f = tmp_path / "records.json"
    f.write_text(json.dumps(records))
    assert "imported 2 label(s)" in label.import_labels(work, [f], allow_blank=True)


def _ls_task(**over) -> dict:
    result = [{"from_name": "label", "value": {"choices": ["method"]}}]
    task = {
        "id": 7,
        "data": {"batl_id": "s1", "text": "sentence 1"},
        "annotations": [{"was_cancelled": False, "result": result}],
    }
    task.update(over)
    return task


def _ann(**over) -> list:
    return [{"result": [{"from_name": "label", **over}]}]


MALFORMED = {
    "data-not-object": ("ls.json", [_ls_task(data="s1")], "'data' is a string"),
    "data-null": ("ls.json", [_ls_task(data=None)], "'data' is null"),
    "annotations-not-list": ("ls.json", [_ls_task(annotations={"a": 1})], "not a list"),
    "annotation-not-object": ("ls.json", [_ls_task(annotations=["method"])], "annotation 1 is"),
    "result-not-list": ("ls.json", [_ls_task(annotations=[{"result": "method"}])], "'result'"),
    "result-entry-not-object": ("ls.json", [_ls_task(annotations=[{"result": [3]}])], "a result"),
    "value-not-object": ("ls.json", [_ls_task(annotations=_ann(value="method"))], "'value' is"),
    "choices-not-list": (
        "ls.json",
        [_ls_task(annotations=_ann(value={"choices": "method"}))],
        "'choices'",
    ),
    "two-choices": (
        "ls.json",
        [_ls_task(annotations=_ann(value={"choices": ["method", "result"]}))],
        "2 choices",
    ),
    "task-not-object": ("ls.json", ["s1"], "the task is a string"),
    "argilla-responses-not-object": (
        "a.json",
        [{"id": "s1", "fields": {"text": "x"}, "responses": ["method"]}],
        "'responses'",
    ),
    "jsonl-line-not-object": ("l.jsonl", '["s1", "method"]\n', "the line is a list"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_export_is_one_error_line_and_changes_nothing(case, tmp_path, capsys):
    name, content, problem = MALFORMED[case]
    work = pending_workdir(tmp_path / "w")
    f = tmp_path / name
    f.write_text(content if isinstance(content, str) else json.dumps(content))
    before = tree_hashes(work)
    assert label.main(["import", f"--workdir={work}", str(f)]) == 2
    out = capsys.readouterr()
    errors = [line for line in out.err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "nothing imported" in errors[0] and problem in errors[0]
    assert "Traceback" not in out.err and out.out == ""
    assert tree_hashes(work) == before


def test_export_out_a_file_is_refused_and_writes_nothing(tmp_path, capsys):
    work = pending_workdir(tmp_path / "w")
    target = tmp_path / "taken.txt"
    target.write_text("mine\n")
    before = tree_hashes(tmp_path)
    for out in (target, target / "sub"):
        assert label.main(["export", f"--workdir={work}", f"--out={out}"]) == 2
        err = capsys.readouterr().err
        assert err.count("error:") == 1 and "is a file, not a folder; pass a folder" in err
    assert tree_hashes(tmp_path) == before


def test_finished_run_is_reported(tmp_path, capsys):
    work = pending_workdir(tmp_path / "w", rounds=3)
    assert label.finished(work) is None
    run_files.mark_finished(work, 3, "al.rounds reached")  # what the loop writes at the end
    assert label.main(["status", f"--workdir={work}"]) == 0
    out = capsys.readouterr().out
    assert "the run has finished after 3 rounds (al.rounds reached)" in out
    run_files.mark_finished(work, 3, None)  # a finished run grown again
    assert label.finished(work) is None
    run_files.mark_finished(work, 3, "stabilizing predictions")
    assert label.main(["export", f"--workdir={work}"]) == 2
    assert "error: the run has finished" in capsys.readouterr().err
    assert not (work / "export").exists()


DAMAGED = {
    "pending-a-list": ("queries/pending.json", "[0]", "pending.json is damaged"),
    "pending-no-labels": ("queries/pending.json", '{"round": 0}', "pending.json is damaged"),
    "batch-line-a-string": ("queries/round_0.jsonl", '"s1"\n', "round_0.jsonl is damaged"),
    "labels-line-no-label": ("labels.jsonl", '{"id": "s1"}\n', "labels.jsonl line 1 is damaged"),
}


@pytest.mark.parametrize("case", sorted(DAMAGED))
@pytest.mark.parametrize("command", ["status", "export", "import"])
def test_damaged_workdir_file_is_one_error_line(case, command, tmp_path, capsys):
    rel, content, problem = DAMAGED[case]
    work = pending_workdir(tmp_path / "w")
    (work / rel).write_text(content)
    labels = tmp_path / "l.jsonl"
    labels.write_text('{"id": "s1", "label": "method"}\n')
    before = tree_hashes(work)
    argv = [command, f"--workdir={work}"] + ([str(labels)] if command == "import" else [])
    assert label.main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("error:") == 1 and problem in err and "Traceback" not in err
    assert tree_hashes(work) == before


def test_unreadable_csv_is_one_error_line(tmp_path, capsys):
    work = pending_workdir(tmp_path / "w")
    f = tmp_path / "l.csv"
    f.write_bytes(b'id,label\ns1,method\ns3,"' + b"x" * 200_000 + b'"\n')  # past csv's limit
    assert label.main(["import", f"--workdir={work}", str(f)]) == 2
    err = capsys.readouterr().err
    assert err.count("error:") == 1 and "l.csv line 3 is not readable CSV" in err
    assert not (work / "labels.jsonl").exists()
