"""A labelling project as a user runs it (issue 14's acceptance test): their own CSV with
its own column names, a few labels and the rest blank, two rounds labelled by people
from the existing labels, the model exported and checked against transformers' PyTorch
model, new rows predicted, and the labeled dataset written with the original columns.
Every step goes through the public commands' main functions."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from batl_jax import main as batl_main
from tests.run_helpers import tiny_config
from tests.tiny_bert import save_tiny_bert

CATEGORIES = ("billing", "hardware", "login")
WORDS = {
    "billing": "invoice refund charge payment card billing address price",
    "hardware": "printer toner laptop screen keyboard cable dock monitor",
    "login": "password login account locked portal sign two-factor reset",
}
NEW_TEXTS = ["my invoice shows a double charge", "the dock does not power the monitor"]


def _ticket(i: int) -> tuple[str, str]:
    cat = CATEGORIES[i % 3]
    words = WORDS[cat].split()
    picks = [words[(i * 7 + j * 3) % len(words)] for j in range(3 + i % 5)]
    return f"ticket {i}: " + " ".join(picks), cat


def _write(path: Path, rows: list[dict]) -> Path:
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return path


def project(root: Path, *, pool=60, known=9, test=15) -> tuple[Path, Path, dict[str, str]]:
    """``tickets.csv`` (ticket_id, body, category, customer: ``known`` labels, the rest
    blank), ``test.csv`` (labeled) and the true category of every pool ticket."""
    root.mkdir(parents=True, exist_ok=True)
    rows, gold = [], {}
    for i in range(pool):
        body, cat = _ticket(i)
        tid = f"TK-{1000 + i}"
        gold[tid] = cat
        rows.append(
            {
                "ticket_id": tid,
                "body": body,
                "category": cat if i < known else "",
                "customer": f"cust{i % 4}",
            }
        )
    tests = [
        {"ticket_id": f"TT-{i}", "body": _ticket(pool + i)[0], "category": _ticket(pool + i)[1]}
        for i in range(test)
    ]
    return _write(root / "tickets.csv", rows), _write(root / "test.csv", tests), gold


def project_config(model: Path, train: Path, test: Path, **over):
    over = {
        "data__name": "files",
        "data__train_file": str(train),
        "data__test_file": str(test),
        "data__id_field": "ticket_id",
        "data__text_field": "body",
        "data__label_field": "category",
        "al__strategy": "entropy",
        "al__batch_size": 10,
        "al__rounds": 3,
        "train__mode": "full",
        "analysis__enabled": False,
        **over,
    }
    return tiny_config(model, **over)


def _label_batch(work: Path, tmp: Path, gold: dict, round_: int, capsys) -> None:
    """People label the pending batch: export, fill in the CSV's label column, import."""
    from batl_jax import label

    wd = f"--workdir={work}"
    assert label.main(["export", wd]) == 0
    src = work / "export" / f"round_{round_}.csv"
    rows = list(csv.DictReader(src.open(newline="")))
    filled = _write(tmp / f"filled_{round_}.csv", [{**r, "label": gold[r["id"]]} for r in rows])
    assert label.main(["import", wd, str(filled)]) == 0
    assert "complete" in capsys.readouterr().out


def test_ticket_project_from_existing_labels_to_model_predictions_and_dataset(tmp_path, capsys):
    import transformers

    from batl_jax import export, label, predict
    from tests.test_export import torch_probs

    model = save_tiny_bert(tmp_path / "bert")
    train, test, gold = project(tmp_path / "data")
    cfg = project_config(model, train, test, al__oracle="human")
    work = tmp_path / "work"

    # Round 0 trains on the 9 existing labels and asks for its batch; people label it.
    rows = batl_main.run(cfg, str(work))
    assert [r["labeled"] for r in rows] == [9]
    assert "round 0: 10 samples to label" in capsys.readouterr().out
    _label_batch(work, tmp_path, gold, 0, capsys)
    rows = batl_main.run(cfg, str(work))
    assert "round 1: 10 samples to label" in capsys.readouterr().out
    _label_batch(work, tmp_path, gold, 1, capsys)
    rows = batl_main.run(cfg, str(work))
    assert [r["labeled"] for r in rows] == [9, 19, 29]

    # The model out: transformers' PyTorch model gives batl_jax's probabilities.
    out = tmp_path / "hf"
    assert export.main([f"--workdir={work}", f"--out={out}"]) == 0
    config = transformers.AutoConfig.from_pretrained(out)
    assert config.id2label == dict(enumerate(CATEGORIES))
    m, tok, meta = predict.load_model(work, None)
    ours = predict.probabilities(m, tok, meta, NEW_TEXTS, batch_size=8)
    assert np.abs(ours - torch_probs(out, NEW_TEXTS)).max() < 1e-4

    # Predictions of new rows (the run's text column by default) and of the pool's rest.
    new = _write(
        tmp_path / "new.csv", [{"ticket_id": f"N{i}", "body": t} for i, t in enumerate(NEW_TEXTS)]
    )
    pred = tmp_path / "pred.csv"
    assert predict.main([f"--workdir={work}", f"--input={new}", f"--output={pred}"]) == 0
    got = list(csv.DictReader(pred.open()))
    assert [r["ticket_id"] for r in got] == ["N0", "N1"]
    probs = np.array([[float(r[f"prob_{c}"]) for c in CATEGORIES] for r in got])
    np.testing.assert_allclose(probs, ours, atol=1e-5)
    rest = tmp_path / "rest.jsonl"
    assert predict.main([f"--workdir={work}", "--pool", f"--output={rest}"]) == 0
    assert len(rest.read_text().splitlines()) == 60 - 29

    # The labeled dataset with the input's own columns, the label column filled in.
    dataset = tmp_path / "labeled.csv"
    assert label.main(["dataset", f"--workdir={work}", f"--out={dataset}"]) == 0
    got = list(csv.DictReader(dataset.open()))
    assert list(got[0]) == [
        "id",
        "text",
        "label",
        "round",
        "source",
        "split",
        "ticket_id",
        "body",
        "category",
        "customer",
    ]
    assert len(got) == 29
    by_source = {s: [r for r in got if r["source"] == s] for s in ("existing", "human")}
    assert len(by_source["existing"]) == 9 and {r["round"] for r in by_source["existing"]} == {"-1"}
    assert sorted(r["round"] for r in by_source["human"]) == ["0"] * 10 + ["1"] * 10
    assert all(r["label"] == r["category"] == gold[r["ticket_id"]] for r in got)
    assert all(r["customer"].startswith("cust") for r in got)


def _final_model(cfg, work: Path) -> None:
    """What the loop keeps after its last round, written here with the public pieces:
    the last round's model fitted on the checkpoint's labeled set, then save_final."""
    import jax
    from flax import nnx

    from batl_jax import labeled_dataset, rounds, setup, sharding
    from batl_jax.model import store

    run = labeled_dataset.load_run(work)
    parts = setup.build(cfg, sharding.make_mesh())
    labels = np.asarray(parts.dataset.train.labels)
    last = cfg.al.rounds - 1
    fitted = rounds.fit(parts, last, np.asarray(run.labeled_rows()), labels)
    params = jax.device_get(nnx.to_pure_dict(fitted.params))
    store.save_final(work, params, meta=store.final_meta(parts, last))


def test_simulated_run_dataset_and_pool_predictions(tmp_path, capsys):
    """A fully labeled file with a simulated oracle: the dataset's rows are the random
    initial set (round -1) and each round's picks, all ``simulated``; ``--pool`` scores
    the rows never selected."""
    from batl_jax import labeled_dataset, predict

    model = save_tiny_bert(tmp_path / "bert")
    train, test, _ = project(tmp_path / "data", known=60)
    cfg = project_config(model, train, test, train__mode="head")
    work = tmp_path / "work"
    rows = batl_main.run(cfg, str(work))
    assert [r["labeled"] for r in rows] == [10, 20, 30]
    out = tmp_path / "labeled.jsonl"
    assert "wrote 30 labeled rows (30 simulated)" in labeled_dataset.write(work, out)
    got = [json.loads(line) for line in out.read_text().splitlines()]
    selected = [json.loads(line) for line in (work / "selected.jsonl").read_text().splitlines()]
    expect = {i: s["round"] for s in selected for i in s["ids"]}
    assert {r["id"]: r["round"] for r in got} == {r["id"]: expect.get(r["id"], -1) for r in got}
    assert sorted(r["round"] for r in got) == [-1] * 10 + [0] * 10 + [1] * 10
    assert all(r["category"] == r["label"] and r["ticket_id"] == r["id"] for r in got)

    _final_model(cfg, work)
    rest = tmp_path / "rest.csv"
    capsys.readouterr()
    assert predict.main([f"--workdir={work}", "--pool", f"--output={rest}"]) == 0
    scored = list(csv.DictReader(rest.open()))
    assert len(scored) == 30 and not {r["id"] for r in scored} & {r["id"] for r in got}
    assert list(scored[0])[:2] == ["id", "text"] and "customer" in scored[0]


def test_human_run_from_a_blank_pool_dataset(tmp_path, capsys):
    """No label in the file: people label the random initial set first (round -1)."""
    from batl_jax import labeled_dataset

    model = save_tiny_bert(tmp_path / "bert")
    train, test, gold = project(tmp_path / "data", known=0)
    cfg = project_config(model, train, test, al__oracle="human", al__rounds=2)
    work = tmp_path / "work"
    assert batl_main.run(cfg, str(work)) == []
    _label_batch(work, tmp_path, gold, -1, capsys)
    batl_main.run(cfg, str(work))
    out = tmp_path / "labeled.csv"
    assert "(10 human)" in labeled_dataset.write(work, out)  # round 0's batch is pending
    got = list(csv.DictReader(out.open()))
    assert {r["round"] for r in got} == {"-1"} and all(r["source"] == "human" for r in got)
    _label_batch(work, tmp_path, gold, 0, capsys)
    assert "(20 human)" in labeled_dataset.write(work, out)
    got = list(csv.DictReader(out.open()))
    assert sorted(r["round"] for r in got) == ["-1"] * 10 + ["0"] * 10
