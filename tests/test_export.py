"""A run's final model: kept in the workdir, exported as a Hugging Face checkpoint that
transformers' PyTorch model reproduces (cls pooling), or with a documented head (mean)."""

from __future__ import annotations

import json
from pathlib import Path

import jax
import numpy as np
import pytest
from flax import nnx

from tests.tiny_bert import save_tiny_bert

TEXTS = [
    "the printer on floor two is out of toner again",
    "refund please",
    "I cannot log in to the portal since the update yesterday, it says my password expired",
    "short",
    "how do I change the billing address on my invoice for next month",
]
LABELS = ["billing", "hardware", "login"]


def _meta(model_dir: Path, *, pooling: str, mode: str, task="classification", labels=LABELS):
    return {
        "format": 1,
        "model": str(model_dir),
        "model_path": str(model_dir),
        "pooling": pooling,
        "max_len": 32,
        "buckets": [8, 16, 32],
        "label_names": list(labels),
        "task": task,
        "data_name": "semeval" if task == "relation" else "files",
        "no_relation_label": "",
        "text_field": "body",
        "mode": mode,
        "round": 1,
        "dtype": "float32",
        "dropout": 0.1,
    }


def _perturbed_params(model, scale: float, seed: int) -> dict:
    """The model's parameters plus noise, as a host pure dict (a "trained" model)."""
    pure = nnx.to_pure_dict(nnx.state(model, nnx.Param))
    leaves, tree = jax.tree.flatten(pure)
    rng = np.random.default_rng(seed)
    noisy = [
        np.asarray(x) + scale * rng.standard_normal(np.shape(x)).astype(np.float32) for x in leaves
    ]
    return jax.tree.unflatten(tree, noisy)


def make_workdir(tmp: Path, *, pooling="cls", mode="full", task="classification", labels=LABELS):
    """A workdir whose final model is a perturbed tiny BERT classifier (what the loop keeps
    after its last round): config.json + model/."""
    from batl_jax.model import store
    from batl_jax.model.factory import ModelFactory

    model_dir = save_tiny_bert(tmp / "bert", seed=3)
    meta = _meta(model_dir, pooling=pooling, mode=mode, task=task, labels=labels)
    tokenizer = store.task_tokenizer(str(model_dir), meta)
    factory = ModelFactory(
        str(model_dir),
        len(labels),
        pooling=pooling,
        dropout=0.1,
        embed_dim=8,
        normalize=True,
        vocab_size=len(tokenizer),
    )
    model = factory.classifier(7, with_encoder=mode == "full")
    params = _perturbed_params(model, 0.05, seed=11)
    workdir = tmp / "run"
    workdir.mkdir()
    (workdir / "config.json").write_text(json.dumps({"name": "t"}))
    store.save_final(workdir, params, meta=meta)
    return workdir, meta


def batl_probs(workdir: Path, texts=TEXTS) -> np.ndarray:
    from batl_jax import predict

    model, tokenizer, meta = predict.load_model(workdir, None)
    return predict.probabilities(model, tokenizer, meta, list(texts), batch_size=4)


def torch_probs(out: Path, texts=TEXTS) -> np.ndarray:
    import torch
    import transformers

    model, info = transformers.AutoModelForSequenceClassification.from_pretrained(
        out, output_loading_info=True
    )
    assert not info["missing_keys"] and not info["unexpected_keys"], info
    tok = transformers.AutoTokenizer.from_pretrained(out)
    enc = tok(list(texts), padding=True, truncation=True, return_tensors="pt")
    with torch.no_grad():
        logits = model.eval()(**enc).logits
    return torch.softmax(logits.double(), -1).numpy()


def run_export(workdir: Path, out: Path, capsys) -> tuple[int, str, str]:
    from batl_jax import export

    capsys.readouterr()  # drop what building the tiny model printed
    code = export.main([f"--workdir={workdir}", f"--out={out}"])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_store_round_trip(tmp_path):
    from batl_jax.model import store

    workdir, meta = make_workdir(tmp_path, mode="head")
    params, read = store.load_final(workdir)
    assert read == meta
    assert set(params) == {
        "head_dense/kernel",
        "head_dense/bias",
        "out/kernel",
        "out/bias",
        "integrate/kernel",
        "integrate/bias",
    }
    assert not list((workdir / "model").glob("*.tmp"))


@pytest.mark.parametrize("mode", ["full", "head"])
def test_cls_export_matches_transformers(tmp_path, capsys, mode):
    workdir, _ = make_workdir(tmp_path, mode=mode)
    out = tmp_path / "hf"
    code, stdout, err = run_export(workdir, out, capsys)
    assert code == 0, err
    assert "AutoModelForSequenceClassification" in stdout
    config = json.loads((out / "config.json").read_text())
    assert config["architectures"] == ["BertForSequenceClassification"]
    assert config["id2label"] == {"0": "billing", "1": "hardware", "2": "login"}
    assert config["label2id"] == {"billing": 0, "hardware": 1, "login": 2}
    ours = batl_probs(workdir)
    theirs = torch_probs(out)
    assert np.abs(ours - theirs).max() < 1e-4
    assert np.abs(ours - np.full_like(ours, 1 / 3)).max() > 1e-3  # a trained, not flat, head

    from batl_jax import predict

    model, tokenizer, meta = predict.load_model(None, out)  # the export, back in batl_jax
    back = predict.probabilities(model, tokenizer, meta, TEXTS, batch_size=4)
    assert np.abs(back - ours).max() < 1e-5


def test_full_mode_exports_the_trained_encoder(tmp_path, capsys):
    """The exported encoder is the run's fine-tuned one, not the pre-trained checkpoint."""
    import safetensors.numpy

    workdir, meta = make_workdir(tmp_path, mode="full")
    run_export(workdir, tmp_path / "hf", capsys)
    exported = safetensors.numpy.load_file(tmp_path / "hf" / "model.safetensors")
    pretrained = safetensors.numpy.load_file(Path(meta["model_path"]) / "model.safetensors")
    key = "embeddings.word_embeddings.weight"
    assert np.abs(exported[f"bert.{key}"] - pretrained[key]).max() > 1e-3


def test_mean_pooling_export_documents_its_head(tmp_path, capsys):
    import safetensors.numpy
    import torch
    import transformers

    workdir, _ = make_workdir(tmp_path, pooling="mean", mode="full")
    out = tmp_path / "hf"
    code, stdout, err = run_export(workdir, out, capsys)
    assert code == 0, err
    assert "no transformers head" in stdout and "batl_head.safetensors" in stdout
    assert "mean" in (out / "README.md").read_text()
    # The README's recipe in PyTorch gives batl_jax's probabilities.
    encoder = transformers.AutoModel.from_pretrained(out).eval()
    tok = transformers.AutoTokenizer.from_pretrained(out)
    tensors = safetensors.numpy.load_file(out / "batl_head.safetensors")
    head = {k: torch.from_numpy(v).double() for k, v in tensors.items()}
    enc = tok(TEXTS, padding=True, truncation=True, return_tensors="pt")
    with torch.no_grad():
        h = encoder(**enc).last_hidden_state.double()
    m = enc["attention_mask"][..., None].double()
    s = (h * m).sum(1) / m.sum(1)
    z = torch.tanh(s @ head["head_dense/kernel"] + head["head_dense/bias"])
    theirs = torch.softmax(z @ head["out/kernel"] + head["out/bias"], -1).numpy()
    ours = batl_probs(workdir)
    assert np.abs(ours - theirs).max() < 1e-4

    from batl_jax import predict

    model, tokenizer, meta = predict.load_model(None, out)
    back = predict.probabilities(model, tokenizer, meta, TEXTS, batch_size=4)
    assert np.abs(back - ours).max() < 1e-5


def test_relation_markers_in_the_exported_tokenizer(tmp_path, capsys):
    import transformers

    workdir, _ = make_workdir(tmp_path, task="relation", labels=["Other", "Cause-Effect(e1,e2)"])
    out = tmp_path / "hf"
    code, _, err = run_export(workdir, out, capsys)
    assert code == 0, err
    tok = transformers.AutoTokenizer.from_pretrained(out)
    base = transformers.AutoTokenizer.from_pretrained(tmp_path / "bert")
    added = set(tok.get_vocab()) - set(base.get_vocab())
    assert added and all(t.startswith("[") or t.startswith("<") for t in added), added
    assert json.loads((out / "config.json").read_text())["vocab_size"] == len(tok)


def test_unfinished_run_is_refused(tmp_path, capsys):
    workdir = tmp_path / "run"
    workdir.mkdir()
    (workdir / "config.json").write_text("{}")
    out = tmp_path / "hf"
    code, stdout, err = run_export(workdir, out, capsys)
    assert code == 2
    assert err.count("\n") == 1 and "has no trained model yet: run the rounds first" in err
    assert not out.exists() and stdout == ""


@pytest.mark.parametrize("kind", ["file", "non-empty folder"])
def test_bad_out_is_refused(tmp_path, capsys, kind):
    workdir, _ = make_workdir(tmp_path)
    out = tmp_path / "taken"
    if kind == "file":
        out.write_text("x")
    else:
        out.mkdir()
        (out / "keep.txt").write_text("x")
    before = sorted(p.name for p in tmp_path.rglob("*"))
    code, _, err = run_export(workdir, out, capsys)
    assert code == 2 and err.count("\n") == 1 and str(out) in err
    assert sorted(p.name for p in tmp_path.rglob("*")) == before
