"""push / pull against a real Label Studio server (``make test-labelstudio``).

The server (the ``label-studio`` package, in its own venv ``.venv-ls`` because its pins
clash with ours; or ``LABEL_STUDIO_BIN``) starts on 127.0.0.1 with SQLite in a temporary
folder, with a user and a legacy API token from ``LABEL_STUDIO_*`` variables, and is
stopped after the module. Annotations are made through the server's API, as a labelling
team's would arrive. Marked ``labelstudio``: the default run skips it (the server's first
start migrates its database: 1.5-3 minutes on two cores).
"""

from __future__ import annotations

import contextlib
import csv
import gzip
import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from batl_jax import label
from batl_jax import main as batl_main
from batl_jax.label import formats
from tests.run_helpers import DATA_DIR, REPO, small_csabstruct, tiny_config, write_jsonl_gz
from tests.test_label import NAMES, pending_workdir
from tests.tiny_bert import save_tiny_bert

pytestmark = pytest.mark.labelstudio

TOKEN = "batl0test0token0for0label0studio"
SERVER_BIN = Path(os.environ.get("LABEL_STUDIO_BIN", REPO / ".venv-ls" / "bin" / "label-studio"))
START_TIMEOUT_S = 420


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The URL of a fresh Label Studio server on the loopback interface (or of a running
    one started with ``LABEL_STUDIO_USER_TOKEN`` = :data:`TOKEN`, given as
    ``BATL_LABEL_STUDIO_URL``: reruns then skip the server's slow first start)."""
    import httpx  # with label-studio-sdk: the default run, which skips this file, lacks both

    if os.environ.get("BATL_LABEL_STUDIO_URL"):
        yield os.environ["BATL_LABEL_STUDIO_URL"]
        return
    if not SERVER_BIN.is_file():
        pytest.fail(f"no Label Studio server at {SERVER_BIN}; make test-labelstudio installs it")
    root = tmp_path_factory.mktemp("labelstudio")
    port = _free_port()
    env = {
        **os.environ,
        "LABEL_STUDIO_BASE_DATA_DIR": str(root / "data"),
        "LABEL_STUDIO_USERNAME": "batl@example.com",
        "LABEL_STUDIO_PASSWORD": "batl-test-password",
        "LABEL_STUDIO_USER_TOKEN": TOKEN,
        "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true",
        # Nothing outside this machine: no version check, analytics or error reports.
        "LATEST_VERSION_CHECK": "false",
        "COLLECT_ANALYTICS": "false",
        "SENTRY_DSN": "",
        "FRONTEND_SENTRY_DSN": "",
    }
    cmd = [
        str(SERVER_BIN),
        "start",
        "--no-browser",
        "--internal-host",
        "127.0.0.1",
        "--port",
        str(port),
        "--enable-legacy-api-token",
    ]
    log = (root / "server.log").open("w")
    t0 = time.monotonic()
    proc = subprocess.Popen(
        cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    url = f"http://127.0.0.1:{port}"
    try:
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/health", timeout=5).status_code == 200:
                    break
            if proc.poll() is not None or time.monotonic() - t0 > START_TIMEOUT_S:
                tail = (root / "server.log").read_text()[-3000:]
                pytest.fail(f"Label Studio did not start (exit {proc.poll()}):\n{tail}")
            time.sleep(1)
        print(f"Label Studio up at {url} in {time.monotonic() - t0:.0f} s")
        yield url
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)  # the server's own process group only
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


def _api(url: str):
    from label_studio_sdk import LabelStudio

    return LabelStudio(base_url=url, api_key=TOKEN)


def _annotate(url: str, project: int, gold: dict[str, str], only: set[str] | None = None):
    """Annotate the project's open tasks through the API, as a labelling team would."""
    ls, done = _api(url), 0
    for task in ls.tasks.list(project=project, fields="all"):
        t = task.model_dump(warnings=False)
        bid = t["data"]["batl_id"]
        if t["annotations"] or (only is not None and bid not in only):
            continue
        value = {"choices": [gold[bid]]}
        result = [{"from_name": "label", "to_name": "text", "type": "choices", "value": value}]
        ls.annotations.create(id=t["id"], result=result)
        done += 1
    return done


def _project(work: Path) -> int:
    return json.loads((work / "queries" / "labelstudio.json").read_text())["project"]


def test_push_pull_and_the_servers_csv_export(server, tmp_path, capsys):
    import httpx

    work = pending_workdir(tmp_path / "w")
    flags = [f"--workdir={work}", f"--api-key={TOKEN}"]
    assert label.main(["push", *flags, f"--url={server}", "--project=batl test"]) == 0
    assert "pushed 3 task(s) of round 0's batch to created project" in capsys.readouterr().out
    pid = _project(work)
    tasks = [t.model_dump(warnings=False) for t in _api(server).tasks.list(project=pid)]
    assert sorted(t["data"]["batl_id"] for t in tasks) == ["s1", "s3", "s4"]
    assert all(t["data"]["source"].startswith("doc") for t in tasks)  # original columns
    top = {t["data"]["batl_id"]: t["predictions"][0]["result"][0]["value"] for t in tasks}
    assert top["s4"] == {"choices": ["method"]}  # the model's hint as a prediction

    # Nothing annotated yet: pull refuses and writes nothing.
    assert label.main(["pull", *flags]) == 2
    assert "no task of round 0's batch is annotated yet" in capsys.readouterr().err
    gold = {"s1": "result", "s3": "background", "s4": "method"}
    assert _annotate(server, pid, gold, only={"s1", "s3"}) == 2
    assert label.main(["pull", *flags]) == 0  # url and project remembered from the push
    out = capsys.readouterr().out
    assert "imported 2 label(s)" in out and "1 task(s) not yet annotated" in out
    # A second push sends nothing twice; a wrong project's labels are refused.
    assert label.main(["push", *flags]) == 0
    assert "pushed 0 task(s)" in capsys.readouterr().out
    config = formats.labelstudio_config(["yes", "no"], relation=False)
    other = _api(server).projects.create(title="other", label_config=config)
    assert label.main(["pull", *flags, f"--project={other.id}"]) == 2
    assert "does not label with this run's labels" in capsys.readouterr().err

    # The server's own CSV export (its task "id" beside our batl_id) imports too.
    assert _annotate(server, pid, gold) == 1
    r = httpx.get(
        f"{server}/api/projects/{pid}/export",
        params={"exportType": "CSV"},
        headers={"Authorization": f"Token {TOKEN}"},
        timeout=60,
    )
    r.raise_for_status()
    exported = tmp_path / "export.csv"
    exported.write_bytes(r.content)
    assert {row["batl_id"] for row in csv.DictReader(exported.open())} == set(gold)
    assert "complete" in label.import_labels(work, [exported])
    labels = [json.loads(x) for x in (work / "labels.jsonl").read_text().splitlines()]
    assert {r["id"]: r["label"] for r in labels} == gold and set(gold.values()) <= set(NAMES)


@pytest.mark.skipif(not Path(DATA_DIR).is_dir(), reason="data dir not available")
def test_a_human_oracle_run_labelled_in_label_studio(server, tmp_path, capsys):
    """A team labels every batch in Label Studio; the run continues with those labels."""
    model = save_tiny_bert(tmp_path / "model")
    data = small_csabstruct(tmp_path / "data")
    with gzip.open(data / "csabstruct" / "train.jsonl.gz", "rt") as f:
        records = [json.loads(line) for line in f]
    gold = {str(i): r["label"] for i, r in enumerate(records)}
    write_jsonl_gz(data / "csabstruct" / "train.jsonl.gz", [{"text": r["text"]} for r in records])
    cfg = tiny_config(
        model,
        data__dir=str(data),
        al__oracle="human",
        al__strategy="entropy",
        train__mode="head",
        analysis__enabled=False,
    )
    work = tmp_path / "human"
    flags = [f"--workdir={work}", f"--api-key={TOKEN}"]
    t0 = time.monotonic()
    assert batl_main.run(cfg, str(work)) == []  # stops: the initial set needs labels
    assert label.main(["push", *flags, f"--url={server}", "--project=csabstruct team"]) == 0
    for expected_round in (-1, 0):
        assert _annotate(server, _project(work), gold) == 20
        assert label.main(["pull", *flags]) == 0
        assert "20 of 20 labeled; complete" in capsys.readouterr().out
        rows = batl_main.run(cfg, str(work))
        assert [r["round"] for r in rows] == list(range(expected_round + 2))
        if expected_round == -1:
            assert label.main(["push", *flags]) == 0  # round 0's batch, with hints
            assert "pushed 20 task(s) of round 0's batch to project" in capsys.readouterr().out
    assert [r["labeled"] for r in rows] == [20, 40]
    labels = [json.loads(x) for x in (work / "labels.jsonl").read_text().splitlines()]
    assert len(labels) == 40 and all(gold[r["id"]] == r["label"] for r in labels)
    assert "the run has finished" in label.status(work)
    print(f"round trip (two batches) in {time.monotonic() - t0:.0f} s")
