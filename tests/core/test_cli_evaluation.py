"""``fintune threshold``, ``predict --threshold``, ``compare`` and ``market-features`` for real."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.core.test_cli import _assert_bad_input

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory, tiny_backbone, make_table, fintune):
    """Two tiny runs on the same table and split (different seeds of the head), plus the data
    file."""
    root = tmp_path_factory.mktemp("cli_eval")
    data = root / "credit.csv"
    make_table("credit").to_csv(data, index=False)
    folders = []
    for lr in ("5e-5", "1e-4"):
        result = fintune(
            "train",
            data,
            "--target",
            "credit_risk",
            "--backbone",
            tiny_backbone,
            "--max-steps",
            "4",
            "--epochs",
            "1",
            "--batch-size",
            "16",
            "--lr",
            lr,
            "--runs-dir",
            root / "runs",
        )
        assert result.returncode == 0, result.stderr[-2000:]
        folders.append(Path(result.stdout.strip().splitlines()[-1]))
    return folders, data


@pytest.fixture
def own_run(two_runs, tmp_path) -> Path:
    copy = tmp_path / two_runs[0][0].name
    shutil.copytree(two_runs[0][0], copy)
    return copy


def test_train_reports_intervals_baselines_and_the_threshold(two_runs):
    run_dir = two_runs[0][0]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["split"] == "chronological by 'application_date'"  # the table has a date column
    assert metrics["positive_class"] == "bad"
    low, high = metrics["test_intervals"]["roc_auc"]
    assert low <= metrics["test"]["roc_auc"] <= high
    assert set(metrics["baselines"]) == {"LightGBM", "Majority class"}
    assert metrics["baselines"]["Majority class"]["test"]["roc_auc"] == 0.5
    decision = json.loads((run_dir / "decision.json").read_text())
    assert decision["method"] == "cost" and 0 <= decision["threshold"] <= 1


def test_threshold_by_cost_saves_and_relabels(own_run, fintune):
    result = fintune("threshold", own_run, "--cost-fp", "1", "--cost-fn", "5")
    assert result.returncode == 0, result.stderr
    decision = json.loads((own_run / "decision.json").read_text())
    assert decision == {**decision, "method": "cost", "cost_fn": 5.0, "positive_class": "bad"}
    predictions = pd.read_csv(own_run / "predictions.csv")
    flagged = predictions["prob_bad"] >= decision["threshold"]
    assert (predictions["prediction"] == np.where(flagged, "bad", "good")).all()
    assert "chosen on validation rows" in result.stderr


def _assert_one_decision(run_dir: Path) -> None:
    """metrics.json's decision and at_threshold say what decision.json and predictions.csv say."""
    from core.stats.thresholds import Decision, outcome_at, table_scores

    metrics = json.loads((run_dir / "metrics.json").read_text())
    decision = json.loads((run_dir / "decision.json").read_text())
    predictions = pd.read_csv(run_dir / "predictions.csv")
    assert metrics["decision"] == decision
    scores = table_scores(predictions, "credit_risk", "bad")
    outcome = outcome_at(*scores, Decision.from_dict(decision))
    assert metrics["at_threshold"] == {k: None if v != v else v for k, v in outcome.items()}  # NaN
    at = metrics["at_threshold"]
    assert at["tp"] + at["fp"] == (predictions["prediction"] == "bad").sum()


def test_a_saved_threshold_updates_metrics_json_too(own_run, fintune):
    _assert_one_decision(own_run)  # as training wrote them
    result = fintune("threshold", own_run, "--cost-fp", "1", "--cost-fn", "5")
    assert result.returncode == 0, result.stderr
    _assert_one_decision(own_run)
    assert json.loads((own_run / "metrics.json").read_text())["decision"]["cost_fn"] == 5.0
    assert fintune("threshold", own_run, "--threshold", "0.0").returncode == 0
    _assert_one_decision(own_run)


def test_threshold_by_approval_rate(own_run, fintune):
    result = fintune("threshold", own_run, "--approval-rate", "0.7")
    assert result.returncode == 0, result.stderr
    decision = json.loads((own_run / "decision.json").read_text())
    validation = pd.read_csv(own_run / "val_predictions.csv")
    approved = (validation["prob_bad"] < decision["threshold"]).mean()
    assert abs(approved - 0.7) <= 1 / len(validation) + 1e-9


def test_predict_uses_the_saved_threshold_unless_told(own_run, two_runs, tmp_path, fintune):
    data = two_runs[1]
    assert fintune("threshold", own_run, "--threshold", "0.0").returncode == 0
    out = tmp_path / "scored.csv"
    assert fintune("predict", own_run, data, "-o", out).returncode == 0
    assert set(pd.read_csv(out)["prediction"]) == {"bad"}  # threshold 0 flags everything
    assert fintune("predict", own_run, data, "-o", out, "--threshold", "1.0").returncode == 0
    assert set(pd.read_csv(out)["prediction"]) == {"good"}


def test_bad_thresholds(own_run, fintune):
    _assert_bad_input(fintune("threshold", own_run, "--threshold", "1.5"), "1.5", "between 0 and 1")
    _assert_bad_input(
        fintune("threshold", own_run, "--cost-fp", "0", "--cost-fn", "0"), "at least one above 0"
    )
    _assert_bad_input(fintune("threshold", own_run, "--approval-rate", "2"), "Approval rate 2.0")


def test_compare_two_runs(two_runs, fintune):
    first, second = two_runs[0]
    result = fintune("compare", first, second)
    assert result.returncode == 0, result.stderr
    assert "DeLong test of ROC AUC differences" in result.stdout
    assert "differences against" in result.stdout
    assert "train.lr" in result.stdout  # the one setting that differs


def test_compare_needs_two_runs(two_runs, fintune):
    _assert_bad_input(fintune("compare", two_runs[0][0]), "at least two runs")


def test_bad_split_options(two_runs, fintune):
    data = two_runs[1]
    _assert_bad_input(
        fintune("train", data, "--target", "credit_risk", "--split", "random", "--embargo", "3"),
        "embargo needs a time split",
    )
    _assert_bad_input(
        fintune("train", data, "--target", "credit_risk", "--positive-class", "maybe"),
        "'maybe'",
        "['bad', 'good']",
    )


def test_market_features_then_train_chronologically(tmp_path, project_root, tiny_backbone, fintune):
    prices = pd.read_csv(project_root / "sample_data" / "market_daily.csv")[
        ["date", "close", "volume", "headline"]
    ]
    source = tmp_path / "prices.csv"
    prices.head(400).to_csv(source, index=False)
    derived = tmp_path / "features.csv"
    result = fintune("market-features", source, "-o", derived, "--horizon", "5")
    assert result.returncode == 0, result.stderr
    assert "--target next_5d_direction" in result.stderr and "--embargo 5" in result.stderr
    table = pd.read_csv(derived)
    assert {
        "return_1d",
        "return_5d",
        "return_20d",
        "volatility_20d",
        "volume_ratio_20d",
        "next_5d_direction",
    } <= set(table.columns)
    trained = fintune(
        "train",
        derived,
        "--target",
        "next_5d_direction",
        "--backbone",
        tiny_backbone,
        "--embargo",
        "5",
        "--max-steps",
        "2",
        "--epochs",
        "1",
        "--runs-dir",
        tmp_path / "runs",
    )
    assert trained.returncode == 0, trained.stderr[-2000:]
    run_dir = Path(trained.stdout.strip().splitlines()[-1])
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["split"] == "chronological by 'date', embargo 5 dates"
    # No test row is within 5 trading days of the validation period's last day.
    dates = pd.to_datetime(table["date"])
    val = pd.read_csv(run_dir / "val_predictions.csv")["row"]
    test = pd.read_csv(run_dir / "predictions.csv")["row"]
    between = dates[(dates > dates[val].max()) & (dates < dates[test].min())]
    assert len(between) == 5


def test_market_features_without_prices_is_a_clear_error(tmp_path, fintune):
    path = tmp_path / "no_prices.csv"
    pd.DataFrame({"a": [1, 2, 3], "b": [4, 5, 6]}).to_csv(path, index=False)
    _assert_bad_input(
        fintune("market-features", path, "-o", tmp_path / "o.csv"), "--date and --close"
    )
