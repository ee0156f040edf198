"""The active-learning loop (Algorithm 1): the order of the phases and every side effect.

:func:`run` builds the run's parts (:mod:`batl_jax.setup`), restores the loop state
from the latest checkpoint, and runs the remaining rounds (:mod:`batl_jax.rounds`),
writing each round's rows to ``metrics.jsonl`` / ``selected.jsonl``, asking people for
labels (``al.oracle = human``) and checkpointing. A round's rows are written before
its checkpoint, and a resume first cuts the logs back to the checkpoint's round, so an
interrupted run finishes with exactly the files of an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import time
from pathlib import Path

import numpy as np

from batl_jax import plots, reference, resume, rounds, run_files, setup
from batl_jax.checkpointing import Checkpointer, LoopState
from batl_jax.config_checks import check_values
from batl_jax.faults import kill_point  # test hooks (BATL_KILL_AT); no-ops otherwise
from batl_jax.lock import WorkdirLock
from batl_jax.model import store
from batl_jax.oracle import HumanOracle

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class RunFiles:
    """The files of one workdir that the loop writes."""

    workdir: Path
    metrics: run_files.JsonlLog
    selected: run_files.JsonlLog
    ckpt: Checkpointer
    oracle: HumanOracle | None
    fingerprint: np.ndarray


def _open_files(parts: setup.Parts, workdir: Path) -> RunFiles:
    workdir.mkdir(parents=True, exist_ok=True)
    oracle = None
    if parts.cfg.al.oracle == "human":
        oracle = HumanOracle(workdir, parts.dataset.train, parts.task.label_names, parts.task.name)
    return RunFiles(
        workdir,
        run_files.JsonlLog(workdir / "metrics.jsonl"),
        run_files.JsonlLog(workdir / "selected.jsonl"),
        Checkpointer(workdir, parts.cfg.checkpoint.keep),
        oracle,
        resume.fingerprint(parts),
    )


def _start(parts: setup.Parts, files: RunFiles) -> LoopState:
    """The checkpointed state, verified, or round 0's for a new run."""
    cfg, n = parts.cfg, len(parts.dataset.train)
    state = files.ckpt.restore_latest()
    if state is not None:
        resume.check_state(state, parts, files.ckpt.directory)
        state = resume.reopen(parts, resume.check_logs(files.metrics, files.selected, state, n))
    # The first write of the run: everything above has been checked.
    run_files.write_config_file(files.workdir, cfg.to_dict(), 0 if state is None else state.round)
    if state is None:
        state = resume.initial_state(parts, files.oracle is not None)
        if state.pending is not None and len(state.pending):
            # Human oracle: the random initial rows are the first batch to label (round -1).
            assert files.oracle is not None  # only a human oracle leaves rows pending
            files.oracle.ask(-1, state.pending)
            _save(files, state)
    files.metrics.truncate_to(state.round)
    files.selected.truncate_to(state.round)
    return state


def _save(files: RunFiles, state: LoopState, kill_point: str = "") -> None:
    files.ckpt.save(
        dataclasses.replace(state, fingerprint=files.fingerprint), kill_point=kill_point
    )


def _record_deviations(workdir: Path, deviations) -> None:
    """Departures from the paper's setting (e.g. a fitted MLM head) go to run_info.json."""
    notes = [d for d in deviations if d]
    for note in notes:
        log.warning("deviation from the reference setting: %s", note)
    if notes and run_files.is_primary():
        text = json.dumps({"deviations": notes}, indent=2) + "\n"
        run_files.atomic_write_text(workdir / "run_info.json", text)


def _analyze(parts: setup.Parts):
    """The per-round analysis metrics, or None when disabled."""
    if not parts.cfg.analysis.enabled:
        return None
    if parts.cfg.al.oracle == "human" and (parts.dataset.train.labels < 0).any():
        return None  # the reference classifier trains on every pool label; there are none
    entropy = None
    if parts.cfg.al.oracle == "simulated":
        # Only a simulated oracle knows the labels of the whole split (Eq. 8's reference).
        entropy = functools.cache(lambda: reference.entropy(parts))
    return rounds.make_analyze(parts, entropy)


def _write_round(files: RunFiles, result: rounds.RoundResult) -> None:
    r = result.round
    if result.selected is not None:
        files.selected.append(result.selected)
    kill_point(
        f"round{r}:log", torn=(files.metrics.path, json.dumps(result.metrics, sort_keys=True))
    )  # test hook: selected.jsonl written, metrics.jsonl torn mid-line
    files.metrics.append(result.metrics)
    test = {k: round(v, 4) for k, v in result.metrics["test"].items()}
    log.info("round %d: %d labeled, test %s", r, result.metrics["labeled"], test)


def _rounds(parts: setup.Parts, files: RunFiles, state: LoopState) -> str | None:
    """Run the remaining rounds; the message of the batch people must label, if any."""
    cfg, n = parts.cfg, len(parts.dataset.train)
    labels = files.oracle.labels if files.oracle is not None else parts.dataset.train.labels
    labeled, prev_params = np.sort(state.labeled), state.params
    static, encode_s = rounds.prepare(parts)
    _record_deviations(files.workdir, [v.deviation for v in static.values()])
    analyze = _analyze(parts)
    times = {"encode_s": encode_s} if encode_s > 1e-3 else {}
    for r in range(state.round, cfg.al.rounds):
        last = r == cfg.al.rounds - 1 or len(labeled) == n
        result = rounds.run_round(
            parts,
            r,
            labeled,
            labels,
            prev_params=prev_params,
            last=last,
            static=static,
            analyze=analyze,
            times=times,
        )
        times = {}
        _write_round(files, result)
        if last:
            # The model first: a finished checkpoint always has one (a kill between the two
            # reruns the last round, which writes the same model again).
            if run_files.is_primary():
                assert result.params is not None  # the last round keeps its parameters
                store.save_final(files.workdir, result.params, meta=store.final_meta(parts, r))
            # A done marker: rerunning a finished workdir changes nothing.
            done = LoopState(r + 1, labeled, cfg.seed, params=prev_params, finished=True)
            _save(files, done)
            return None
        assert result.selection is not None  # every round but the last selects
        picks = result.selection.indices
        labeled, prev_params = np.sort(np.concatenate([labeled, picks])), result.params
        pending = None
        if files.oracle is not None:
            # The query batch first: the checkpoint below is what makes it pending.
            files.oracle.ask(r, picks, result.hint_logits)
            pending = picks
        state = LoopState(r + 1, labeled, cfg.seed, params=prev_params, pending=pending)
        _save(files, state, kill_point=f"round{r}:checkpoint")
        kill_point(f"round{r}:saved")  # test hook: right after the commit
        if files.oracle is not None:
            waiting = files.oracle.ready(labeled, pending, r + 1)
            if waiting:
                return waiting
    return None


def _finish(parts: setup.Parts, files: RunFiles, waiting: str | None) -> list[dict]:
    """Plot, close, and return the metrics rows; ``waiting`` tells people which batch to
    label (a human-oracle run stops until it is labeled)."""
    cfg = parts.cfg
    if waiting and run_files.is_primary():
        print(waiting, flush=True)  # stdout, plain: the one thing the user must act on
    rows = files.metrics.rows()
    title = f"{cfg.name}: {parts.spec.name}, seed {cfg.seed}"
    plots.run_curve(files.workdir, rows, parts.task.primary_metric, title)
    files.ckpt.close()
    return rows


def run_parts(parts: setup.Parts, workdir: Path) -> list[dict]:
    """Run (or resume) the loop of ``parts`` in ``workdir``; returns the metrics rows."""
    files = _open_files(parts, Path(workdir))
    state = _start(parts, files)
    waiting = None
    if files.oracle is not None:
        waiting = files.oracle.ready(state.labeled, state.pending, state.round)
    if waiting is None and not state.finished:
        t0 = time.perf_counter()
        waiting = _rounds(parts, files, state)
        log.info("rounds done in %.1f s", time.perf_counter() - t0)
    return _finish(parts, files, waiting)


def run(cfg, workdir: Path, mesh) -> list[dict]:
    """Check ``cfg`` and the workdir, build the run's parts and run the loop under the
    workdir's lock (taken after every check, before the first write)."""
    workdir = Path(workdir)
    check_values(cfg)
    run_files.check_config_file(workdir, cfg.to_dict())
    if not run_files.is_primary():
        return run_parts(setup.build(cfg, mesh), workdir)  # process 0 locks and writes
    # The lock comes before setup, so a second run is refused at once; released, it takes
    # its file (and the folders it created, if still empty) with it.
    with WorkdirLock(workdir):
        return run_parts(setup.build(cfg, mesh), workdir)
