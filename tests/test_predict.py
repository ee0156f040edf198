"""python -m batl_jax.predict: labels and probabilities of every row of a file, bucketed
like pool scoring, from a run's workdir or an exported folder."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest

from tests.test_export import LABELS, TEXTS, make_workdir


def _write_csv(path: Path, rows: list[dict]) -> Path:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def _run(capsys, *args: str) -> tuple[int, str, str]:
    from batl_jax import predict

    capsys.readouterr()
    code = predict.main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def _unbatched_probs(workdir: Path, texts) -> np.ndarray:
    """Each text alone, unpadded: what bucketing and batching must not change."""
    from batl_jax import predict

    model, tokenizer, meta = predict.load_model(workdir, None)
    out = []
    for t in texts:
        ids = tokenizer(t, truncation=True, max_length=meta["max_len"])["input_ids"]
        batch = {"input_ids": jnp.asarray([ids]), "attention_mask": jnp.ones((1, len(ids)))}
        out.append(np.asarray(jax_softmax(model(batch)["logits"]))[0])
    return np.stack(out)


def jax_softmax(z):
    import jax

    return jax.nn.softmax(z.astype(jnp.float32), axis=-1)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return make_workdir(tmp_path_factory.mktemp("predict"), mode="head")[0]


def test_csv_in_csv_out(run_dir, tmp_path, capsys):
    rows = [{"ticket_id": f"T{i}", "body": t, "note": "n" * i} for i, t in enumerate(TEXTS * 3)]
    src = _write_csv(tmp_path / "new.csv", rows)
    out = tmp_path / "pred" / "out.csv"
    code, stdout, err = _run(
        capsys, f"--workdir={run_dir}", f"--input={src}", f"--output={out}", "--batch-size=4"
    )
    assert code == 0, err
    assert f"wrote {len(rows)} predictions" in stdout
    got = list(csv.DictReader(out.open()))
    assert [r["ticket_id"] for r in got] == [r["ticket_id"] for r in rows]  # input order
    assert list(got[0]) == ["ticket_id", "body", "note", "predicted_label"] + [
        f"prob_{n}" for n in LABELS
    ]
    probs = np.array([[float(r[f"prob_{n}"]) for n in LABELS] for r in got])
    np.testing.assert_allclose(
        probs, _unbatched_probs(run_dir, [r["body"] for r in rows]), atol=2e-6
    )
    assert [r["predicted_label"] for r in got] == [LABELS[i] for i in probs.argmax(1)]


def test_jsonl_out_and_export_folder_agree(run_dir, tmp_path, capsys):
    from batl_jax import export

    src = tmp_path / "new.jsonl"
    src.write_text("".join(json.dumps({"text": t, "k": i}) + "\n" for i, t in enumerate(TEXTS)))
    assert export.main([f"--workdir={run_dir}", f"--out={tmp_path / 'hf'}"]) == 0
    results = []
    for source in (f"--workdir={run_dir}", f"--model={tmp_path / 'hf'}"):
        out = tmp_path / f"out{len(results)}.jsonl"
        code, _, err = _run(
            capsys, source, f"--input={src}", f"--output={out}", "--text-field=text"
        )
        assert code == 0, err
        results.append([json.loads(line) for line in out.read_text().splitlines()])
    a, b = results
    assert [r["k"] for r in a] == list(range(len(TEXTS)))
    assert set(a[0]) == {"text", "k", "predicted_label", "probs"}
    pa = np.array([[r["probs"][n] for n in LABELS] for r in a])
    pb = np.array([[r["probs"][n] for n in LABELS] for r in b])
    np.testing.assert_allclose(pa, pb, atol=2e-6)
    np.testing.assert_allclose(pa.sum(1), 1, atol=1e-5)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--input={src}", "--output={tmp}/o.txt"], "name it FILE.csv or FILE.jsonl"),
        (
            ["--input={src}", "--output={tmp}/o.csv", "--text-field=nope"],
            "has no column 'nope'; its columns are body, label",
        ),
        (["--input={tmp}/missing.csv", "--output={tmp}/o.csv"], "no such file"),
        (["--pool", "--output={tmp}/o.csv", "--input={src}"], "pass one of --input=FILE or --pool"),
        (["--input={blank}", "--output={tmp}/o.csv"], "no text in 'body' (first: row 2)"),
    ],
)
def test_bad_input_is_one_line(run_dir, tmp_path, capsys, args, message):
    src = _write_csv(tmp_path / "in.csv", [{"body": "a text", "label": ""}])
    blank = _write_csv(tmp_path / "blank.csv", [{"body": "x", "k": 1}, {"body": " ", "k": 2}])
    fmt = {"src": src, "tmp": tmp_path, "blank": blank}
    before = sorted(p.name for p in tmp_path.rglob("*"))
    code, stdout, err = _run(capsys, f"--workdir={run_dir}", *(a.format(**fmt) for a in args))
    assert code == 2 and err.count("error:") == 1 and message in err.splitlines()[-1], err
    assert sorted(p.name for p in tmp_path.rglob("*")) == before


def test_workdir_without_model_or_both_sources(tmp_path, capsys):
    workdir = tmp_path / "run"
    workdir.mkdir()
    (workdir / "config.json").write_text("{}")
    src = _write_csv(tmp_path / "in.csv", [{"text": "a"}])
    code, _, err = _run(capsys, f"--workdir={workdir}", f"--input={src}", "--output=o.csv")
    assert code == 2 and "has no trained model yet" in err
    code, _, err = _run(
        capsys, f"--workdir={workdir}", f"--model={workdir}", f"--input={src}", "--output=o.csv"
    )
    assert code == 2 and "pass one of --workdir=W (a run) or --model=DIR" in err
    code, _, err = _run(capsys, f"--model={workdir}", "--pool", "--output=o.csv")
    assert code == 2 and "--pool scores a run's unlabeled rows" in err
