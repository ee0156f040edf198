"""Run every strategy × seed (and BATL at several λ), then aggregate them.

  python -m batl_jax.sweep --config=configs/demo.py --strategies=rand,entropy,batl \\
      --seeds=5 [--lambdas=0.5,1,2] [--workdir=runs/demo-sweep] [--config.train.mode=head] \\
      [--variants=batl:batl.batch_mode=spaced,batl:batl.triplet_grad=embedding_only]

Run folders: ``WORKDIR/<strategy>/seed<k>`` and, with ``--lambdas``,
``WORKDIR/batl_lambda<λ>/seed<k>`` (the λ equal to the config's ``batl.lambda_`` reuses
``WORKDIR/batl`` when BATL is among the strategies), and with ``--variants`` (a strategy
with settings of its own, ``STRATEGY:KEY=VALUE[+KEY=VALUE]``, comma-separated)
``WORKDIR/<strategy>_<values>/seed<k>``, e.g. ``batl_spaced``. Each run goes through
:func:`batl_jax.main.run`, so an interrupted run resumes from its last round and a
finished one (its done checkpoint exists and its config.json matches) is skipped without
loading anything. Then :func:`batl_jax.report.write_report` writes ``results.md``,
``results.csv`` and the figures into ``WORKDIR``. Runs go one after another in this
process: compiled pool kernels and the on-disk feature cache (frozen-encoder features,
the reference classifier of the analysis) are shared by all of them.

``--seeds=N`` means seeds ``config.seed … config.seed + N − 1``; ``--seeds=0,3,7`` lists them.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from absl import app, flags
from absl import logging as absl_logging

from batl_jax import main as batl_main
from batl_jax import report, run_files
from batl_jax.errors import BatlError, ConfigError

log = logging.getLogger("batl_jax.sweep")  # not __name__: "__main__" under -m

# --config and --workdir are main's own flags (overrides pass through the same way).
_STRATEGIES = flags.DEFINE_string(
    "strategies", "", "Comma-separated strategies (default: all registered)."
)
_SEEDS = flags.DEFINE_string("seeds", "5", "Number of seeds, or a comma-separated list.")
_LAMBDAS = flags.DEFINE_string("lambdas", "", "Also run BATL at each of these λ (comma list).")
_VARIANTS = flags.DEFINE_string(
    "variants",
    "",
    "Also run strategies with settings of their own: STRATEGY:KEY=VALUE[+KEY=VALUE],... "
    "(e.g. batl:batl.batch_mode=spaced).",
)


@dataclasses.dataclass(frozen=True)
class PlannedRun:
    strategy: str
    seed: int
    lambda_: float | None
    workdir: Path
    overrides: tuple[tuple[str, Any], ...] = ()

    @property
    def name(self) -> str:
        lam = "" if self.lambda_ is None else f" λ={self.lambda_:g}"
        own = "".join(f" {k}={v}" for k, v in self.overrides)
        return f"{self.strategy}{lam}{own} seed {self.seed}"

    def config(self, cfg):
        c = copy.deepcopy(cfg)
        c.al.strategy = self.strategy
        c.seed = self.seed
        if self.lambda_ is not None:
            c.batl.lambda_ = float(self.lambda_)
        for key, value in self.overrides:
            section, name = key.split(".", 1)
            c[section][name] = value
        return c


@dataclasses.dataclass(frozen=True)
class Variant:
    """``--variants``' entry: a strategy with settings of its own, in its own folder."""

    strategy: str
    overrides: tuple[tuple[str, Any], ...]

    @property
    def folder(self) -> str:
        return "_".join([self.strategy] + [str(v) for _, v in self.overrides])


def parse_variants(text: str, cfg) -> list[Variant]:
    """``batl:batl.batch_mode=spaced,batl:batl.triplet_grad=embedding_only+batl.margin=1``:
    each value is converted to the type of the setting it replaces."""
    out = []
    for entry in (e.strip() for e in str(text).split(",") if e.strip()):
        strategy, sep, rest = entry.partition(":")
        if not sep or not rest:
            raise ConfigError(
                f"--variants entry {entry!r}: write STRATEGY:KEY=VALUE, "
                "e.g. batl:batl.batch_mode=spaced"
            )
        overrides = tuple(_override(cfg, part, entry) for part in rest.split("+"))
        out.append(Variant(strategy.strip(), overrides))
    _refuse_repeats("--variants", [v.folder for v in out])
    return out


def _override(cfg, text: str, entry: str) -> tuple[str, Any]:
    key, sep, raw = text.partition("=")
    key, raw = key.strip(), raw.strip()
    section, _, name = key.partition(".")
    if not sep or not name or section not in cfg or name not in cfg[section]:
        raise ConfigError(
            f"--variants entry {entry!r}: {key!r} is not a setting; write SECTION.KEY=VALUE "
            "with a key of the config (e.g. batl.batch_mode=spaced)"
        )
    old = cfg[section][name]
    try:
        if isinstance(old, bool):
            if raw.lower() not in ("true", "false"):
                raise ValueError
            value: Any = raw.lower() == "true"
        else:
            value = type(old)(raw) if isinstance(old, (int, float)) else raw
    except ValueError as e:
        raise ConfigError(
            f"--variants entry {entry!r}: {key} wants a {type(old).__name__}, not {raw!r}"
        ) from e
    return key, value


def parse_seeds(text: str, base_seed: int) -> list[int]:
    """``"5"`` → 5 seeds from ``base_seed``; ``"0,3,7"`` → those seeds (each once)."""
    parts = [p.strip() for p in str(text).split(",") if p.strip()]
    try:
        if not parts:
            raise ValueError
        if len(parts) == 1 and "," not in str(text):
            n = int(parts[0])
            if n < 1:
                raise ValueError
            return list(range(base_seed, base_seed + n))
        seeds = [int(p) for p in parts]
    except ValueError as e:
        raise ConfigError(f"--seeds={text!r}: give a count (5) or a list (0,3,7)") from e
    _refuse_repeats("--seeds", [str(s) for s in seeds])
    return seeds


def parse_floats(text: str) -> list[float]:
    """``--lambdas``: finite numbers, each once."""
    try:
        values = [float(p) for p in str(text).split(",") if p.strip()]
    except ValueError as e:
        raise ConfigError(f"--lambdas={text!r}: give numbers, e.g. 0.5,1,2") from e
    if not all(math.isfinite(v) for v in values):
        raise ConfigError(f"--lambdas={text!r}: NaN and infinity are not a λ; give finite numbers")
    return values


def _refuse_repeats(flag: str, names: list[str]) -> None:
    """Two runs of one folder would be one experiment counted twice (std 0)."""
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ConfigError(f"{flag} lists {', '.join(twice)} twice; give each value once")


def plan(cfg, workdir: Path, strategy_names, seeds, lambdas=(), variants=()) -> list[PlannedRun]:
    """Every run of the sweep, in order: strategies × seeds, BATL at each λ × seeds, then
    each variant × seeds."""
    from batl_jax import strategies

    names = list(strategy_names) or strategies.names()
    for n in names:
        strategies.get(n)  # a clear ConfigError for a misspelt name, before any work
    _refuse_repeats("--strategies", names)
    _refuse_repeats("--seeds", [str(s) for s in seeds])
    # λ name folders to 6 significant digits: values equal there are one run.
    _refuse_repeats("--lambdas", [f"{float(lam):g}" for lam in lambdas])
    workdir = Path(workdir)
    runs = [PlannedRun(s, seed, None, workdir / s / f"seed{seed}") for s in names for seed in seeds]
    for lam in lambdas:
        if "batl" in names and float(lam) == float(cfg.batl.lambda_):
            continue  # the BATL runs above are this λ already
        for seed in seeds:
            runs.append(
                PlannedRun("batl", seed, lam, workdir / f"batl_lambda{lam:g}" / f"seed{seed}")
            )
    for v in variants:
        strategies.get(v.strategy)
        for seed in seeds:
            path = workdir / v.folder / f"seed{seed}"
            runs.append(PlannedRun(v.strategy, seed, None, path, v.overrides))
    return runs


def is_finished(run_dir: Path, cfg) -> bool:
    """True when ``run_dir`` holds a completed run of exactly ``cfg`` (up to the settings
    that never change results): its done checkpoint (step ``al.rounds``) exists."""
    path = Path(run_dir) / "config.json"
    if not path.is_file() or not (Path(run_dir) / "metrics.jsonl").is_file():
        return False
    if not (Path(run_dir) / "checkpoints" / str(cfg.al.rounds)).is_dir():
        return False
    try:
        old = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        return False  # the run itself then says what is wrong with its config.json
    if not isinstance(old, dict):
        return False
    old = run_files.flatten(old)
    new = run_files.flatten(json.loads(json.dumps(cfg.to_dict(), default=str)))
    keys = (set(old) | set(new)) - run_files.RESUMABLE_KEYS
    return all(old.get(k) == new.get(k) for k in keys)


@dataclasses.dataclass
class SweepResult:
    ran: list[PlannedRun]
    skipped: list[PlannedRun]
    failed: list[tuple[PlannedRun, str]]
    files: list[Path]
    seconds: float


def run_sweep(
    cfg,
    workdir,
    strategy_names=(),
    seeds=(0,),
    lambdas=(),
    *,
    variants=(),
    runner: Callable | None = None,
) -> SweepResult:
    """Run (or resume, or skip) every planned run, then write the report into ``workdir``.

    ``runner(cfg, workdir)`` runs one experiment (default :func:`batl_jax.main.run`). A run
    that fails with a user-facing :class:`BatlError` is logged and the sweep goes on; the
    report then covers the runs that have rows.
    """
    if cfg.al.oracle != "simulated":
        raise ConfigError("a sweep needs al.oracle=simulated (a human oracle labels one run)")
    runner = runner or batl_main.run
    t_start = time.perf_counter()
    runs = plan(cfg, Path(workdir), strategy_names, seeds, lambdas, variants)
    ran, skipped, failed = [], [], []
    for i, run in enumerate(runs, 1):
        run_cfg = run.config(cfg)
        if is_finished(run.workdir, run_cfg):
            log.info("[%d/%d] %s: finished already, skipped", i, len(runs), run.name)
            skipped.append(run)
            continue
        log.info("[%d/%d] %s → %s", i, len(runs), run.name, run.workdir)
        t0 = time.perf_counter()
        try:
            runner(run_cfg, str(run.workdir))
        except BatlError as e:
            log.error("[%d/%d] %s failed: %s", i, len(runs), run.name, e)
            failed.append((run, str(e)))
            continue
        log.info("[%d/%d] %s done in %.1f s", i, len(runs), run.name, time.perf_counter() - t0)
        ran.append(run)
    with_rows = [r.workdir for r in runs if (r.workdir / "metrics.jsonl").is_file()]
    files = report.write_report(with_rows, workdir) if with_rows else []
    seconds = time.perf_counter() - t_start
    log.info(
        "sweep: %d run(s) done, %d skipped, %d failed in %.1f s; report: %s",
        len(ran),
        len(skipped),
        len(failed),
        seconds,
        ", ".join(map(str, files)),
    )
    return SweepResult(ran, skipped, failed, files, seconds)


def main(argv) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    absl_logging.set_verbosity(absl_logging.WARNING)  # Orbax logs every step through absl
    # Our progress lines on stderr, whatever absl's handler does with INFO records.
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
    ours = logging.getLogger("batl_jax")
    ours.setLevel(logging.INFO)
    ours.addHandler(handler)
    ours.propagate = False
    cfg = batl_main._CONFIG.value
    if cfg is None:
        print("error: --config is required, e.g. --config=configs/demo.py", file=sys.stderr)
        sys.exit(2)
    try:
        names = [s.strip() for s in _STRATEGIES.value.split(",") if s.strip()]
        result = run_sweep(
            cfg,
            batl_main._WORKDIR.value or str(Path("runs") / f"{cfg.name}-sweep"),
            names,
            parse_seeds(_SEEDS.value, cfg.seed),
            parse_floats(_LAMBDAS.value),
            variants=parse_variants(_VARIANTS.value, cfg),
        )
    except BatlError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(e.exit_code)
    for run, message in result.failed:
        print(f"error: {run.name} ({run.workdir}): {message}", file=sys.stderr)
    sys.exit(1 if result.failed else 0)


def entry() -> None:
    # main's parser (when it has one) turns a bad --config.* override into one error line.
    parser = getattr(batl_main, "_parse_flags", None)
    app.run(main, **({"flags_parser": parser} if parser else {}))


if __name__ == "__main__":
    entry()
