"""Human in the loop: export → label → import → continue, as the README describes.

The pool's labels are removed from the data (people supply them); the "people" here
answer with the true CSAbstruct labels, so the finished run must equal a simulated-oracle
run on the labeled data, row for row.
"""

from __future__ import annotations

import csv
import gzip
import json
from pathlib import Path

import pytest

from batl_jax import label
from batl_jax import main as batl_main
from batl_jax.errors import StateError
from tests.run_helpers import (
    DATA_DIR,
    small_csabstruct,
    strip_times,
    tiny_config,
    write_jsonl_gz,
)
from tests.tiny_bert import save_tiny_bert

pytestmark = pytest.mark.skipif(not Path(DATA_DIR).is_dir(), reason="data dir not available")

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
    with pytest.raises(StateError, match="the run has finished: all 2 rounds are done"):
        label.import_labels(work, [tmp_path / "round0.jsonl"])
    assert label.main(["status", wd]) == 0
    assert "the run has finished" in capsys.readouterr().out
    assert label.main(["export", wd]) == 2
    assert "error: the run has finished" in capsys.readouterr().err
