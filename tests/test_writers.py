"""TensorBoard event files, read back by TensorBoard's own event reader."""

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from batl_jax import writers


def _row(r: int, acc: float, kappa) -> dict:
    return {
        "round": r,
        "seed": 7,
        "strategy": "batl",
        "labeled": 50 * (r + 1),
        "test_majority_rate": None,
        "test": {"accuracy": acc, "macro_f1": acc - 0.1},
        "stop": {"kappa": kappa, "f_change_bound": None, "mean_kappa": None},
        "analysis": {"diversity": 0.3 + r, "density": float("nan")},
        "time": {"train_s": 1.5, "select_s": 0.25},
        "flag": True,
    }


def _read(logdir) -> EventAccumulator:
    acc = EventAccumulator(str(logdir))
    acc.Reload()
    return acc


def test_scalars_of_flattens_and_skips_non_numbers():
    s = writers.scalars_of(_row(2, 0.8, 0.9))
    assert s == {
        "labeled": 150.0,
        "test/accuracy": 0.8,
        "test/macro_f1": pytest.approx(0.7),
        "stop/kappa": 0.9,
        "analysis/diversity": 2.3,
        "time/train_s": 1.5,
        "time/select_s": 0.25,
    }
    # A nested "round" or "seed" is a measurement like any other.
    assert writers.scalars_of({"x": {"round": 1}}) == {"x/round": 1.0}


def test_rounds_read_back_by_tensorboard(tmp_path):
    rows = [_row(0, 0.5, None), _row(1, 0.6, 0.7), _row(2, 0.65, 0.95)]
    with writers.RunWriter(tmp_path, primary=True) as w:
        for row in rows:
            w.write_round(row)
    acc = _read(tmp_path / writers.EVENTS_DIR)
    tags = set(acc.Tags()["scalars"])
    assert {"test/accuracy", "stop/kappa", "time/train_s", "analysis/diversity"} <= tags
    assert "seed" not in tags and "round" not in tags and "analysis/density" not in tags
    got = [(e.step, e.value) for e in acc.Scalars("test/accuracy")]
    assert got == [(0, pytest.approx(0.5)), (1, pytest.approx(0.6)), (2, pytest.approx(0.65))]
    assert [e.step for e in acc.Scalars("stop/kappa")] == [1, 2]  # round 0 has no kappa
    assert [e.value for e in acc.Scalars("labeled")] == [50.0, 100.0, 150.0]


def test_resumed_run_adds_rounds_to_the_same_folder(tmp_path):
    with writers.RunWriter(tmp_path, primary=True) as w:
        w.write_round(_row(0, 0.5, None))
    with writers.RunWriter(tmp_path, start_round=1, primary=True) as w:
        w.write_round(_row(1, 0.6, 0.8))
    acc = _read(tmp_path / writers.EVENTS_DIR)
    assert [e.step for e in acc.Scalars("test/accuracy")] == [0, 1]


def test_resume_replaces_rounds_written_past_the_checkpoint(tmp_path):
    # A killed run wrote rounds 0-2, but its checkpoint covers rounds 0-1 only: the resumed
    # run starts at round 2 and writes it again with the new result.
    with writers.RunWriter(tmp_path, primary=True) as w:
        for r in range(3):
            w.write_round(_row(r, 0.5 + r / 10, None))
    with writers.RunWriter(tmp_path, start_round=2, primary=True) as w:
        w.write_round(_row(2, 0.9, 0.8))
        w.write_round(_row(3, 0.95, 0.9))
    acc = _read(tmp_path / writers.EVENTS_DIR)
    got = [(e.step, round(e.value, 4)) for e in acc.Scalars("test/accuracy")]
    assert got == [(0, 0.5), (1, 0.6), (2, 0.9), (3, 0.95)]


def test_only_the_primary_process_writes(tmp_path):
    w = writers.RunWriter(tmp_path, primary=False)
    assert w.write_round(_row(0, 0.5, None))["test/accuracy"] == 0.5
    w.close()
    assert not (tmp_path / writers.EVENTS_DIR).exists()
