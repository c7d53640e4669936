"""Bootstrap intervals, paired differences and DeLong's test against sklearn and the bootstrap."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from core.stats.intervals import (
    bootstrap_intervals,
    delong_test,
    paired_differences,
    resample_indices,
)
from core.stats.metrics import binary_ranking_metrics


def _scored(n: int, seed: int, signal: float = 1.0):
    """Labels (30% events) and a score whose separation grows with ``signal``."""
    rng = np.random.default_rng(seed)
    y = rng.random(n) < 0.3
    return y, signal * y + rng.normal(size=n)


def _auc_fn(y, score):
    return lambda index: {"roc_auc": binary_ranking_metrics(y[index], score[index])["roc_auc"]}


# --------------------------------------------------------------------------- bootstrap


def test_interval_contains_point_estimate():
    y, score = _scored(400, 0)
    point = binary_ranking_metrics(y, score)["roc_auc"]
    low, high = bootstrap_intervals(_auc_fn(y, score), len(y), n_boot=300, strata=y)["roc_auc"]
    assert low < point < high


def test_interval_shrinks_with_more_rows():
    widths = {}
    for n in (100, 2000):
        y, score = _scored(n, 1)
        low, high = bootstrap_intervals(_auc_fn(y, score), n, n_boot=200, strata=y)["roc_auc"]
        widths[n] = high - low
    assert widths[2000] < 0.5 * widths[100]  # ~ 1/sqrt(20) in theory


def test_bootstrap_reproducible_with_seed():
    y, score = _scored(300, 2)
    first = bootstrap_intervals(_auc_fn(y, score), len(y), n_boot=100, seed=7)
    again = bootstrap_intervals(_auc_fn(y, score), len(y), n_boot=100, seed=7)
    other = bootstrap_intervals(_auc_fn(y, score), len(y), n_boot=100, seed=8)
    assert first == again
    assert first != other


def test_stratified_resamples_keep_class_counts():
    y = np.array([0] * 90 + [1] * 7 + [2] * 3)
    expected = np.bincount(y)
    for index in resample_indices(len(y), n_boot=50, seed=3, strata=y):
        assert len(index) == len(y)
        assert np.array_equal(np.bincount(y[index], minlength=3), expected)


def test_undefined_resamples_leave_interval_out():
    y = np.array([1] + [0] * 99)  # unstratified resamples often lose the one event
    score = np.linspace(1, 0, 100)  # the event ranks first: AUC 1 wherever it is defined
    fn = _auc_fn(y, score)
    defined = [not math.isnan(fn(index)["roc_auc"]) for index in resample_indices(100, 20, 0, None)]
    assert 10 <= sum(defined) < 20  # some resamples lost the event, enough kept it
    # The undefined ones are left out, not counted: the interval is that of the defined ones.
    low, high = bootstrap_intervals(fn, 100, n_boot=20, seed=0)["roc_auc"]
    assert low == pytest.approx(1.0) and high == pytest.approx(1.0)
    # Fewer than 10 defined resamples (8 of these 14): no interval at all.
    defined = [not math.isnan(fn(index)["roc_auc"]) for index in resample_indices(100, 14, 0, None)]
    assert sum(defined) < 10
    assert bootstrap_intervals(fn, 100, n_boot=14, seed=0)["roc_auc"] is None


# --------------------------------------------------------------------------- paired differences


def test_paired_difference_of_identical_models_is_zero():
    y, score = _scored(200, 4)

    def metrics(index, k):
        return binary_ranking_metrics(y[index], score[index])

    (entry,) = paired_differences(metrics, len(y), 2, n_boot=100, strata=y)
    for name in ("roc_auc", "ks", "pr_auc"):
        assert entry[name]["difference"] == 0.0
        assert entry[name]["p_value"] == 1.0
        assert entry[name]["interval"] == [0.0, 0.0]


def test_paired_difference_detects_better_model():
    y, weak = _scored(500, 5, signal=0.2)
    strong = 3.0 * y + np.random.default_rng(6).normal(size=500)
    models = [weak, strong]

    def metrics(index, k):
        return {"roc_auc": binary_ranking_metrics(y[index], models[k][index])["roc_auc"]}

    (entry,) = paired_differences(metrics, len(y), 2, n_boot=200, strata=y)
    assert entry["roc_auc"]["difference"] > 0.2
    assert entry["roc_auc"]["p_value"] < 0.01
    assert entry["roc_auc"]["interval"][0] > 0


# --------------------------------------------------------------------------- DeLong


def test_delong_aucs_match_sklearn():
    y, first = _scored(300, 7)
    second = np.round(first + np.random.default_rng(8).normal(size=300), 0)  # heavy ties
    result = delong_test(y, [first, second])
    assert result["auc"][0] == pytest.approx(roc_auc_score(y, first))
    assert result["auc"][1] == pytest.approx(roc_auc_score(y, second))
    assert result["difference"] == pytest.approx(result["auc"][1] - result["auc"][0])


def test_delong_identical_scores():
    y, score = _scored(200, 9)
    result = delong_test(y, [score, score.copy()])
    assert result["difference"] == 0.0
    assert result["p_value"] == 1.0


def test_delong_strong_vs_random_model():
    rng = np.random.default_rng(10)
    y = rng.random(500) < 0.4
    strong = 2.5 * y + rng.normal(size=500)
    random = rng.normal(size=500)
    result = delong_test(y, [random, strong])
    assert result["difference"] > 0.3
    assert result["p_value"] < 0.001
    assert result["interval"][0] > 0


def test_delong_false_positive_rate():
    significant = 0
    for seed in range(20):
        rng = np.random.default_rng(100 + seed)
        y = rng.random(300) < 0.3
        a = y + rng.normal(size=300)
        b = y + rng.normal(size=300)
        significant += delong_test(y, [a, b])["p_value"] < 0.05
    assert significant / 20 <= 0.2


def test_delong_se_matches_paired_bootstrap():
    rng = np.random.default_rng(11)
    y = rng.random(500) < 0.3
    shared = rng.normal(size=500)
    a = y + shared + 0.7 * rng.normal(size=500)
    b = 1.3 * y + shared + 0.7 * rng.normal(size=500)
    result = delong_test(y, [a, b])
    differences = [
        binary_ranking_metrics(y[i], b[i])["roc_auc"]
        - binary_ranking_metrics(y[i], a[i])["roc_auc"]
        for i in resample_indices(500, n_boot=600, seed=1, strata=y)
    ]
    assert result["std_error"] == pytest.approx(np.std(differences, ddof=1), rel=0.25)


def test_delong_one_class_is_nan():
    result = delong_test(np.zeros(50, dtype=bool), [np.arange(50.0), np.arange(50.0)[::-1]])
    assert math.isnan(result["p_value"]) and result["interval"] is None
