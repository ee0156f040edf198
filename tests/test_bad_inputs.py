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
from batl_jax.errors import BatlError, ConfigError, DataError, ModelError, StateError
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
from tests.tiny_bert import save_tiny_bert

pytestmark = pytest.mark.skipif(not Path(DATA_DIR).is_dir(), reason="data dir not available")

BASE = dict(train__mode="head", analysis__enabled=False)
GOOD = {"text": "We propose a method.", "label": "method"}


@dataclasses.dataclass
class Env:
    model: Path
    data: Path
    finished: Path  # a completed simulated run of BASE
    human: Path  # al.oracle=human, round 0's batch pending, 5 of its 20 labels imported
    tmp: Path


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> Env:
    tmp = tmp_path_factory.mktemp("catalogue")
    model = save_tiny_bert(tmp / "model")
    data = small_csabstruct(tmp / "data")
    finished = tmp / "finished"
    batl_main.run(tiny_config(model, data__dir=str(data), **BASE), str(finished))
    human = tmp / "human"
    cfg = tiny_config(model, data__dir=str(data), al__oracle="human", **BASE)
    batl_main.run(cfg, str(human))  # stops: the initial set needs labels
    gold = _gold(data)
    for round_, count in ((-1, 20), (0, 5)):
        batch = [json.loads(x) for x in (human / f"queries/round_{round_}.jsonl").open()]
        f = _jsonl(tmp / f"labels{round_}.jsonl", [(b["id"], gold[b["id"]]) for b in batch[:count]])
        label.import_labels(human, [f])
        if round_ == -1:
            batl_main.run(cfg, str(human))  # trains round 0, stops for its batch
    return Env(model, data, finished, human, tmp)


def _gold(data: Path) -> dict[str, str]:
    with gzip.open(data / "csabstruct" / "train.jsonl.gz", "rt") as f:
        return {str(i): json.loads(line)["label"] for i, line in enumerate(f)}


def _jsonl(path: Path, pairs) -> Path:
    path.write_text("".join(json.dumps({"id": i, "label": lab}) + "\n" for i, lab in pairs))
    return path


def _batch(env: Env) -> list[dict]:
    return [json.loads(x) for x in (env.human / "queries" / "round_0.jsonl").open()]


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


# ----------------------------------------------------------------------------- cases


@dataclasses.dataclass
class Case:
    id: str
    error: type[BatlError]
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
    C("data-changed-under-run", StateError, "does not fit the data", "restore the data",
      setup=_data(), workdir="finished"),
    C("human-labels-lost", StateError, "no label for id", "restore labels.jsonl",
      {"al__oracle": "human"}, workdir="human",
      prepare=lambda env, w: (w / "labels.jsonl").unlink()),
    C("human-labels-damaged", StateError, "line 3 is damaged", "restore the file",
      {"al__oracle": "human"}, workdir="human",
      prepare=lambda env, w: (w / "labels.jsonl").write_text(
          "".join((env.human / "labels.jsonl").read_text().splitlines(True)[:2]) + "{torn")),
]  # fmt: skip


def _workdir(env: Env, case: Case, tmp: Path) -> Path:
    work = tmp / "work"
    if case.workdir != "fresh":
        shutil.copytree(getattr(env, case.workdir), work)
    if case.prepare is not None:
        case.prepare(env, work)
    return work


def _check_message(msg: str, case: Case) -> None:
    assert "\n" not in msg, msg
    assert re.search(case.problem, msg), (case.problem, msg)
    assert re.search(case.fix, msg), (case.fix, msg)


@pytest.mark.parametrize("case", RUN_CASES, ids=lambda c: c.id)
def test_bad_run_input(env, case, tmp_path):
    work = _workdir(env, case, tmp_path)
    overrides = {"data__dir": str(env.data), **BASE, **case.overrides}
    if case.setup is not None:
        if case.id == "data-changed-under-run":  # the finished run's pool, now 100 rows
            overrides["data__dir"] = str(small_csabstruct(tmp_path / "data", 100, 80))
        else:
            overrides.update(case.setup(env, tmp_path))
    cfg = tiny_config(env.model, **overrides)
    before = tree_hashes(work)
    with pytest.raises(case.error) as e:
        batl_main.run(cfg, str(work))
    _check_message(str(e.value), case)
    assert tree_hashes(work) == before


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
]  # fmt: skip


@pytest.mark.parametrize("case", IMPORT_CASES, ids=lambda c: c.id)
def test_bad_label_import(env, case, tmp_path):
    work = _workdir(env, case, tmp_path)
    files = case.setup(env, tmp_path)
    before = tree_hashes(work)
    with pytest.raises(case.error) as e:
        label.import_labels(work, files)
    _check_message(str(e.value), case)
    assert tree_hashes(work) == before


# -- real command lines: exit status 2 and one "error:" line ---------------------------------


def test_command_lines_exit_2_with_one_error_line(env, tmp_path):
    cfg_file = write_config_file(tmp_path / "cfg.py", env.model, data__dir=str(env.data), **BASE)
    main = [sys.executable, "-m", "batl_jax.main", f"--config={cfg_file}"]
    lab = [sys.executable, "-m", "batl_jax.label"]
    bad_csv = tmp_path / "bad.csv"
    bad_csv.write_text("id,label\nno-such-id,method\nother,banana\n")
    human = tmp_path / "human"
    shutil.copytree(env.human, human)
    cases = [
        (main + ["--config.al.stratgy=batl"], r"unknown config key 'stratgy'.*strategy"),
        (main + ["--config.al.batch_size=many"], r"--config.al.batch_size=many.*configs/base.py"),
        ([sys.executable, "-m", "batl_jax.main", "--config=nope.py"], r"cannot load --config"),
        (main + ["--config.train.warmup_ratio=2.0"], r"train.warmup_ratio=2.0 is out of range"),
        (lab + ["import", f"--workdir={human}", str(bad_csv)], r"2 problem\(s\).*nothing imported"),
        (lab + ["export", f"--workdir={env.finished}"], r"no query batch is pending"),
    ]
    before = tree_hashes(human)
    for argv, pattern in cases:
        proc = subprocess.run(
            [*argv, f"--workdir={tmp_path / 'w'}"] if argv[2] == "batl_jax.main" else argv,
            cwd=REPO,
            env=subprocess_env(),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 2, (argv, proc.stderr[-2000:])
        errors = [x for x in proc.stderr.splitlines() if x.startswith("error: ")]
        assert len(errors) == 1 and re.search(pattern, errors[0]), proc.stderr[-2000:]
    assert not (tmp_path / "w").exists()
    assert tree_hashes(human) == before
