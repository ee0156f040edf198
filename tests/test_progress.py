"""Progress in the log when stderr is not a terminal."""

import io
import logging

import pytest

from batl_jax import progress


class FakeClock:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


@pytest.fixture
def records(caplog):
    caplog.set_level(logging.INFO, logger="batl_jax.progress")
    return caplog


def _lines(caplog):
    return [r.getMessage() for r in caplog.records if r.name == "batl_jax.progress"]


def test_long_phase_logs_at_most_every_interval_and_at_the_end(records):
    clock = FakeClock()
    bar = progress.LogProgress(total=100, desc="encode train", unit="batch", clock=clock)
    with bar:
        for _ in range(100):
            clock.t += 0.5  # 50 s in all: lines at 10, 20, 30, 40 and 50 s
            bar.update(1)
    lines = _lines(records)
    assert lines[0] == "encode train: 20/100 batch (20%), eta 0:40"
    assert lines[1] == "encode train: 40/100 batch (40%), eta 0:30"
    assert lines[-1] == "encode train: 100/100 batch (100%) in 0:50"
    assert len(lines) == 5  # on the interval only: the last one is already at 100%


def test_short_phase_logs_nothing(records):
    clock = FakeClock()
    items = list(progress.LogProgress(range(30), desc="score", clock=clock))
    assert items == list(range(30)) and _lines(records) == []


def test_iterating_counts_and_closes_with_a_final_line(records):
    clock = FakeClock()

    def slow():
        for i in range(4):
            clock.t += 6.0
            yield i

    bar = progress.LogProgress(slow(), total=4, desc="train", unit="step", clock=clock)
    assert list(bar) == [0, 1, 2, 3]
    # The 100% line comes from the interval; closing does not repeat it.
    assert _lines(records) == ["train: 2/4 step (50%), eta 0:12", "train: 4/4 step (100%) in 0:24"]


def test_closing_early_logs_where_the_phase_stopped(records):
    clock = FakeClock()
    bar = progress.LogProgress(total=10, desc="fit", clock=clock)
    clock.t += 11
    bar.update(2)
    clock.t += 1
    bar.update(1)
    bar.close()
    bar.close()
    assert _lines(records) == ["fit: 2/10 it (20%), eta 0:44", "fit: 3/10 it (30%), eta 0:28"]


def test_unknown_total_reports_count_and_elapsed(records):
    clock = FakeClock()
    bar = progress.LogProgress(desc="mine", clock=clock)
    clock.t += 75
    bar.update(3)
    bar.close()
    assert _lines(records)[0] == "mine: 3 it, 1:15 elapsed"


def test_progress_picks_logging_off_a_terminal_and_tqdm_on_one(monkeypatch):
    monkeypatch.setattr("sys.stderr", io.StringIO())
    assert isinstance(progress.progress(range(3), desc="x"), progress.LogProgress)

    class Tty(io.StringIO):
        def isatty(self):
            return True

    monkeypatch.setattr("sys.stderr", Tty())
    bar = progress.progress(range(3), desc="x")
    assert not isinstance(bar, progress.LogProgress) and list(bar) == [0, 1, 2]
