"""The bad-input catalogue, settings: every value a user can type that no run can use is
refused before anything is read or written (README, "Reliability": finite values only).

NaN compares false with every bound, so each float setting is tried with NaN (and a few
with ±inf) besides its range; every range and choice of ``batl_jax.config_checks`` has a
case, as have the sentinels (``analysis.reference_epochs=-7`` once read as -1) and the
issue 16 values that trained a round before failing (``seed >= 2**63``, ``dal.hidden=0``).
The refusal is in-process (``batl_main.run``): one error line through the entry points'
mapping, exit status 2, and no workdir. Config files that fail to load run the real command.
"""

from __future__ import annotations

import re
import subprocess
import sys

import ml_collections
import pytest

from batl_jax import main as batl_main
from batl_jax.errors import ConfigError
from tests.bad_inputs_env import BASE, error_line
from tests.run_helpers import REPO, subprocess_env, tiny_config

NAN, INF = float("nan"), float("inf")

# Float settings: a NaN for every one, ±inf for the ones whose range is open above.
FLOATS = [
    "al.stop_kappa",
    "alps.mask_prob",
    "alps.tol",
    "batl.lambda_",
    "batl.margin",
    "batl.spacing",
    "batl.train_triplet_weight",
    "dal.lr",
    "train.dropout",
    "train.lr",
    "train.warmup_ratio",
    "train.weight_decay",
]
NON_FINITE = [(key, NAN) for key in FLOATS] + [
    ("train.lr", INF),
    ("train.lr", -INF),
    ("train.warmup_ratio", INF),
    ("train.weight_decay", INF),
    ("batl.lambda_", INF),
    ("batl.margin", -INF),
    ("dal.lr", INF),
]

# (key, value): out of range (and the ones issue 16 found reaching a traceback or a
# silently wrong run: a seed past int64, dal.hidden=0, bald.num_samples=0, density_k=0).
OUT_OF_RANGE = [
    ("seed", 2**63),
    ("seed", 2**64 + 5),
    ("dal.hidden", 0),
    ("bald.num_samples", 0),
    ("analysis.density_k", 0),
    ("train.batch_size", 0),
    ("train.eval_batch_size", 0),
    ("train.min_steps", -1),
    ("train.weight_decay", -0.1),
    ("al.stop_set_size", 0),
    ("al.stop_window", 0),
    ("al.stop_kappa", 0.0),
    ("al.stop_kappa", 1.5),
    ("al.test_size", -1),
    ("alps.mask_prob", 0.0),
    ("alps.mask_prob", 1.5),
    ("alps.n_init", 0),
    ("alps.max_iter", 0),
    ("alps.fit_steps", 0),
    ("alps.tol", -1.0),
    ("checkpoint.keep", 0),
    ("batl.mining_batch", 1),
    ("batl.embed_dim", 0),
    ("batl.margin", -1.0),
    ("batl.lambda_", -0.5),
    ("batl.train_triplet_weight", -1.0),
    ("dal.sub_rounds", 0),
    ("dal.steps", 0),
    ("dal.batch", 0),
    ("dal.lr", 0.0),
    ("bald.max_configs", 0),
    ("data.test_limit", -1),
    ("mesh.num_devices", -1),
    ("distributed.num_processes", -1),
    ("distributed.process_id", -2),
]

CHOICES = [
    ("train.mode", "fast"),
    ("al.stop", "early"),
    ("batl.sentence_rep", "cls"),
    ("coreset.features", "pooled"),
    ("bald.dropout_scope", "all"),
]

# (id, overrides, problem, fix) for the settings with a sentinel or a shape.
SHAPES = [
    ("reference-epochs-minus-7", {"analysis__reference_epochs": -7},
     r"analysis.reference_epochs=-7 is out of range", r"-1 \(= train.epochs\) or >= 1"),
    ("reference-epochs-0", {"analysis__reference_epochs": 0},
     r"analysis.reference_epochs=0 is out of range", "--config.analysis.reference_epochs"),
    ("buckets-zero", {"data__buckets": (16, 0)}, r"data.buckets=\(16, 0\)",
     "--config.data.buckets"),
    ("buckets-empty", {"data__buckets": ()}, r"data.buckets=\(\)", "--config.data.buckets"),
    ("p-at-n-zero", {"task__p_at_n": (0,)}, r"task.p_at_n=\(0,\)", "--config.task.p_at_n"),
    ("label-names-repeated", {"data__label_names": ("a", "a")}, "must be distinct",
     "--config.data.label_names"),
    ("label-names-blank", {"data__label_names": ("a", " ")}, "non-empty strings",
     "--config.data.label_names"),
    ("section-model-replaced", {"model": {"name": "x"}}, r"model lacks model\.",
     r"one at a time, e.g. --config\.model\.\w+=VALUE"),
    ("section-data-replaced", {"data": {"dir": "x"}}, r"data lacks data\.",
     r"--config\.data\.\w+=VALUE"),
    ("section-replaced-by-a-number", {"train": 3}, "train is not a section",
     r"--config\.train\.\w+=VALUE"),
]  # fmt: skip


def _override(key: str) -> str:
    return key.replace(".", "__")


CASES = (
    [
        pytest.param(
            {_override(k): v},
            re.escape(f"{k}={v!r} is not a number"),
            re.escape(f"--config.{k} to a finite number"),
            id=f"{k}={v}",
        )
        for k, v in NON_FINITE
    ]
    + [
        pytest.param(
            {_override(k): v},
            re.escape(f"{k}={v!r} is out of range"),
            re.escape(f"--config.{k} "),
            id=f"{k}={v}",
        )
        for k, v in OUT_OF_RANGE
    ]
    + [
        pytest.param(
            {_override(k): v},
            re.escape(f"{k}={v!r} is not allowed"),
            re.escape(f"--config.{k} to one of"),
            id=f"{k}={v}",
        )
        for k, v in CHOICES
    ]
    + [pytest.param(o, p, f, id=i) for i, o, p, f in SHAPES]
)


def _config(overrides: dict):
    """The tiny config with ``overrides``; a section replaced as a whole becomes a plain
    ConfigDict, as ``--config.model={...}`` makes it."""
    sections = {k: v for k, v in overrides.items() if "__" not in k and k != "seed"}
    fields = {k: v for k, v in overrides.items() if k not in sections}
    cfg = tiny_config("never-loaded-model", **{**BASE, **fields})
    with cfg.unlocked():
        for name, value in sections.items():
            del cfg[name]
            cfg[name] = ml_collections.ConfigDict(value) if isinstance(value, dict) else value
    return cfg


@pytest.mark.parametrize("overrides, problem, fix", CASES)
def test_bad_setting_is_refused_before_anything_is_written(overrides, problem, fix, tmp_path):
    work = tmp_path / "work"
    with pytest.raises(ConfigError) as e:
        batl_main.run(_config(overrides), str(work))
    message = error_line(e.value)
    assert re.search(problem, message), (problem, message)
    assert re.search(fix, message), (fix, message)
    assert not work.exists()


# -- config files that do not load: the real command, one line, exit 2 ------------------------

CONFIG_FILES = [
    ("syntax-error", "def get_config(:\n", r"syntax error at line 1 .*fix the file$"),
    ("get-config-raises", "def get_config():\n    raise RuntimeError('boom')\n",
     r"\(RuntimeError: boom at cfg\.py line 2\); fix its get_config\(\)"),
    ("import-error", "import no_such_module_xyz\n\ndef get_config():\n    return None\n",
     r"cannot load --config=.*no_such_module_xyz"),
    ("get-config-raises-valueerror", "def get_config():\n    raise ValueError('bad')\n",
     r"cannot load --config=.*\(ValueError: bad at cfg\.py line 2\); fix its get_config"),
    ("get-config-keyerror", "def get_config():\n    return {}['x']\n",
     r"cannot load --config=.*\(KeyError: .x. at cfg\.py line 2\); fix its get_config"),
    ("no-get-config", "x = 1\n", r"cannot load --config=.*defines no get_config\(\)"),
]  # fmt: skip


@pytest.mark.parametrize(
    "source, pattern", [c[1:] for c in CONFIG_FILES], ids=[c[0] for c in CONFIG_FILES]
)
def test_config_file_that_does_not_load_is_one_line(tmp_path, source, pattern):
    (tmp_path / "cfg.py").write_text(source)
    proc = subprocess.run(
        [sys.executable, "-m", "batl_jax.main", f"--config={tmp_path / 'cfg.py'}",
         f"--workdir={tmp_path / 'w'}"],
        cwd=REPO, env=subprocess_env(), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr[-2000:]
    assert re.search(pattern, lines[0]), lines[0]
    assert not (tmp_path / "w").exists()
