"""Metrics, folds and samples: pure numpy, no Spark."""

from __future__ import annotations

import numpy as np
import pytest

from mqttids.errors import UsageError
from mqttids.models import evaluate, tuning
from mqttids.schema import LABELS


def test_confusion_matrix_counts_true_rows_by_predicted_columns():
    cm = evaluate.confusion_matrix(np.array([0, 0, 1, 2]), np.array([0, 1, 1, 0]))
    assert cm[0].tolist()[:3] == [1, 1, 0]
    assert cm[1, 1] == 1 and cm[2, 0] == 1
    assert cm.sum() == 4 and cm.shape == (6, 6)


def test_scores_match_hand_computed_figures():
    y = np.array([0, 0, 0, 1, 1, 2])
    p = np.array([0, 0, 1, 1, 1, 0])
    s = evaluate.scores(evaluate.confusion_matrix(y, p))
    assert s["accuracy"] == pytest.approx(4 / 6)
    leg = s["per_class"]["legitimate"]
    assert leg["precision"] == pytest.approx(2 / 3) and leg["recall"] == pytest.approx(2 / 3)
    assert s["per_class"]["dos"]["f1"] == pytest.approx(0.8)
    assert s["per_class"]["flood"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    # Labels absent from truth and predictions are left out of the average.
    assert set(s["per_class"]) == {"legitimate", "dos", "flood"}
    assert s["macro_f1"] == pytest.approx((2 / 3 + 0.8 + 0.0) / 3)


def test_scores_of_nothing_are_none():
    s = evaluate.scores(evaluate.confusion_matrix(np.array([], int), np.array([], int)))
    assert s["accuracy"] is None and s["macro_f1"] is None and s["per_class"] == {}


def test_report_gives_unseen_rows_their_own_figures():
    y = np.array([0, 1, 1, 2])
    p = np.array([0, 1, 0, 0])
    rep = evaluate.report(y, p, np.array([False, False, True, True]), 0.9)
    assert rep["accuracy"] == pytest.approx(0.5)
    assert rep["unseen_rows"]["accuracy"] == 0.0 and rep["unseen_rows"]["rows"] == 2
    assert rep["ceiling"] == 0.9
    assert rep["confusion"]["labels"] == list(LABELS)


def test_confusion_png_is_written(tmp_path):
    cm = evaluate.confusion_matrix(np.array([0, 1, 1]), np.array([0, 1, 0]))
    out = evaluate.confusion_png(cm, tmp_path / "sub" / "cm.png", "toy")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_stratified_folds_spread_each_class_evenly_and_repeat_with_a_seed():
    y = np.array([0] * 30 + [1] * 7 + [2] * 3)
    folds = tuning.stratified_folds(y, 3, seed=1)
    for label in (0, 1, 2):
        counts = np.bincount(folds[y == label], minlength=3)
        assert counts.max() - counts.min() <= 1
    assert np.array_equal(folds, tuning.stratified_folds(y, 3, seed=1))
    assert not np.array_equal(folds, tuning.stratified_folds(y, 3, seed=2))


def test_sample_keeps_small_classes_whole_and_shrinks_big_ones():
    y = np.array([0] * 20_000 + [1] * 50)
    idx = tuning.stratified_sample_indices(y, 5_000, seed=0)
    assert (y[idx] == 1).sum() == 50
    assert 2_000 <= (y[idx] == 0).sum() <= 5_000
    assert np.array_equal(idx, np.unique(idx))
    assert len(tuning.stratified_sample_indices(y[:100], 5_000, 0)) == 100


def test_sample_fractions_are_one_when_everything_fits():
    assert tuning.sample_fractions({"dos": 10, "flood": 2}, 100) == {"dos": 1.0, "flood": 1.0}
    f = tuning.sample_fractions({"dos": 1_000_000, "flood": 100}, 10_000)
    assert f["flood"] == 1.0 and f["dos"] == pytest.approx(0.01, rel=0.01)


def test_folds_below_two_are_refused():
    with pytest.raises(UsageError, match="at least 2, got 1"):
        tuning.check_folds(1)


def _row(config, fold, f1, epoch=None):
    return tuning.CvRow("m", "mlp", config, {"c": config}, fold, f1, f1, 10, 5, 0.1, epoch)


def test_best_config_takes_the_highest_mean_and_the_first_on_a_tie():
    rows = [_row(0, 0, 0.8), _row(0, 1, 0.9), _row(1, 0, 0.95), _row(1, 1, 0.95)]
    assert tuning.best_config(rows) == 1
    tie = [_row(0, 0, 0.9), _row(1, 0, 0.9)]
    assert tuning.best_config(tie) == 0


def test_refit_epochs_is_the_median_best_epoch():
    rows = [_row(0, 0, 0.9, 4), _row(0, 1, 0.9, 6), _row(0, 2, 0.9, 9), _row(1, 0, 0.5, 1)]
    assert tuning.refit_epochs(rows, 0) == 6
    assert tuning.refit_epochs(rows, 1) == 1


def test_tuning_table_has_one_row_per_fold_with_params_as_json():
    rows = [_row(0, 0, 0.8), _row(0, 1, 0.9)]
    t = tuning.tuning_table(rows)
    assert t.num_rows == 2
    assert t.column("params").to_pylist() == ['{"c": 0}', '{"c": 0}']
    summary = tuning.summarise(rows)
    assert summary[0]["mean_macro_f1"] == pytest.approx(0.85)
