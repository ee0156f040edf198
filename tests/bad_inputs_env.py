"""What the bad-input catalogue (tests/test_bad_inputs*.py) shares: the workdirs its cases
start from, built once per test session, and the check every refusal must pass.

The workdirs: a completed simulated run, a human-oracle run waiting for round 0's batch
with 5 of its 20 labels imported, the tiny model and a 200-row CSAbstruct-layout data dir.
Cases copy them, never change them.
"""

from __future__ import annotations

import dataclasses
import gzip
import json
from pathlib import Path

from batl_jax import label
from batl_jax import main as batl_main
from tests.run_helpers import small_csabstruct, tiny_config
from tests.tiny_bert import save_tiny_bert

BASE = dict(train__mode="head", analysis__enabled=False)


@dataclasses.dataclass(frozen=True)
class Env:
    model: Path
    data: Path
    finished: Path  # a completed simulated run of BASE (2 rounds)
    human: Path  # al.oracle=human, round 0's batch pending, 5 of its 20 labels imported
    tmp: Path


_BUILT: dict[int, Env] = {}


def build_env(tmp_path_factory) -> Env:
    """The shared workdirs, once per session (the factory is the session's)."""
    key = id(tmp_path_factory)
    if key not in _BUILT:
        _BUILT[key] = _build(tmp_path_factory.mktemp("catalogue"))
    return _BUILT[key]


def _build(tmp: Path) -> Env:
    model = save_tiny_bert(tmp / "model")
    data = small_csabstruct(tmp / "data")
    finished = tmp / "finished"
    batl_main.run(tiny_config(model, data__dir=str(data), **BASE), str(finished))
    human = tmp / "human"
    cfg = tiny_config(model, data__dir=str(data), al__oracle="human", **BASE)
    batl_main.run(cfg, str(human))  # stops: the initial set needs labels
    gold = gold_labels(data)
    for round_, count in ((-1, 20), (0, 5)):
        batch = [json.loads(x) for x in (human / f"queries/round_{round_}.jsonl").open()]
        pairs = [(b["id"], gold[b["id"]]) for b in batch[:count]]
        label.import_labels(human, [write_pairs(tmp / f"labels{round_}.jsonl", pairs)])
        if round_ == -1:
            batl_main.run(cfg, str(human))  # trains round 0, stops for its batch
    return Env(model, data, finished, human, tmp)


def gold_labels(data: Path) -> dict[str, str]:
    with gzip.open(data / "csabstruct" / "train.jsonl.gz", "rt") as f:
        return {str(i): json.loads(line)["label"] for i, line in enumerate(f)}


def write_pairs(path: Path, pairs) -> Path:
    """A JSON-lines label file of ``(id, label)`` pairs."""
    path.write_text("".join(json.dumps({"id": i, "label": lab}) + "\n" for i, lab in pairs))
    return path


def pending_batch(env: Env) -> list[dict]:
    return [json.loads(x) for x in (env.human / "queries" / "round_0.jsonl").open()]


def error_line(e: BaseException) -> str:
    """The one ``error:`` line and exit status 2 the entry points make of ``e`` (through
    :func:`batl_jax.main.exit_status`, their only mapping); returns the message."""
    status = batl_main.exit_status(e)
    assert status is not None, f"a traceback, not an error line: {e!r}"
    code, lines = status
    errors = [line for line in lines if line.startswith("error: ")]
    assert code == 2 and len(errors) == 1 and lines[0] == errors[0], (code, lines)
    assert "\n" not in errors[0], errors[0]
    return errors[0].removeprefix("error: ")
