"""The bad-input catalogue, the other commands: export, predict, label, report and sweep
refuse what they cannot do in one ``error:`` line with exit status 2, and write nothing
(the run they read and the place they would write are hashed before and after).

Commands run in-process through their ``main(argv)`` (the exit status is its return
value); the sweep's flags are parsed by absl, so its parsing functions are called
directly and one real command line checks the status. Issue 14: export of an unfinished
run; issue 16: ``label export --out=<a file>``, ``sweep --seeds=0,0``, ``--lambdas=nan``,
a report over a workdir two runs wrote at once.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from batl_jax import export, predict, report, sweep
from batl_jax.errors import BatlError
from batl_jax.label import cli as label_cli
from tests.bad_inputs_env import BASE, Env, build_env, error_line
from tests.run_helpers import REPO, subprocess_env, tiny_config, tree_hashes, write_config_file


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> Env:
    return build_env(tmp_path_factory)


def _prepare(env: Env, tmp: Path) -> dict[str, Path]:
    """Copies of the shared workdirs and the files the command lines name."""
    names = {"tmp": tmp, "finished": tmp / "finished", "human": tmp / "human"}
    shutil.copytree(env.finished, names["finished"])
    shutil.copytree(env.human, names["human"])
    (tmp / "a_file.txt").write_text("a file, not a folder")
    (tmp / "full").mkdir()
    (tmp / "full" / "keep.txt").write_text("something already here")
    (tmp / "in.csv").write_text("id,text\n1,We propose a method.\n2,Results improve.\n")
    (tmp / "body.csv").write_text("id,body\n1,We propose a method.\n")
    (tmp / "header_only.csv").write_text("id,text\n")
    (tmp / "dir.csv").mkdir()
    (tmp / "empty").mkdir()
    twice = tmp / "twice"  # a run two processes wrote at once: round 1 logged twice
    shutil.copytree(env.finished, twice)
    lines = (twice / "metrics.jsonl").read_text().splitlines(True)
    (twice / "metrics.jsonl").write_text("".join([*lines, lines[1]]))
    blank = tmp / "blank"
    shutil.copytree(env.finished, blank)
    (blank / "metrics.jsonl").write_text(lines[0] + "\n" + "".join(lines[1:]))
    return names


EXPORT, PREDICT, LABEL, REPORT = export.main, predict.main, label_cli.main, report.main
CASES = [
    # -- export (issue 14) ------------------------------------------------------------------
    ("export-unfinished-run", EXPORT, ["--workdir={human}", "--out={tmp}/out"],
     "has no trained model yet", "run the rounds first"),
    ("export-out-is-a-file", EXPORT, ["--workdir={finished}", "--out={tmp}/a_file.txt"],
     r"a_file.txt", "folder"),
    ("export-out-not-empty", EXPORT, ["--workdir={finished}", "--out={tmp}/full"],
     r"full.*not empty", "new folder|another|empty"),
    ("export-not-a-run", EXPORT, ["--workdir={tmp}/empty", "--out={tmp}/out"],
     r"empty", "--workdir|run"),
    # -- predict (issue 14) ---------------------------------------------------------------
    ("predict-no-source", PREDICT, ["--input={tmp}/in.csv", "--output={tmp}/p.csv"],
     "pass one of --workdir=W", "--model=DIR"),
    ("predict-two-sources", PREDICT,
     ["--workdir={finished}", "--model={tmp}/full", "--input={tmp}/in.csv",
      "--output={tmp}/p.csv"], "pass one of --workdir=W", "--model=DIR"),
    ("predict-no-input", PREDICT, ["--workdir={finished}", "--output={tmp}/p.csv"],
     "pass one of --input=FILE or --pool", "--pool"),
    ("predict-pool-without-workdir", PREDICT,
     ["--model={tmp}/full", "--pool", "--output={tmp}/p.csv"], "--pool scores", "--workdir=W"),
    ("predict-batch-size-zero", PREDICT,
     ["--workdir={finished}", "--input={tmp}/in.csv", "--output={tmp}/p.csv",
      "--batch-size=0"], "--batch-size=0", "positive number"),
    ("predict-output-suffix", PREDICT,
     ["--workdir={finished}", "--input={tmp}/in.csv", "--output={tmp}/p.txt"],
     r"--output .*p.txt", "FILE.csv or FILE.jsonl"),
    ("predict-output-is-a-folder", PREDICT,
     ["--workdir={finished}", "--input={tmp}/in.csv", "--output={tmp}/dir.csv"],
     "is a folder", "pass a file name"),
    ("predict-input-missing", PREDICT,
     ["--workdir={finished}", "--input={tmp}/nope.csv", "--output={tmp}/p.csv"],
     "no such file", "pass the file"),
    ("predict-input-no-text-column", PREDICT,
     ["--workdir={finished}", "--input={tmp}/body.csv", "--output={tmp}/p.csv"],
     r"body.csv.*'text'", "--text-field"),
    pytest.param(
        PREDICT, ["--workdir={finished}", "--input={tmp}/header_only.csv", "--output={tmp}/p.csv"],
        "has no rows", "texts to predict", id="predict-input-no-rows"),
    ("predict-unfinished-run", PREDICT,
     ["--workdir={human}", "--input={tmp}/in.csv", "--output={tmp}/p.csv"],
     "has no trained model yet", "run the rounds first"),
    ("predict-model-not-an-export", PREDICT,
     ["--model={tmp}/full", "--input={tmp}/in.csv", "--output={tmp}/p.csv"],
     r"full", "export"),
    # -- label (issue 16: export --out=<a file>) ------------------------------------------
    ("label-export-out-is-a-file", LABEL,
     ["export", "--workdir={human}", "--out={tmp}/a_file.txt"], r"a_file.txt", "folder"),
    ("label-status-not-a-run", LABEL, ["status", "--workdir={tmp}/empty"],
     "holds no batl_jax run", "--workdir"),
    ("label-export-not-a-run", LABEL, ["export", "--workdir={tmp}/empty"],
     "holds no batl_jax run", "--workdir"),
    ("label-dataset-bad-suffix", LABEL,
     ["dataset", "--workdir={finished}", "--out={tmp}/labels.txt"], r"labels.txt", r"\.csv"),
    ("label-dataset-not-a-run", LABEL, ["dataset", "--workdir={tmp}/empty", "--out={tmp}/d.csv"],
     r"empty", "--workdir"),
    ("label-push-no-server", LABEL, ["push", "--workdir={human}"],
     "Label Studio|--url|label-studio-sdk", "--url|install"),
    ("label-pull-no-project", LABEL, ["pull", "--workdir={human}"], "no Label Studio project",
     "run push first, or pass --project"),
    # -- report (issue 16: duplicates were averaged) ----------------------------------------
    ("report-no-runs", REPORT, ["{tmp}/empty"], "no run folder", "give the folders"),
    ("report-out-is-a-file", REPORT, ["{finished}", "--out={tmp}/a_file.txt"],
     "cannot write the report", "choose another folder"),
    ("report-round-twice", REPORT, ["{tmp}/twice", "--out={tmp}/rep"],
     r"round 1 a second time", "restore|leave"),
    ("report-blank-line", REPORT, ["{tmp}/blank", "--out={tmp}/rep"],
     r"line 2 is not a JSON object", "restore|leave"),
]  # fmt: skip


def _param(case):
    return case if hasattr(case, "marks") else pytest.param(*case[1:], id=case[0])


@pytest.mark.parametrize("command, argv, problem, fix", [_param(c) for c in CASES])
def test_command_refuses_in_one_line_and_writes_nothing(
    env, tmp_path, capsys, command, argv, problem, fix
):
    names = _prepare(env, tmp_path)
    capsys.readouterr()
    before = tree_hashes(tmp_path)
    code = command([a.format(**names) for a in argv])
    err = capsys.readouterr().err
    errors = [x for x in err.splitlines() if x.startswith("error: ")]
    assert code == 2 and len(errors) == 1, (code, err[-2000:])
    assert "Traceback" not in err, err
    assert re.search(problem, errors[0]), (problem, errors[0])
    assert re.search(fix, errors[0]), (fix, errors[0])
    assert tree_hashes(tmp_path) == before


# -- sweep: the flags' parsing, in-process, and one real command line ---------------------------

SWEEP_CASES = [
    ("seeds-repeated", lambda: sweep.parse_seeds("0,0", 0), "--seeds lists 0 twice",
     "each value once"),
    ("seeds-zero-count", lambda: sweep.parse_seeds("0", 0), "--seeds='0'", "a count"),
    ("seeds-not-numbers", lambda: sweep.parse_seeds("a,b", 0), "--seeds='a,b'", "a list"),
    ("lambdas-nan", lambda: sweep.parse_floats("nan"), "--lambdas='nan'", "finite numbers"),
    ("lambdas-inf", lambda: sweep.parse_floats("1,inf"), "--lambdas='1,inf'", "finite numbers"),
    ("lambdas-not-numbers", lambda: sweep.parse_floats("1,x"), "--lambdas='1,x'", "numbers"),
    ("lambdas-repeated", lambda: sweep.plan(tiny_config("m"), Path("w"), ["batl"], [0],
                                            [0.5, 0.50]), "--lambdas lists 0.5 twice",
     "each value once"),
    ("strategies-repeated", lambda: sweep.plan(tiny_config("m"), Path("w"), ["rand", "rand"], [0]),
     "--strategies lists rand twice", "each value once"),
    ("strategies-unknown", lambda: sweep.plan(tiny_config("m"), Path("w"), ["nope"], [0]),
     "unknown strategy 'nope'", "--config.al.strategy|one of"),
    ("sweep-human-oracle", lambda: sweep.run_sweep(tiny_config("m", al__oracle="human"), "w"),
     "al.oracle=simulated", "human oracle labels one run"),
]  # fmt: skip


@pytest.mark.parametrize(
    "call, problem, fix", [c[1:] for c in SWEEP_CASES], ids=[c[0] for c in SWEEP_CASES]
)
def test_sweep_refuses_in_one_line(call, problem, fix):
    with pytest.raises(BatlError) as e:
        call()
    message = error_line(e.value)
    assert re.search(problem, message) and re.search(fix, message), message


def test_sweep_command_line_with_a_seed_twice_exits_2_at_once(env, tmp_path):
    cfg = write_config_file(tmp_path / "cfg.py", env.model, data__dir=str(env.data), **BASE)
    proc = subprocess.run(
        [sys.executable, "-m", "batl_jax.sweep", f"--config={cfg}", "--seeds=0,0",
         f"--workdir={tmp_path / 'sweep'}", "--strategies=rand"],
        cwd=REPO, env=subprocess_env(), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr[-2000:]
    errors = [x for x in proc.stderr.splitlines() if x.startswith("error: ")]
    assert errors == ["error: --seeds lists 0 twice; give each value once"], proc.stderr
    assert not (tmp_path / "sweep").exists()
