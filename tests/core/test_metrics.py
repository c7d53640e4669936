"""Metrics against independent references: sklearn, hand-computed tiny examples, the tables."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import (
    average_precision_score,
    f1_score,
    log_loss,
    roc_auc_score,
    roc_curve,
)

from core.stats.metrics import (
    binary_ranking_metrics,
    classification_metrics,
    expected_calibration_error,
    gain_lift_table,
    is_return_like,
    regression_metrics,
    reliability_table,
)


def _tied_binary(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Labels and scores rounded to one decimal, so many scores tie (within and across classes)."""
    rng = np.random.default_rng(seed)
    y = rng.random(n) < 0.3
    score = np.clip(0.35 * y + rng.normal(0.35, 0.2, n), 0, 1).round(1)
    return y, score


def _binary_proba(score: np.ndarray) -> np.ndarray:
    return np.column_stack([1 - score, score])


# --------------------------------------------------------------------------- ranking vs sklearn


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ranking_metrics_match_sklearn_with_ties(seed):
    y, score = _tied_binary(400, seed)
    assert len(np.unique(score)) < 15  # heavily tied
    result = binary_ranking_metrics(y, score)
    fpr, tpr, _ = roc_curve(y, score)
    assert result["roc_auc"] == pytest.approx(roc_auc_score(y, score), abs=1e-12)
    assert result["pr_auc"] == pytest.approx(average_precision_score(y, score), abs=1e-12)
    assert result["ks"] == pytest.approx(np.max(tpr - fpr), abs=1e-12)


def test_gini_is_two_auc_minus_one():
    y, score = _tied_binary(300, 5)
    result = binary_ranking_metrics(y, score)
    assert result["gini"] == pytest.approx(2 * result["roc_auc"] - 1)


def test_ks_auc_tiny_hand_example():
    # Sorted high to low: 1 1 0 1 0 0 (3 positives, 3 negatives).
    # (TPR, FPR) after each score: (1/3,0) (2/3,0) (2/3,1/3) (1,1/3) (1,2/3) (1,1)
    # KS = max(TPR - FPR) = 2/3. AUC = pairs won / 9 = (3 + 3 + 2) / 9 = 8/9.
    y = np.array([1, 1, 0, 1, 0, 0], dtype=bool)
    score = np.array([0.9, 0.8, 0.7, 0.6, 0.3, 0.2])
    result = binary_ranking_metrics(y, score)
    assert result["ks"] == pytest.approx(2 / 3)
    assert result["roc_auc"] == pytest.approx(8 / 9)


def test_brier_tiny_hand_example():
    # Squared errors: .1² .2² .7² .4² .3² .2² = .01 .04 .49 .16 .09 .04 -> sum .83, mean .83/6.
    y = np.array([1, 1, 0, 1, 0, 0])
    score = np.array([0.9, 0.8, 0.7, 0.6, 0.3, 0.2])
    result = classification_metrics(y, _binary_proba(score))
    assert result["brier"] == pytest.approx(0.83 / 6)


def test_ece_tiny_hand_example():
    # Bin [0.1, 0.2): scores .11 .15 .12 (sum .38), 1 event   -> |1 - .38| = .62
    # Bin [0.8, 0.9): scores .81 .85 .88 (sum 2.54), 2 events -> |2 - 2.54| = .54
    # ECE = sum_b (n_b/N)|rate_b - mean_b| = (.62 + .54) / 6.
    y = np.array([0, 0, 1, 1, 1, 0])
    score = np.array([0.11, 0.15, 0.12, 0.81, 0.85, 0.88])
    assert expected_calibration_error(y, score) == pytest.approx(1.16 / 6)
    assert classification_metrics(y, _binary_proba(score))["ece"] == pytest.approx(1.16 / 6)


def test_ece_is_weighted_gap_of_reliability_table():
    y, _ = _tied_binary(500, 3)
    score = np.random.default_rng(3).beta(2, 3, 500)
    table = reliability_table(y, score)
    gap = np.abs(table["observed_rate"] - table["mean_predicted"])
    weighted = float(np.sum(table["rows"] * gap) / table["rows"].sum())
    assert expected_calibration_error(y, score) == pytest.approx(weighted)


def test_reliability_rows_sum_to_n():
    y, score = _tied_binary(321, 4)
    table = reliability_table(y, score)
    assert table["rows"].sum() == 321
    assert (table["rows"] > 0).all()


# --------------------------------------------------------------------------- classification


def test_binary_log_loss_matches_sklearn():
    y, score = _tied_binary(300, 6)
    score = np.clip(score, 0.05, 0.95)
    result = classification_metrics(y.astype(int), _binary_proba(score))
    assert result["log_loss"] == pytest.approx(
        log_loss(y.astype(int), _binary_proba(score)), rel=1e-9
    )


def test_binary_f1_is_of_positive_class():
    y, score = _tied_binary(300, 7)
    y = y.astype(int)
    proba = _binary_proba(np.clip(score + 0.01, 0, 1))  # avoid exact 0.5 argmax ties
    predicted = proba.argmax(axis=1)
    with_one = classification_metrics(y, proba)
    with_zero = classification_metrics(y, proba, positive=0)
    assert with_one["f1"] == pytest.approx(f1_score(y, predicted, pos_label=1))
    assert with_zero["f1"] == pytest.approx(f1_score(y, predicted, pos_label=0))
    assert with_zero["f1"] != pytest.approx(with_one["f1"])


def test_binary_positive_zero_scores_class_zero():
    y, score = _tied_binary(300, 8)
    y = y.astype(int)
    proba = _binary_proba(score)
    result = classification_metrics(y, proba, positive=0)
    assert result["roc_auc"] == pytest.approx(roc_auc_score(y == 0, proba[:, 0]))
    assert result["brier"] == pytest.approx(np.mean((proba[:, 0] - (y == 0)) ** 2))


def _multiclass(n: int = 300, k: int = 4, seed: int = 0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    logits = rng.normal(size=(n, k)) + 1.5 * np.eye(k)[y]
    proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return y, proba


def test_multiclass_metrics_match_sklearn():
    y, proba = _multiclass()
    result = classification_metrics(y, proba)
    predicted = proba.argmax(axis=1)
    brier = np.mean(np.sum((proba - np.eye(4)[y]) ** 2, axis=1))
    assert result["brier"] == pytest.approx(brier)
    assert result["log_loss"] == pytest.approx(log_loss(y, proba, labels=[0, 1, 2, 3]), rel=1e-9)
    assert result["f1"] == pytest.approx(f1_score(y, predicted, average="macro"))
    assert result["accuracy"] == pytest.approx(np.mean(predicted == y))
    assert result["roc_auc"] == pytest.approx(
        roc_auc_score(y, proba, multi_class="ovr", average="macro")
    )


def test_single_class_auc_is_nan():
    y = np.zeros(20, dtype=int)
    score = np.linspace(0.1, 0.9, 20)
    ranking = binary_ranking_metrics(y, score)
    assert all(math.isnan(v) for v in ranking.values())
    result = classification_metrics(y, _binary_proba(score))
    assert math.isnan(result["roc_auc"]) and math.isnan(result["ks"])
    assert math.isfinite(result["brier"]) and math.isfinite(result["log_loss"])


# --------------------------------------------------------------------------- regression


def test_regression_tiny_hand_example():
    # errors 1 -1 1 1 -> rmse 1, mae 1. MAPE skips y=0: (1/2 + 1/1 + 1/4) / 3 = 7/12.
    # mean y = 1.25, SS_tot = 1.5625 + .5625 + 5.0625 + 7.5625 = 14.75 -> r2 = 1 - 4/14.75.
    # Direction on the moved rows (2, -1, 4) vs (1, 0, 5): signs match 2 of 3.
    y = np.array([0.0, 2.0, -1.0, 4.0])
    pred = np.array([1.0, 1.0, 0.0, 5.0])
    result = regression_metrics(y, pred)
    assert result["rmse"] == pytest.approx(1.0)
    assert result["mae"] == pytest.approx(1.0)
    assert result["mape"] == pytest.approx(7 / 12)
    assert result["r2"] == pytest.approx(1 - 4 / 14.75)
    assert result["directional_accuracy"] == pytest.approx(2 / 3)


def test_mape_skips_zero_targets():
    y = np.array([0.0, 0.0, 10.0, 20.0])
    pred = np.array([5.0, -3.0, 11.0, 18.0])
    assert regression_metrics(y, pred)["mape"] == pytest.approx((0.1 + 0.1) / 2)


def test_mape_nan_when_all_targets_zero():
    assert math.isnan(regression_metrics(np.zeros(5), np.ones(5))["mape"])


def test_directional_only_for_return_like_targets():
    prices = np.array([10.0, 12.0, 15.0, 11.0, 14.0])
    returns = np.array([0.01, -0.02, 0.03, -0.01, 0.02])
    assert not is_return_like(prices)
    assert is_return_like(returns)
    assert "directional_accuracy" not in regression_metrics(prices, prices + 1)
    assert "directional_accuracy" in regression_metrics(returns, returns)
    assert "directional_accuracy" in regression_metrics(prices, prices, directional=True)
    assert "directional_accuracy" not in regression_metrics(returns, returns, directional=False)


# --------------------------------------------------------------------------- gain / lift


def test_gain_lift_perfect_score():
    y = np.zeros(100, dtype=int)
    y[:10] = 1
    score = y + np.linspace(0, 0.5, 100)  # every event above every non-event
    table = gain_lift_table(y, score)
    assert len(table) == 10 and table["rows"].sum() == 100
    first = table.iloc[0]
    assert first["gain"] == pytest.approx(1.0)
    assert first["lift"] == pytest.approx(10.0)
    assert first["cumulative_lift"] == pytest.approx(10.0)
    assert table["gain"].iloc[-1] == pytest.approx(1.0)


def test_gain_lift_random_score_ends_at_one():
    rng = np.random.default_rng(0)
    y = rng.random(1000) < 0.2
    table = gain_lift_table(y, rng.random(1000))
    assert table["gain"].iloc[-1] == pytest.approx(1.0)
    assert table["cumulative_lift"].iloc[-1] == pytest.approx(1.0)
    assert table["population"].iloc[-1] == pytest.approx(1.0)
    assert table["events"].sum() == y.sum()
    assert np.all(np.diff(table["gain"]) >= 0)
