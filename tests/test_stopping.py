"""Stabilizing-predictions stopping rule: stop set, kappa, bound, decision."""

import math
import warnings

import numpy as np
import pytest
from sklearn.metrics import cohen_kappa_score

from batl_jax import stopping
from batl_jax.errors import StateError


def test_stop_set_seeded_sorted_unique_and_capped():
    a = stopping.stop_set(10_000, 2000, seed=3)
    assert a.shape == (2000,) and np.all(np.diff(a) > 0) and a[-1] < 10_000
    np.testing.assert_array_equal(a, stopping.stop_set(10_000, 2000, seed=3))
    assert not np.array_equal(a, stopping.stop_set(10_000, 2000, seed=4))
    np.testing.assert_array_equal(stopping.stop_set(150, 2000, seed=3), np.arange(150))
    with pytest.raises(ValueError):
        stopping.stop_set(100, 0, seed=0)


def test_stop_set_is_not_the_initial_labeled_draw():
    from batl_jax import seeds

    a = stopping.stop_set(5000, 100, seed=0)
    assert not np.array_equal(a, seeds.initial_labeled(5000, 100, seed=0))


@pytest.mark.parametrize("seed", range(6))
def test_kappa_matches_sklearn(seed):
    rng = np.random.default_rng(seed)
    c = int(rng.integers(2, 7))
    a = rng.integers(0, c, size=300)
    # Mostly agreeing pairs, like consecutive rounds' predictions.
    b = np.where(rng.random(300) < 0.8, a, rng.integers(0, c, size=300))
    assert stopping.cohen_kappa(a, b, c) == pytest.approx(cohen_kappa_score(a, b), abs=1e-12)


def test_kappa_edge_cases():
    a = np.array([0, 1, 2, 0, 1])
    assert stopping.cohen_kappa(a, a, 3) == pytest.approx(1.0)
    # Complete disagreement on two balanced classes: kappa -1 (as sklearn).
    x, y = np.array([0, 1, 0, 1]), np.array([1, 0, 1, 0])
    assert stopping.cohen_kappa(x, y, 2) == pytest.approx(cohen_kappa_score(x, y)) == -1.0
    # One vector constant, the other not: p_e < 1, kappa 0 (as sklearn).
    z, w = np.zeros(4, int), np.array([0, 0, 1, 1])
    assert stopping.cohen_kappa(z, w, 2) == pytest.approx(cohen_kappa_score(z, w)) == 0.0
    # Both the same constant class: sklearn's 0/0 is NaN; unchanged predictions -> 1.0.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert math.isnan(cohen_kappa_score(z, z))
    assert stopping.cohen_kappa(z, z, 2) == 1.0
    # Two different constants: p_e = 0, p_o = 0 -> kappa 0.
    assert stopping.cohen_kappa(np.zeros(3, int), np.ones(3, int), 2) == 0.0
    for bad in ((a, a[:3], 3), (a, a, 2), (np.array([], int), np.array([], int), 2)):
        with pytest.raises(ValueError):
            stopping.cohen_kappa(*bad)


def test_f_change_bound():
    assert stopping.f_change_bound(1.0) == 0.0
    assert stopping.f_change_bound(0.99) == pytest.approx(4 * 0.01 / 0.99)
    assert stopping.f_change_bound(0.8) == pytest.approx(1.0)
    assert stopping.f_change_bound(0.0) is None
    assert stopping.f_change_bound(-0.3) is None
    assert stopping.f_change_bound(None) is None


def test_decide_window_threshold_and_float_means():
    assert not stopping.decide([None], 3, 0.99).stop
    assert not stopping.decide([None, 1.0, 1.0], 3, 0.99).stop  # only 2 agreements
    d = stopping.decide([None, 0.5, 0.99, 0.99, 0.99], 3, 0.99)  # fsum/3 = 0.98999...
    assert d.stop and d.mean_kappa == pytest.approx(0.99) and "0.99" in d.reason
    d = stopping.decide([None, 1.0, 1.0, 0.96], 3, 0.99)
    assert not d.stop and d.mean_kappa == pytest.approx(0.9866666) and "< 0.99" in d.reason
    assert stopping.decide([None, 0.2], 1, 0.2).stop
    with pytest.raises(ValueError):
        stopping.decide([1.0], 0, 0.5)


def _simulate(predictions_per_round, window=3, threshold=0.99, num_classes=4):
    """The loop's use: per round, round_stop on the previous predictions and row kappas."""
    rows, previous = [], None
    for r, preds in enumerate(predictions_per_round):
        stop_row, decision = stopping.round_stop(
            previous,
            preds,
            stopping.kappas_of(rows),
            num_classes=num_classes,
            window=window,
            threshold=threshold,
        )
        rows.append({"round": r, "stop": stop_row})
        previous = preds
        if decision.stop:
            return r, rows, decision
    return None, rows, None


def test_predictions_that_stop_changing_stop_at_the_expected_round():
    rng = np.random.default_rng(0)
    n, c = 2000, 4
    truth = rng.integers(0, c, size=n)
    # Round r gets a share 0.4 / (r + 1) of the rows wrong until round 4; from round 4 on
    # the model predicts exactly the same labels.
    preds = []
    for r in range(10):
        noise = 0.0 if r >= 4 else 0.4 / (r + 1)
        wrong = rng.random(n) < noise
        preds.append(np.where(wrong, (truth + 1) % c, truth))
    stop_round, rows, decision = _simulate(preds)
    # Agreements 4-5, 5-6, 6-7 are all 1.0: the rule stops after round 7.
    assert stop_round == 7
    assert [r["stop"]["kappa"] for r in rows[5:8]] == [1.0, 1.0, 1.0]
    assert rows[0]["stop"] == {"kappa": None, "f_change_bound": None, "mean_kappa": None}
    assert rows[4]["stop"]["kappa"] < 0.99 and rows[4]["stop"]["f_change_bound"] > 0
    assert rows[7]["stop"]["mean_kappa"] == 1.0 and decision.stop
    # Retrospectively (and on resume) the rows alone give the same answer.
    assert stopping.first_stop(rows, 3, 0.99) == 7
    assert stopping.decide_rows(rows, 3, 0.99).stop
    assert not stopping.decide_rows(rows[:7], 3, 0.99).stop
    for i, row in enumerate(rows):
        row.update(labeled=50 * (i + 1), test={"accuracy": i / 10})
    assert stopping.retrospective(rows + [dict(rows[-1], round=8)], 3, 0.99, "accuracy") == {
        "stop_round": 7,
        "stop_labeled": 400,
        "stop_metric": 0.7,
        "last_round": 8,
        "last_labeled": 400,
        "last_metric": 0.7,
    }


def test_predictions_that_keep_changing_never_stop():
    rng = np.random.default_rng(1)
    preds = [rng.integers(0, 4, size=2000) for _ in range(12)]
    stop_round, rows, _ = _simulate(preds)
    assert stop_round is None and len(rows) == 12
    kappas = [r["stop"]["kappa"] for r in rows[1:]]
    assert all(abs(k) < 0.1 for k in kappas)
    assert stopping.first_stop(rows, 3, 0.99) is None
    assert stopping.retrospective(rows, 3, 0.99, "accuracy")["stop_round"] is None


def test_small_steady_changes_stop_only_with_a_looser_threshold():
    rng = np.random.default_rng(2)
    base = rng.integers(0, 3, size=1000)
    preds = []
    for _ in range(8):  # 3% of rows flip every round
        flip = rng.random(1000) < 0.03
        base = np.where(flip, (base + 1) % 3, base)
        preds.append(base.copy())
    assert _simulate(preds, num_classes=3)[0] is None
    assert _simulate(preds, threshold=0.9, num_classes=3)[0] == 3


def test_predictions_round_trip(tmp_path):
    p = np.array([3, 0, 2, 1])
    path = stopping.save_predictions(tmp_path, 2, p)
    assert path.is_file() and not list(path.parent.glob("*.tmp"))
    np.testing.assert_array_equal(stopping.load_predictions(tmp_path, 2, 4), p)
    with pytest.raises(StateError, match="stop set has 5"):
        stopping.load_predictions(tmp_path, 2, 5)
    with pytest.raises(StateError, match="round0003"):
        stopping.load_predictions(tmp_path, 3, 4)
