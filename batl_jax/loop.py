"""The active-learning loop (Algorithm 1): the order of the phases and every side effect.

:func:`run` builds the run's parts (:mod:`.setup`), restores the loop state
from the latest checkpoint, and runs the remaining rounds (:mod:`.rounds`),
writing each round's rows to ``metrics.jsonl`` / ``selected.jsonl``, asking people for
labels (``al.oracle = human``) and checkpointing. A round's rows are written before
its checkpoint, and a resume first cuts the logs back to the checkpoint's round, so an
interrupted run finishes with exactly the files of an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from pathlib import Path

import numpy as np

from . import plots, reference, resume, rounds, run_files, setup, stopping, summary
from .checkpointing import Checkpointer, LoopState
from .config_checks import check_values
from .faults import kill_point  # test hooks; no-ops unless a test asks
from .lock import WorkdirLock
from .model import store
from .oracle import HumanOracle
from .writers import RunWriter

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
        state = resume.check_logs(files.metrics, files.selected, state, n)
        state = resume.reopen(parts, state, files.metrics.rows())
        if not state.finished:
            run_files.mark_finished(files.workdir, state.round, None)
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


def _stop_check(parts: setup.Parts, files: RunFiles, r: int):
    """Round ``r``'s stabilizing-predictions check (Bloodgood & Vijay-Shanker 2009): the
    kappa against round ``r - 1``'s stop-set labels; it ends the run only when
    ``al.stop = stabilizing``."""
    al, size = parts.cfg.al, len(parts.stop_rows)
    prev = None if r == 0 else stopping.load_predictions(files.workdir, r - 1, size)
    kappas = stopping.kappas_of(files.metrics.rows())

    def check(predictions: np.ndarray) -> tuple[dict, str | None]:
        row, decision = stopping.round_stop(
            prev,
            predictions,
            kappas,
            num_classes=parts.task.num_labels,
            window=al.stop_window,
            threshold=al.stop_kappa,
        )
        return row, decision.reason if al.stop == "stabilizing" and decision.stop else None

    return check


def _rounds(parts: setup.Parts, files: RunFiles, state: LoopState) -> tuple[str, bool]:
    """Run the remaining rounds; why they ended, and whether people must label a batch
    (then the reason is the message naming it)."""
    cfg, n = parts.cfg, len(parts.pool_rows)
    labels = files.oracle.labels if files.oracle is not None else parts.dataset.train.labels
    labeled, prev_params = np.sort(state.labeled), state.params
    static, encode_s = rounds.prepare(parts)
    _record_deviations(files.workdir, [v.deviation for v in static.values()])
    analyze = reference.analyzer(parts)
    times = {"encode_s": encode_s} if encode_s > 1e-3 else {}
    with RunWriter(files.workdir, start_round=state.round) as writer:
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
                stop_check=_stop_check(parts, files, r),
                times=times,
            )
            times = {}
            if run_files.is_primary():
                stopping.save_predictions(files.workdir, r, result.stop_predictions)
            _write_round(files, result)
            writer.write_round(result.metrics)
            if result.selection is None:
                # The model first: a finished checkpoint always has one (a kill between
                # the two reruns the last round, which writes the same model again).
                if run_files.is_primary():
                    assert result.params is not None  # the last round always returns them
                    meta = store.final_meta(parts, r)
                    store.save_final(files.workdir, result.params, meta=meta)
                # A done marker: rerunning a finished workdir changes nothing.
                _save(files, LoopState(r + 1, labeled, cfg.seed, prev_params, finished=True))
                ended = result.stopped or (
                    "the pool is exhausted" if len(labeled) == n else "al.rounds reached"
                )
                run_files.mark_finished(files.workdir, r + 1, ended)
                return ended, False
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
            waiting = _ready(parts, files, labeled, pending, r + 1)
            if waiting:
                return waiting, True
    return "al.rounds reached", False


def _ready(parts: setup.Parts, files: RunFiles, labeled, pending, round_: int) -> str | None:
    """The human oracle's check that every row the run uses has its label: the labeled
    rows and the held-out evaluation rows; None with a simulated oracle."""
    if files.oracle is None:
        return None
    return files.oracle.ready(np.concatenate([labeled, parts.held_out]), pending, round_)


def _finish(parts: setup.Parts, files: RunFiles, reason: str, waiting: bool) -> list[dict]:
    """Plot, print the summary and return the metrics rows; when ``waiting``, the
    reason names the batch people must label (the run stops until it is labeled)."""
    cfg = parts.cfg
    rows = files.metrics.rows()
    title = f"{cfg.name}: {parts.spec.name}, seed {cfg.seed}"
    plots.run_curve(files.workdir, rows, parts.task.primary_metric, title)
    if run_files.is_primary():
        metric = parts.task.primary_metric
        text = summary.summary(
            rows, workdir=files.workdir, stop_reason=reason, primary_metric=metric
        )
        log.info("summary\n%s", text)
        if waiting:
            print(reason, flush=True)  # stdout, plain: the one thing the user must act on
    return rows


def run_parts(parts: setup.Parts, workdir: Path) -> list[dict]:
    """Run (or resume) the loop of ``parts`` in ``workdir``; returns the metrics rows."""
    files = _open_files(parts, Path(workdir))
    # Closed however the run ends: a Ctrl-C during a save then waits for Orbax's own
    # threads instead of leaving them to print a traceback at exit.
    try:
        state = _start(parts, files)
        reason, waiting = "the run had finished before", False
        message = _ready(parts, files, state.labeled, state.pending, state.round)
        if message:
            reason, waiting = message, True
        elif not state.finished:
            t0 = time.perf_counter()
            reason, waiting = _rounds(parts, files, state)
            log.info("rounds done in %.1f s", time.perf_counter() - t0)
        return _finish(parts, files, reason, waiting)
    finally:
        files.ckpt.close()


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
