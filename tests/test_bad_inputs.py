"""The bad-input catalogue: every case ends in our own error (or exit status 2 from the
command line) with a one-line message naming the problem and the fix, and leaves every
file of the workdir byte-for-byte as it was (hashed before and after).

Cases run in-process through ``batl_jax.main.run`` / ``batl_jax.label.import_labels``;
a few run the real commands to check exit codes. Workdirs are fresh (a refused run must
not even claim the folder), a copy of a finished run, or a copy of a human-oracle run
waiting for its round-0 batch with 5 of 20 labels imported.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import json
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from batl_jax import label
from batl_jax import main as batl_main
from batl_jax.errors import ConfigError, DataError, ModelError, StateError
from tests.bad_inputs_env import (
    BASE,
    Env,
    build_env,
    error_line,
    gold_labels,
    pending_batch,
    write_pairs,
)
from tests.run_helpers import (
    DATA_DIR,
    REPO,
    small_csabstruct,
    subprocess_env,
    tiny_config,
    tree_hashes,
    write_config_file,
    write_jsonl_gz,
)

pytestmark = pytest.mark.skipif(not Path(DATA_DIR).is_dir(), reason="data dir not available")

GOOD = {"text": "We propose a method.", "label": "method"}


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> Env:
    return build_env(tmp_path_factory)


_gold, _jsonl, _batch = gold_labels, write_pairs, pending_batch


# ----------------------------------------------------------------------------- set-ups


def _data(train=None, test=None, *, drop=None, good=60):
    """A set-up writing a data dir: ``good`` rows plus ``train``/``test`` records (dicts or
    raw bytes lines); ``drop`` removes that split's file."""

    def setup(env: Env, tmp: Path) -> dict:
        root = tmp / "data"
        for split, extra in (("train", train), ("test", test)):
            path = root / "csabstruct" / f"{split}.jsonl.gz"
            if drop == split:
                path.parent.mkdir(parents=True, exist_ok=True)
                continue
            if extra == "EMPTY":
                write_jsonl_gz(path, [])
                continue
            write_jsonl_gz(path, [GOOD] * good + list(extra or []))
        return {"data__dir": str(root)}

    return setup


def _model(edit: Callable[[Path], None]):
    def setup(env: Env, tmp: Path) -> dict:
        m = tmp / "model"
        shutil.copytree(env.model, m)
        edit(m)
        return {"model__name": str(m)}

    return setup


def _set_config(**fields):
    def edit(m: Path):
        cfg = json.loads((m / "config.json").read_text())
        cfg.update(fields)
        (m / "config.json").write_text(json.dumps(cfg))

    return edit


def _small_vocab(m: Path):
    """A consistent model whose embedding table is smaller than the tokenizer's vocabulary."""
    from safetensors.numpy import load_file, save_file

    state = load_file(str(m / "model.safetensors"))
    key = next(k for k in state if k.endswith("word_embeddings.weight"))
    state[key] = state[key][:1000].copy()
    save_file(state, str(m / "model.safetensors"))
    _set_config(vocab_size=1000)(m)


def _pickle_only(m: Path):
    (m / "model.safetensors").unlink()
    (m / "pytorch_model.bin").write_bytes(b"\x80\x04not really a pickle")


def _rm(*names):
    def edit(m: Path):
        for n in names:
            (m / n).unlink(missing_ok=True)

    return edit


def _corrupt_checkpoint(env, work):
    step = max(int(p.name) for p in (work / "checkpoints").iterdir() if p.name.isdigit())
    for p in (work / "checkpoints" / str(step)).rglob("*"):
        if p.is_file() and p.name not in ("_CHECKPOINT_METADATA", "commit_success.txt"):
            p.write_bytes(b"\x00garbage\xff" * 8)


def _write(rel: str, content: bytes):
    def setup(env, work):
        (work / rel).write_bytes(content)

    return setup


def _files(train: str, test: str | None = None, *, name="train.csv", **fields):
    """A set-up for ``data.name=files``: CSV text for the pool (and the test file);
    ``fields`` are ``data.*`` overrides (``text_field="body"``)."""

    def setup(env: Env, tmp: Path) -> dict:
        (tmp / name).write_text(train)
        out = {"data__name": "files", "data__train_file": str(tmp / name)}
        if test is not None:
            (tmp / "test.csv").write_text(test)
            out["data__test_file"] = str(tmp / "test.csv")
        return {**out, **{f"data__{k}": v for k, v in fields.items()}}

    return setup


def _rows(n: int, label=lambda i: "ab"[i % 2], text=lambda i: f"ticket number {i} text"):
    return "id,body,category\n" + "".join(f"t{i},{text(i)},{label(i)}\n" for i in range(n))


TICKETS = dict(text_field="body", label_field="category", id_field="id")


def _shuffled(env: Env, tmp: Path) -> dict:
    """The finished run's data with its rows in another order (same count, same texts)."""
    src = env.data / "csabstruct" / "train.jsonl.gz"
    with gzip.open(src, "rt") as f:
        lines = f.read().splitlines(True)
    root = tmp / "shuffled"
    shutil.copytree(env.data, root)
    with gzip.open(root / "csabstruct" / "train.jsonl.gz", "wt") as f:
        f.write("".join(lines[1::2] + lines[0::2]))
    return {"data__dir": str(root)}


def _edit_lines(rel: str, edit: Callable[[list[str]], list[str]]):
    """A prepare step rewriting ``rel``'s lines (each keeps its newline)."""

    def prepare(env, work):
        path = work / rel
        path.write_text("".join(edit(path.read_text().splitlines(True))))

    return prepare


def _unlink(*rels: str):
    def prepare(env, work):
        for rel in rels:
            (work / rel).unlink()

    return prepare


def _file_for_folder(rel: str):
    def prepare(env, work):
        shutil.rmtree(work / rel)
        (work / rel).write_text("a file where a folder was")

    return prepare


def _conflicting_label(env, work):
    """A hand-edited labels.jsonl: a second line giving an imported id another label."""
    path = work / "labels.jsonl"
    first = json.loads(path.read_text().splitlines()[0])
    other = "method" if first["label"] != "method" else "result"
    with path.open("a") as f:
        f.write(json.dumps({**first, "label": other}) + "\n")


def _workdir_is_a_file(env, work):
    work.write_text("not a folder")


# ----------------------------------------------------------------------------- cases


@dataclasses.dataclass
class Case:
    id: str
    error: type[BaseException]  # a BatlError, or an OSError the entry points report
    problem: str  # regex the message must match: what is wrong
    fix: str  # regex the message must match: what to do
    overrides: dict = dataclasses.field(default_factory=dict)
    setup: Callable | None = None  # (env, tmp) -> overrides, for fresh workdirs
    workdir: str = "fresh"  # fresh | finished | human
    prepare: Callable | None = None  # (env, workdir copy) -> None, before hashing


C = Case
RUN_CASES = [
    # -- configuration ---------------------------------------------------------------------
    C("unknown-strategy", ConfigError, "unknown strategy 'nope'", "--config.al.strategy",
      {"al__strategy": "nope"}),
    C("unknown-task", ConfigError, "task.name='ner'", "--config.task.name", {"task__name": "ner"}),
    C("unknown-dataset", ConfigError, "unknown data.name 'imdb'", "use one of",
      {"data__name": "imdb"}),
    C("batch-size-zero", ConfigError, "al.batch_size=0 is out of range", "--config.al.batch_size",
      {"al__batch_size": 0}),
    C("rounds-zero", ConfigError, "al.rounds=0", "--config.al.rounds", {"al__rounds": 0}),
    C("initial-size-negative", ConfigError, "al.initial_size=-5", "--config.al.initial_size",
      {"al__initial_size": -5}),
    C("lr-zero", ConfigError, "train.lr=0", r"--config.train.lr > 0", {"train__lr": 0.0}),
    C("epochs-negative", ConfigError, "train.epochs=-1", "--config.train.epochs",
      {"train__epochs": -1}),
    C("warmup-above-one", ConfigError, "train.warmup_ratio=1.5", "<= 1",
      {"train__warmup_ratio": 1.5}),
    C("dropout-one", ConfigError, "train.dropout=1.0", "--config.train.dropout",
      {"train__dropout": 1.0}),
    C("max-len-tiny", ConfigError, "model.max_len=2", "--config.model.max_len",
      {"model__max_len": 2}),
    C("pool-limit-negative", ConfigError, "data.pool_limit=-1", "--config.data.pool_limit",
      {"data__pool_limit": -1}),
    C("seed-negative", ConfigError, "seed=-1", "--config.seed", {"seed": -1}),
    C("too-many-devices", ConfigError, "mesh.num_devices=99", "use 0", {"mesh__num_devices": 99}),
    C("pooling-unknown", ConfigError, "model.pooling='max'", "one of 'cls', 'mean'",
      {"model__pooling": "max"}),
    C("oracle-unknown", ConfigError, "al.oracle='crowd'", "'simulated', 'human'",
      {"al__oracle": "crowd"}),
    C("on-error-unknown", ConfigError, "data.on_error='ignore'", "'fail', 'skip'",
      {"data__on_error": "ignore"}),
    C("mining-unknown", ConfigError, "batl.mining='local'", "'minibatch', 'global'",
      {"batl__mining": "local", "al__strategy": "batl"}),
    C("dtype-unknown", ConfigError, "model.dtype='float16'", "'bfloat16'",
      {"model__dtype": "float16"}),
    C("mc-samples-zero", ConfigError, "bald.mc_samples=0", "--config.bald.mc_samples",
      {"bald__mc_samples": 0, "al__strategy": "bald"}),
    C("k-larger-than-pool", ConfigError, "larger than the pool", "lower --config.al.batch_size",
      {"al__batch_size": 1000}),
    C("initial-plus-k-over-pool", ConfigError, "al.initial_size=140", "lower it",
      {"al__initial_size": 140}),
    C("cold-start-needs-model", ConfigError, "needs a trained classifier", "cold-start strategy",
      {"al__initial_size": 0, "al__strategy": "entropy"}),
    # -- data ------------------------------------------------------------------------------
    C("data-dir-missing", DataError, "does not exist", "--config.data.dir",
      {"data__dir": "/nonexistent/batl-data"}),
    C("train-file-missing", DataError, "missing data file", "data.dir", setup=_data(drop="train")),
    C("train-split-empty", DataError, "no records", "put JSON lines", setup=_data(train="EMPTY")),
    C("test-split-blank-lines", DataError, "no records", "put JSON lines",
      setup=_data(test="EMPTY")),
    C("label-missing", DataError, "missing label", "on_error=skip", setup=_data([{"text": "x y"}])),
    C("label-unknown", DataError, "unknown label", "fix the record",
      setup=_data([{"text": "x y", "label": "banana"}])),
    C("label-index-out-of-range", DataError, "unknown label", "fix the record",
      setup=_data([{"text": "x y", "label": 7}])),
    C("non-utf8-bytes", DataError, "line 62 is not valid UTF-8", "re-save the file as UTF-8",
      setup=_data([b'{"text": "ok", "label": "method"}\n', b'{"text": "caf\xe9"}\n'])),
    C("invalid-json-line", DataError, "line 61 is not valid JSON", "fix or remove that line",
      setup=_data([b'{"text": "cut off", "lab\n'])),
    C("text-empty", DataError, "empty text", "fix the record",
      setup=_data([{"text": "", "label": "method"}])),
    C("text-whitespace", DataError, "empty text", "fix the record",
      setup=_data([{"text": " \t\n ", "label": "method"}])),
    C("duplicate-ids", DataError, "duplicate id", "fix the record",
      setup=_data([{"id": "a", **GOOD}, {"id": "a", **GOOD}])),
    C("no-usable-records", DataError, "no usable records", "field names",
      {"data__on_error": "skip"}, setup=_data([{"label": "method"}] * 3, good=0)),
    C("human-test-split-unlabeled", DataError, "missing label", "fix the record",
      {"al__oracle": "human"}, setup=_data(test=[{"text": "no label here"}])),
    # -- models ----------------------------------------------------------------------------
    C("model-no-weights", ModelError, "no weights", "model.safetensors",
      setup=_model(_rm("model.safetensors"))),
    C("model-no-config", ModelError, "no config.json", "copy it", setup=_model(_rm("config.json"))),
    C("model-shape-mismatch", ModelError, "does not match its config.json", "re-download",
      setup=_model(_set_config(intermediate_size=40))),
    C("tokenizer-vocab-mismatch", ModelError, "has 30522 tokens but .* 1000 rows", "tokenizer",
      setup=_model(_small_vocab)),
    C("pickle-checkpoint", ModelError, "pickle", "python -m batl_jax.model.convert",
      setup=_model(_pickle_only)),
    C("safetensors-corrupt", ModelError, "cannot read .*model.safetensors", "re-download",
      setup=_model(lambda m: (m / "model.safetensors").write_bytes(b"\x10\x00garbage" * 9))),
    C("config-json-garbage", ModelError, "not valid JSON", "re-download",
      setup=_model(lambda m: (m / "config.json").write_text("{oops"))),
    C("tokenizer-missing", ModelError, "cannot load a tokenizer", "tokenizer.json",
      setup=_model(_rm("tokenizer.json", "vocab.txt", "tokenizer_config.json",
                       "special_tokens_map.json"))),
    C("not-bert", ModelError, "model_type='roberta' is not supported", "pick a BERT checkpoint",
      setup=_model(_set_config(model_type="roberta"))),
    C("model-path-missing", ModelError, "no such directory", "pass an existing model directory",
      {"model__name": "./no/such/model"}),
    # -- loop state ------------------------------------------------------------------------
    C("checkpoint-corrupt", StateError, "cannot be read", "delete that step's folder",
      workdir="finished", prepare=_corrupt_checkpoint),
    C("workdir-other-config", StateError, "different config .*seed", "new --workdir",
      {"seed": 1}, workdir="finished"),
    C("config-json-damaged", StateError, "not valid JSON", "restore it",
      workdir="finished", prepare=_write("config.json", b"{not json")),
    C("data-changed-under-run", StateError, "pool's ids, texts or labels differ",
      "restore what changed",
      setup=_data(), workdir="finished"),
    C("human-labels-lost", StateError, "no label for id", "restore labels.jsonl",
      {"al__oracle": "human"}, workdir="human",
      prepare=lambda env, w: (w / "labels.jsonl").unlink()),
    C("human-labels-damaged", StateError, "line 3 is damaged", "restore the file",
      {"al__oracle": "human"}, workdir="human",
      prepare=lambda env, w: (w / "labels.jsonl").write_text(
          "".join((env.human / "labels.jsonl").read_text().splitlines(True)[:2]) + "{torn")),
    # -- issue 14: the user's own files (data.name=files) --------------------------------
    C("files-no-train-file", ConfigError, "needs --config.data.train_file", "CSV",
      {"data__name": "files"}),
    C("files-train-missing", DataError, "missing data file .*nope.csv", "data.train_file",
      {"data__name": "files", "data__train_file": "/nonexistent/nope.csv"}),
    C("files-test-missing", DataError, "missing data file .*gone.csv", "data.test_file",
      {"data__test_file": "/nonexistent/gone.csv"}, setup=_files(_rows(150), **TICKETS)),
    C("files-unknown-text-column", DataError, "has no column 'text'.*id, body, category",
      "--config.data.text_field", setup=_files(_rows(150), label_field="category")),
    C("files-unknown-label-column", DataError, "has no column 'label'", "data.label_field",
      setup=_files(_rows(150), text_field="body")),
    C("files-unknown-id-column", DataError, "has no column 'ticket_id'", "data.id_field",
      setup=_files(_rows(150), **{**TICKETS, "id_field": "ticket_id"})),
    C("files-label-not-in-names", DataError, "label='c'",
      "add its label to --config.data.label_names",
      setup=_files(_rows(150, label=lambda i: "abc"[i % 3]), **TICKETS, label_names=("a", "b"))),
    C("files-empty-text", DataError, "empty text", "fix the record",
      setup=_files(_rows(150, text=lambda i: "" if i == 7 else f"text {i}"), **TICKETS)),
    C("files-unlabeled-pool-simulated", ConfigError, "the pool has 75 unlabeled rows",
      "--config.al.oracle=human",
      setup=_files(_rows(150, label=lambda i: "" if i % 2 else "ab"[i % 4 // 2]), **TICKETS)),
    C("files-no-labels-at-all", DataError, "no labels in column 'category'",
      "--config.data.label_names", setup=_files(_rows(150, label=lambda i: ""), **TICKETS)),
    C("files-unknown-format", DataError, "cannot tell the format", "use a file ending in",
      setup=_files(_rows(150), name="train.txt", **TICKETS)),
    C("files-duplicate-ids", DataError, "duplicate id", "fix the record",
      setup=_files(_rows(150).replace("t9,", "t8,"), **TICKETS)),
    C("files-test-label-absent-from-train", DataError, "^(?!.*on_error=skip).*'c'",
      "label_names|fix the record",
      setup=_files(_rows(150), _rows(20, label=lambda i: "abc"[i % 3]), **TICKETS,
                   label_names=("a", "b"))),
    # -- issue 16: models -----------------------------------------------------------------
    C("tokenizer-json-garbage", ModelError, "tokenizer files in .* are unreadable",
      "re-download or restore tokenizer.json",
      setup=_model(lambda m: (m / "tokenizer.json").write_text("{garbage"))),
    C("config-fewer-layers-than-weights", ModelError, "layer|does not match", "config.json",
      setup=_model(_set_config(num_hidden_layers=1))),
    # -- issue 16: resume verifies what it finds ------------------------------------------
    C("metrics-blank-line-mid", StateError, r"metrics.jsonl line 2 is not a JSON object",
      "restore the file", {"al__rounds": 3}, workdir="finished",
      prepare=_edit_lines("metrics.jsonl", lambda ls: [ls[0], "\n", *ls[1:]])),
    C("metrics-damaged-line-mid", StateError, r"metrics.jsonl line 1 is not a JSON object",
      "restore the file", {"al__rounds": 3}, workdir="finished",
      prepare=_edit_lines("metrics.jsonl", lambda ls: ["{torn\n", *ls[1:]])),
    C("metrics-deleted", StateError, "holds 0 round.* checkpoint has 2 done",
      "never dropped", {"al__rounds": 3}, workdir="finished", prepare=_unlink("metrics.jsonl")),
    C("metrics-row-lost", StateError, "holds 1 round.* checkpoint has 2 done", "restore the file",
      {"al__rounds": 3}, workdir="finished",
      prepare=_edit_lines("metrics.jsonl", lambda ls: ls[:1])),
    C("metrics-round-twice", StateError, "round 1 a second time", "two runs at once",
      {"al__rounds": 3}, workdir="finished",
      prepare=_edit_lines("metrics.jsonl", lambda ls: [*ls, ls[1]])),
    C("metrics-rounds-swapped", StateError, "holds round 1 where round 0 belongs", "restore it",
      workdir="finished", prepare=_edit_lines("metrics.jsonl", lambda ls: [ls[1], ls[0]])),
    C("selected-deleted", StateError, "selected.jsonl holds 0 round", "restore the file",
      workdir="finished", prepare=_unlink("selected.jsonl")),
    C("selected-damaged-line", StateError, "selected.jsonl line 1 is not a JSON object",
      "restore the file", workdir="finished",
      prepare=_edit_lines("selected.jsonl", lambda ls: ["[1, 2]\n", *ls])),
    C("config-deleted-other-seed", StateError, "seed 0.*seed 5", "new --workdir",
      {"seed": 5, "al__rounds": 3}, workdir="finished", prepare=_unlink("config.json")),
    C("config-deleted-other-lr", StateError, "setting that changes results", "new --workdir",
      {"train__lr": 5e-3}, workdir="finished", prepare=_unlink("config.json")),
    C("config-deleted-other-strategy", StateError, "setting that changes results",
      "new --workdir", {"al__strategy": "entropy"}, workdir="finished",
      prepare=_unlink("config.json")),
    C("config-json-not-object", StateError, "not a config object", "restore it",
      workdir="finished", prepare=_write("config.json", b"[1, 2]")),
    C("workdir-other-strategy", StateError, "different config .*al.strategy", "new --workdir",
      {"al__strategy": "entropy"}, workdir="finished"),
    C("data-shuffled", StateError, "pool's ids, texts or labels differ", "restore what changed",
      {"al__rounds": 3}, setup=_shuffled, workdir="finished"),
    C("human-labels-conflicting-line", StateError, "labels.jsonl line", "restore|remove",
      {"al__oracle": "human"}, workdir="human", prepare=_conflicting_label),
    # -- issue 16: a file where a folder should be, before anything is written --------------
    C("workdir-is-a-file", OSError, "work", "another --workdir",
      prepare=_workdir_is_a_file),
    C("checkpoints-is-a-file", NotADirectoryError, "checkpoints", "move it away",
      {"al__rounds": 3}, workdir="finished", prepare=_file_for_folder("checkpoints")),
]  # fmt: skip


def _workdir(env: Env, case: Case, tmp: Path) -> Path:
    work = tmp / "work"
    if case.workdir != "fresh":
        shutil.copytree(getattr(env, case.workdir), work)
    if case.prepare is not None:
        case.prepare(env, work)
    return work


def _check_message(e: BaseException, case: Case) -> None:
    msg = error_line(e)
    assert re.search(case.problem, msg), (case.problem, msg)
    assert re.search(case.fix, msg), (case.fix, msg)


def _hashes(work: Path) -> dict[str, str]:
    """Every file's hash; a workdir that is a file hashes as that file."""
    if work.is_file():
        return {".": hashlib.sha256(work.read_bytes()).hexdigest()}
    return tree_hashes(work)


def _id(case) -> str:
    return case.id


@pytest.mark.parametrize("case", RUN_CASES, ids=_id)
def test_bad_run_input(env, case, tmp_path):
    work = _workdir(env, case, tmp_path)
    overrides = {"data__dir": str(env.data), **BASE, **case.overrides}
    if case.setup is not None:
        if case.id == "data-changed-under-run":  # the finished run's pool, now 100 rows
            overrides["data__dir"] = str(small_csabstruct(tmp_path / "data", 100, 80))
        else:
            overrides.update(case.setup(env, tmp_path))
    cfg = tiny_config(env.model, **overrides)
    before = _hashes(work)
    with pytest.raises(case.error) as e:
        batl_main.run(cfg, str(work))
    _check_message(e.value, case)
    assert _hashes(work) == before


# -- label import ------------------------------------------------------------------------


def _label_file(name: str, text: str | bytes):
    def make(env: Env, tmp: Path) -> list[Path]:
        p = tmp / name
        p.write_bytes(text if isinstance(text, bytes) else text.encode())
        return [p]

    return make


def _pairs(fn: Callable[[list[dict], dict], list[tuple]], name="labels.jsonl"):
    """A label file built from the pending batch and the gold labels."""

    def make(env: Env, tmp: Path) -> list[Path]:
        return [_jsonl(tmp / name, fn(_batch(env), _gold(env.data)))]

    return make


def _complete_then_again(env: Env, work: Path) -> None:
    gold = _gold(env.data)
    f = _jsonl(work.parent / "rest.jsonl", [(b["id"], gold[b["id"]]) for b in _batch(env)])
    label.import_labels(work, [f])


def _labelstudio(task_of: Callable[[str], object], name="export.json"):
    """A Label Studio / Argilla JSON export of one task for the first unlabeled pending row."""

    def make(env: Env, tmp: Path) -> list[Path]:
        rid = pending_batch(env)[9]["id"]
        p = tmp / name
        p.write_text(json.dumps([task_of(rid)]))
        return [p]

    return make


def _ann(*annotations):
    return lambda rid: {"data": {"batl_id": rid}, "annotations": list(annotations)}


def _choice(value):
    return _ann({"result": [{"from_name": "label", "value": value}]})


IMPORT_CASES = [
    C("import-unknown-label", DataError, "unknown label 'banana'", "fix them and import again",
      setup=_pairs(lambda b, g: [(b[7]["id"], "banana")]), workdir="human"),
    C("import-id-not-in-batch", DataError, "id 'no-such-id' is not in round 0's batch",
      "fix them", setup=_pairs(lambda b, g: [("no-such-id", "method")]), workdir="human"),
    C("import-duplicate-id", DataError, "line 2: id .* repeats .*line 1", "fix them",
      setup=_pairs(lambda b, g: [(b[9]["id"], "method"), (b[9]["id"], "result")]),
      workdir="human"),
    C("import-blank-label", DataError, "line 1: blank label", "--allow-blank",
      setup=_pairs(lambda b, g: [(b[9]["id"], "  ")]), workdir="human"),
    C("import-relabel-conflict", DataError, "already has label", "final",
      setup=_pairs(lambda b, g: [(b[0]["id"], "other" if g[b[0]["id"]] != "other" else "method")]),
      workdir="human"),
    C("import-non-utf8", DataError, "line 2 is not valid UTF-8", "save the file as UTF-8",
      setup=_label_file("l.csv", b"id,label\n1,m\xe9thod\n"), workdir="human"),
    C("import-file-missing", DataError, "no such label file", "pass the file",
      setup=lambda env, tmp: [tmp / "nope.csv"], workdir="human"),
    C("import-empty-file", DataError, "holds no labels", "fill in the exported file",
      setup=_label_file("l.csv", "id,text,label\n"), workdir="human"),
    C("import-csv-no-label-column", DataError, "needs 'id' and 'label' columns", "export",
      setup=_label_file("l.csv", "id,text\n1,abc\n"), workdir="human"),
    C("import-bad-json-line", DataError, "line 2 is not valid JSON", "fix that line",
      setup=_label_file("l.jsonl", '{"id": "1", "label": "method"}\n{"id": \n'), workdir="human"),
    C("import-labelstudio-not-list", DataError, "expected a list of tasks", "Label Studio",
      setup=_label_file("l.json", '{"data": {}}'), workdir="human"),
    C("import-no-batch-pending", StateError, "no query batch is pending", "al.oracle=human",
      setup=_pairs(lambda b, g: [(b[9]["id"], "method")]), workdir="finished"),
    C("import-batch-complete", StateError, "every sample of round 0's batch is labeled",
      "rerun", setup=_pairs(lambda b, g: [(b[9]["id"], g[b[9]["id"]])]), workdir="human",
      prepare=_complete_then_again),
    C("import-not-a-run", StateError, "holds no batl_jax run", "--workdir",
      setup=_pairs(lambda b, g: [(b[9]["id"], "method")])),
    # -- issue 16: malformed Label Studio and Argilla exports --------------------------------
    C("ls-data-not-object", DataError, "task 1: 'data' is a string, not an object", "fix them",
      setup=_labelstudio(lambda rid: {"data": rid, "annotations": []}), workdir="human"),
    C("ls-annotations-not-list", DataError, "'annotations' is an object, not a list", "fix them",
      setup=_labelstudio(lambda rid: {"data": {"batl_id": rid}, "annotations": {"a": 1}}),
      workdir="human"),
    C("ls-annotation-not-object", DataError, "annotation 1 is a string, not an object",
      "fix them", setup=_labelstudio(_ann("method")), workdir="human"),
    C("ls-result-not-list", DataError, "annotation 1: 'result' is a string", "fix them",
      setup=_labelstudio(_ann({"result": "method"})), workdir="human"),
    C("ls-result-entry-not-object", DataError, "annotation 1: a result is int", "fix them",
      setup=_labelstudio(_ann({"result": [3]})), workdir="human"),
    C("ls-value-not-object", DataError, "annotation 1: 'value' is a string", "fix them",
      setup=_labelstudio(_choice("method")), workdir="human"),
    C("ls-value-null", DataError, "annotation 1: 'value' is null", "fix them",
      setup=_labelstudio(_choice(None)), workdir="human"),
    C("ls-choices-not-list", DataError, "'choices' is not a list of labels", "fix them",
      setup=_labelstudio(_choice({"choices": "method"})), workdir="human"),
    C("ls-two-choices", DataError, "annotation 1 has 2 choices", "fix them",
      setup=_labelstudio(_choice({"choices": ["method", "result"]})), workdir="human"),
    C("ls-unknown-choice", DataError, "unknown label 'banana'", "fix them",
      setup=_labelstudio(_choice({"choices": ["banana"]})), workdir="human"),
    C("ls-task-not-object", DataError, "task 1: the task is a string, not an object", "fix them",
      setup=_labelstudio(lambda rid: rid), workdir="human"),
    C("ls-invalid-json", DataError, "export.json is not valid JSON", "export the annotations",
      setup=_label_file("export.json", '[{"data": {"batl_id": "1"}, '), workdir="human"),
    C("argilla-responses-not-object", DataError, "'responses' is a list", "fix them",
      setup=_labelstudio(lambda rid: {"id": rid, "fields": {}, "responses": ["x"]}),
      workdir="human"),
    C("argilla-label-not-list", DataError, "'responses.label' is not a list of objects",
      "fix them",
      setup=_labelstudio(lambda rid: {"id": rid, "fields": {}, "responses": {"label": "x"}}),
      workdir="human"),
    C("import-jsonl-line-not-object", DataError, "line 1: the line is a list, not an object",
      "fix them", setup=_label_file("l.jsonl", '["1", "method"]\n'), workdir="human"),
    C("import-file-is-a-folder", DataError, "is a folder", "pass the file you filled in",
      setup=lambda env, tmp: [tmp], workdir="human"),
]  # fmt: skip


@pytest.mark.parametrize("case", IMPORT_CASES, ids=_id)
def test_bad_label_import(env, case, tmp_path):
    work = _workdir(env, case, tmp_path)
    files = case.setup(env, tmp_path)
    before = tree_hashes(work)
    with pytest.raises(case.error) as e:
        label.import_labels(work, files)
    _check_message(e.value, case)
    assert tree_hashes(work) == before


# -- real command lines: exit status 2 and one "error:" line ---------------------------------


_MAIN = ["-m", "batl_jax.main", "--config={cfg}", "--workdir={tmp}/w"]
_LABEL = ["-m", "batl_jax.label"]
COMMAND_LINES = [
    ("unknown-key", [*_MAIN, "--config.al.stratgy=batl"],
     r"unknown config key 'stratgy'.*strategy"),
    ("not-an-int", [*_MAIN, "--config.al.batch_size=many"],
     r"--config.al.batch_size=many.*batl_jax/config.py"),
    ("config-missing", ["-m", "batl_jax.main", "--config=nope.py"], r"cannot load --config"),
    ("warmup-out-of-range", [*_MAIN, "--config.train.warmup_ratio=2.0"],
     r"train.warmup_ratio=2.0 is out of range"),
    ("lr-nan", [*_MAIN, "--config.train.lr=nan"], r"train.lr=nan is not a number"),
    ("warmup-inf", [*_MAIN, "--config.train.warmup_ratio=inf"],
     r"train.warmup_ratio=inf is not a number"),
    ("seed-2-63", [*_MAIN, "--config.seed=9223372036854775808"], r"seed=.*< 2\*\*63"),
    ("dal-hidden-0", [*_MAIN, "--config.dal.hidden=0"], r"dal.hidden=0 is out of range"),
    ("section-override", [*_MAIN, "--config.model={{'name': 'x'}}"],
     r"model lacks .*--config\.model\.\w+="),
    ("label-import-bad-rows", [*_LABEL, "import", "--workdir={human}", "{tmp}/bad.csv"],
     r"2 problem\(s\).*nothing imported"),
    ("label-export-finished-run", [*_LABEL, "export", "--workdir={finished}"],
     r"no query batch is pending"),
    ("label-export-out-a-file", [*_LABEL, "export", "--workdir={human}", "--out={tmp}/bad.csv"],
     r"bad.csv.*(folder|file)"),
]  # fmt: skip


@pytest.mark.parametrize("argv, pattern", [c[1:] for c in COMMAND_LINES],
                         ids=[c[0] for c in COMMAND_LINES])  # fmt: skip
def test_command_line_exits_2_with_one_error_line(env, tmp_path, argv, pattern):
    cfg_file = write_config_file(tmp_path / "cfg.py", env.model, data__dir=str(env.data), **BASE)
    (tmp_path / "bad.csv").write_text("id,label\nno-such-id,method\nother,banana\n")
    human = tmp_path / "human"
    shutil.copytree(env.human, human)
    names = dict(cfg=cfg_file, tmp=tmp_path, human=human, finished=env.finished)
    before = tree_hashes(human), tree_hashes(env.finished), (tmp_path / "bad.csv").read_bytes()
    proc = subprocess.run(
        [sys.executable, *(a.format(**names) for a in argv)],
        cwd=REPO,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, (argv, proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    errors = [x for x in proc.stderr.splitlines() if x.startswith("error: ")]
    assert len(errors) == 1 and re.search(pattern, errors[0]), proc.stderr[-2000:]
    assert not (tmp_path / "w").exists()
    after = tree_hashes(human), tree_hashes(env.finished), (tmp_path / "bad.csv").read_bytes()
    assert after == before
