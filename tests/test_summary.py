"""The end-of-run summary."""

import pytest

from batl_jax import results, summary


def _rows():
    return [
        {
            "round": 0,
            "labeled": 100,
            "test": {"accuracy": 0.40, "macro_f1": 0.30},
            "stop": {"kappa": None, "f_change_bound": None, "mean_kappa": None},
            "time": {"encode_s": 30.0, "train_s": 2.0, "select_s": 0.5},
        },
        {
            "round": 1,
            "labeled": 200,
            "test": {"accuracy": 0.50, "macro_f1": 0.45},
            "stop": {"kappa": 0.9, "f_change_bound": 4 * 0.1 / 0.9, "mean_kappa": None},
            "time": {"train_s": 3.0, "select_s": 0.25},
        },
        {
            "round": 2,
            "labeled": 400,
            "test": {"accuracy": 0.60, "macro_f1": 0.55},
            "stop": {"kappa": 0.995, "f_change_bound": 4 * 0.005 / 0.995, "mean_kappa": 0.9475},
            "time": {"train_s": 4.0},
        },
    ]


def test_summary_names_size_metrics_auc_reason_times_and_files(tmp_path):
    for name in ("metrics.jsonl", "config.json", "curves.png"):
        (tmp_path / name).write_text("x")
    (tmp_path / "tensorboard").mkdir()
    text = summary.summary(
        _rows(), workdir=tmp_path, stop_reason="al.rounds=3 reached", primary_metric="accuracy"
    )
    lines = text.splitlines()
    assert lines[0] == "run ended after round 2, 400 labeled: al.rounds=3 reached"
    assert lines[1] == "final test: accuracy 60.00%, macro_f1 55.00%"
    # Trapezoid over labeled sizes 100, 200, 400 divided by the range 300:
    # (0.45 * 100 + 0.55 * 200) / 300 = 0.51666...
    assert "learning-curve AUC (accuracy" in lines[2] and lines[2].endswith(": 51.67%")
    assert lines[3].startswith("stop-set agreement with the previous round: kappa 0.9950")
    assert "at most 0.0201" in lines[3] and "window mean 0.9475" in lines[3]
    assert lines[4] == ("time: encode 30.0 s, train 9.0 s, select 0.8 s; total 39.8 s")
    assert lines[5].startswith(f"files in {tmp_path}: metrics.jsonl (one row per round), ")
    assert "selected.jsonl" not in lines[5]  # only files that exist
    assert lines[5].endswith(f"view with: tensorboard --logdir {tmp_path}")


def test_auc_is_the_reports_curve_area(tmp_path):
    rows = _rows()
    text = summary.summary(rows, workdir=tmp_path, stop_reason="x", primary_metric="macro_f1")
    auc = results.curve_area(results.Run(tmp_path, {}, rows), "macro_f1")
    assert auc == pytest.approx((0.375 * 100 + 0.5 * 200) / 300)
    assert f": {100 * auc:.2f}%" in text
    assert "final test: macro_f1 55.00%, accuracy 60.00%" in text


def test_relation_counts_no_test_split_and_no_rounds(tmp_path):
    row = {"round": 0, "labeled": 50, "test": {"micro_f1": 0.25, "p_at_100_n": 80}, "time": {}}
    text = summary.summary([row], workdir=tmp_path, stop_reason="done", primary_metric="micro_f1")
    assert "final test: micro_f1 25.00%, p_at_100_n 80" in text
    assert "learning-curve AUC (micro_f1" in text and text.count("25.00%") == 2
    assert "time: not recorded" in text and f"files: none yet in {tmp_path}" in text
    assert "stop-set" not in text

    no_test = {"round": 1, "labeled": 60, "time": {"train_s": 1.0}}
    text = summary.summary([no_test], workdir=tmp_path, stop_reason="r", primary_metric="accuracy")
    assert "no labeled test split" in text and "AUC" not in text

    text = summary.summary([], workdir=tmp_path, stop_reason="waiting", primary_metric="a")
    assert text.splitlines()[0] == "no round finished: waiting"
