"""Thresholds: cost curves and choices checked by brute force, Decision validation, labels."""

from __future__ import annotations

import numpy as np
import pytest

from core.errors import ConfigError
from core.stats.thresholds import (
    Decision,
    apply_decision,
    approval_rate_threshold,
    best_cost_threshold,
    choose_threshold,
    cost_curve,
    outcome_at,
)


def _scored(n: int = 300, seed: int = 0, decimals: int | None = 2):
    """Labels (25% events) and scores in (0, 1); rounding makes ties."""
    rng = np.random.default_rng(seed)
    y = rng.random(n) < 0.25
    score = 1 / (1 + np.exp(-(1.5 * y + rng.normal(-1, 1, n))))
    if decimals is not None:
        score = np.clip(score.round(decimals), 0.01, 0.99)
    return y, score


def _counts(y, score, threshold):
    flagged = score >= threshold
    return (
        int(np.sum(flagged & y)),
        int(np.sum(flagged & ~y)),
        int(np.sum(~flagged & y)),
        int(np.sum(~flagged & ~y)),
    )


def _brute_cost(y, score, threshold, cost_fp, cost_fn):
    _, fp, fn, _ = _counts(y, score, threshold)
    return (cost_fp * fp + cost_fn * fn) / len(y)


# --------------------------------------------------------------------------- curves and choices


@pytest.mark.parametrize("decimals", [1, 2, None])
def test_cost_curve_counts_match_brute_force(decimals):
    y, score = _scored(decimals=decimals)
    curve = cost_curve(y, score, cost_fp=1.0, cost_fn=3.0)
    for row in curve.itertuples():
        tp, fp, fn, tn = _counts(y, score, row.threshold)
        assert (row.tp, row.fp, row.fn, row.tn) == (tp, fp, fn, tn), row.threshold
        assert row.approval_rate == pytest.approx(1 - (tp + fp) / len(y))
        assert row.cost_per_row == pytest.approx((1.0 * fp + 3.0 * fn) / len(y))


def test_cost_curve_covers_flag_all_and_flag_none():
    y, score = _scored()
    curve = cost_curve(y, score)
    assert curve["approval_rate"].iloc[0] == 0.0
    assert curve["approval_rate"].iloc[-1] == 1.0
    assert np.all(np.diff(curve["threshold"]) > 0)


@pytest.mark.parametrize("costs", [(1.0, 1.0), (1.0, 5.0), (4.0, 1.0), (0.0, 1.0)])
def test_best_cost_threshold_is_brute_force_minimum(costs):
    cost_fp, cost_fn = costs
    y, score = _scored(seed=1)
    candidates = np.r_[np.unique(score), 1.0]  # every distinct decision (scores stay below 1)
    best_brute = min(_brute_cost(y, score, t, cost_fp, cost_fn) for t in candidates)
    chosen = best_cost_threshold(y, score, cost_fp, cost_fn)
    assert 0.0 <= chosen <= 1.0
    assert _brute_cost(y, score, chosen, cost_fp, cost_fn) == pytest.approx(best_brute)


def test_expensive_misses_lower_threshold():
    y, score = _scored(seed=2)
    balanced = best_cost_threshold(y, score, cost_fp=1.0, cost_fn=1.0)
    cautious = best_cost_threshold(y, score, cost_fp=1.0, cost_fn=20.0)
    assert cautious < balanced
    assert np.sum(score >= cautious) > np.sum(score >= balanced)


@pytest.mark.parametrize("rate", [0.7, 0.25, 0.5])
def test_approval_rate_threshold_approves_share(rate):
    _, score = _scored(n=301, seed=3, decimals=None)
    threshold = approval_rate_threshold(score, rate)
    approved = int(np.sum(score < threshold))
    assert abs(approved - rate * len(score)) <= 1


def test_approval_rate_extremes():
    _, score = _scored(seed=4)
    assert np.sum(score < approval_rate_threshold(score, 0.0)) == 0
    assert np.sum(score < approval_rate_threshold(score, 1.0)) == len(score)
    with pytest.raises(ConfigError):
        approval_rate_threshold(score, 1.2)


def test_choose_threshold_priority():
    y, score = _scored(seed=5)
    manual = choose_threshold(y, score, "bad", threshold=0.42, approval_rate=0.5)
    assert (manual.method, manual.threshold) == ("manual", 0.42)
    by_rate = choose_threshold(y, score, "bad", approval_rate=0.5)
    assert by_rate.method == "approval_rate" and by_rate.approval_rate == 0.5
    by_cost = choose_threshold(y, score, "bad", cost_fp=1.0, cost_fn=4.0)
    assert by_cost.method == "cost"
    assert by_cost.threshold == best_cost_threshold(y, score, 1.0, 4.0)


# --------------------------------------------------------------------------- Decision


@pytest.mark.parametrize(
    "kwargs",
    [
        {"threshold": 1.5},
        {"threshold": -0.1},
        {"threshold": 0.5, "cost_fp": -1.0},
        {"threshold": 0.5, "cost_fn": -2.0},
        {"threshold": 0.5, "cost_fp": 0.0, "cost_fn": 0.0},
        {"threshold": 0.5, "method": "magic"},
        {"threshold": 0.5, "approval_rate": 1.5},
    ],
)
def test_decision_validation(kwargs):
    with pytest.raises(ConfigError):
        Decision("bad", **kwargs)


def test_decision_round_trip():
    decision = Decision("bad", 0.37, "approval_rate", cost_fp=2.0, cost_fn=7.5, approval_rate=0.8)
    assert Decision.from_dict(decision.to_dict()) == decision


def test_decision_from_malformed_dict():
    with pytest.raises(ConfigError):
        Decision.from_dict({"positive_class": "bad", "threshold": 0.5, "colour": "red"})


def test_outcome_at_tiny_hand_example():
    # threshold .6 flags rows 0 1 4 5: tp rows 0,5; fp rows 1,4; fn row 2; tn row 3.
    # precision 2/4, recall 2/3, f1 4/7, accuracy 3/6, approval 2/6, cost 2*1 + 1*5 = 7.
    y = np.array([1, 0, 1, 0, 0, 1], dtype=bool)
    score = np.array([0.9, 0.8, 0.4, 0.3, 0.6, 0.6])
    result = outcome_at(y, score, Decision("bad", 0.6, cost_fp=1.0, cost_fn=5.0))
    assert (result["tp"], result["fp"], result["fn"], result["tn"]) == (2, 2, 1, 1)
    assert result["precision"] == pytest.approx(0.5)
    assert result["recall"] == pytest.approx(2 / 3)
    assert result["f1"] == pytest.approx(4 / 7)
    assert result["accuracy"] == pytest.approx(0.5)
    assert result["approval_rate"] == pytest.approx(1 / 3)
    assert result["total_cost"] == pytest.approx(7.0)
    assert result["cost_per_row"] == pytest.approx(7 / 6)


def test_apply_decision_labels():
    proba = np.array([[0.9, 0.1], [0.6, 0.4], [0.7, 0.3], [0.2, 0.8]])
    labels = apply_decision(proba, ["good", "bad"], Decision("bad", 0.3, "manual"))
    assert labels.tolist() == ["good", "bad", "bad", "bad"]
    labels = apply_decision(proba, ["good", "bad"], Decision("good", 0.65, "manual"))
    assert labels.tolist() == ["good", "bad", "good", "bad"]


def test_apply_decision_unknown_class():
    proba = np.array([[0.9, 0.1], [0.2, 0.8]])
    with pytest.raises(ConfigError, match="'default'"):
        apply_decision(proba, ["good", "bad"], Decision("default", 0.5))
