"""The verdict line names the better model, the margin, the significance and a next step."""

from __future__ import annotations

import pandas as pd

from core.review.compare import Comparison
from core.review.verdict import verdict


def _comparison(metric: str, values: dict, p_values: dict, *, delong: bool) -> Comparison:
    names = list(values)
    metrics = pd.DataFrame([{"model": m, metric: v} for m, v in values.items()])
    rows = [
        {
            "model": m,
            "metric": metric,
            "difference": values[m] - values[names[0]],
            "low": -0.1,
            "high": 0.1,
            "p_value": p,
            "better": values[m] > values[names[0]],
        }
        for m, p in p_values.items()
    ]
    differences = pd.DataFrame(rows)
    tests = pd.DataFrame(
        [
            {
                "model": m,
                "auc_reference": values[names[0]],
                "auc": values[m],
                "difference": values[m] - values[names[0]],
                "low": -0.1,
                "high": 0.1,
                "p_value": p,
            }
            for m, p in p_values.items()
        ]
        if delong
        else [],
        columns=["model", "auc_reference", "auc", "difference", "low", "high", "p_value"],
    )
    return Comparison(names, metrics, differences, tests, pd.DataFrame(), True)


def test_a_close_loss_to_lightgbm_is_called_unclear_and_names_both():
    values = {"Fine-tuned": 0.821, "LightGBM": 0.828, "majority class": 0.5}
    said = verdict(
        _comparison("roc_auc", values, {"LightGBM": 0.41, "majority class": 0.0}, delong=True),
        "binary",
        n_test_rows=150,
    )
    assert said.tone == "unclear"
    assert said.text.startswith("LightGBM is ahead of the fine-tuned model by 0.007 ROC AUC")
    assert "(0.821 vs 0.828) on the 150 test rows" in said.text
    assert "not significant (DeLong p = 0.41)" in said.text and "Next:" in said.text


def test_a_significant_win_and_a_significant_loss():
    win = {"Fine-tuned": 0.90, "LightGBM": 0.80}
    said = verdict(_comparison("roc_auc", win, {"LightGBM": 0.01}, delong=True), "binary")
    assert said.tone == "better" and said.text.startswith("The fine-tuned model is ahead")
    assert "significant at 5% (DeLong p = 0.010)" in said.text
    loss = {"Fine-tuned": 0.70, "LightGBM": 0.80}
    said = verdict(_comparison("roc_auc", loss, {"LightGBM": 0.001}, delong=True), "binary")
    assert said.tone == "worse" and "use LightGBM" in said.text


def test_regression_reads_lower_rmse_as_better():
    values = {"Fine-tuned": 1.5, "linear regression": 2.0, "mean": 3.0}
    said = verdict(
        _comparison("rmse", values, {"linear regression": 0.02, "mean": 0.0}, delong=False),
        "regression",
    )
    assert said.tone == "better"
    assert said.text.startswith("The fine-tuned model is ahead of linear regression by 0.500")
    assert "bootstrap p = 0.020" in said.text


def test_nothing_to_compare_gives_no_verdict():
    alone = _comparison("roc_auc", {"Fine-tuned": 0.8}, {}, delong=False)
    assert verdict(alone, "binary") is None
