"""The Results page: scorecard beside the baselines, analyst charts, the decision threshold."""

import json
import shutil

import pytest
from apptest_helpers import open_page, texts
from conftest import app_over

TABS = [
    "Curves",
    "Calibration",
    "Gain & lift",
    "Decision threshold",
    "Fairness",
    "Stability",
    "Training",
    "Predictions",
]


def test_scorecard_baselines_tabs_and_charts(trained_app, trained_runs):
    open_page(trained_app, "results")
    assert not trained_app.exception
    assert "Scorecard: fine-tuned vs baselines (test)" in texts(trained_app.subheader)
    # The verdict comes first: the model against LightGBM (the stronger baseline), with its test.
    said = [e.value for e in [*trained_app.success, *trained_app.warning, *trained_app.info]]
    verdict = next(v for v in said if "ROC AUC (" in v)
    assert "LightGBM" in verdict and "DeLong p =" in verdict and "Next:" in verdict
    scorecard = trained_app.dataframe[0].value
    models = [c for c in scorecard.columns if not c.startswith("· ")]
    assert models == ["metric", "Fine-tuned", "LightGBM", "Majority class"]
    parts = [c for c in scorecard.columns if c.startswith("· ")]  # a blend shows its parts
    (run_dir,) = [p for p in trained_runs.iterdir() if (p / "metrics.json").exists()]
    blend = json.loads((run_dir / "metrics.json").read_text()).get("parts")
    if blend is None:  # the run kept the network alone: nothing to show beside it
        assert parts == []
    else:
        weight = blend["blend_weight"]
        assert parts == [
            f"· network alone ({weight:.0%} of the blend)",
            f"· trees alone ({1 - weight:.0%})",
        ]
    assert {"KS ↑", "Gini ↑", "PR AUC ↑", "Brier score ↓", "Calibration error (ECE) ↓"} <= set(
        scorecard["metric"]
    )
    auc = scorecard.set_index("metric").loc["ROC AUC ↑", "Fine-tuned"]
    assert "[" in auc  # value with its bootstrap interval
    delong = trained_app.dataframe[1].value
    assert (
        list(delong["model"]) == ["LightGBM", "Majority class"] and "p (DeLong)" in delong.columns
    )
    assert [t.label for t in trained_app.tabs] == TABS
    # ROC, PR, scores; reliability; gain, lift; confusion, cost; approval rate per likely
    # protected input (3 in the credit sample); stability; loss, validation.
    assert len(trained_app.get("plotly_chart")) == 14
    assert "positive class **bad**" in texts(trained_app.caption)


@pytest.fixture
def own_run_app(trained_runs, tmp_path, monkeypatch):
    """The trained run copied to a runs folder of this test's own, so saving a threshold is
    private."""
    folder = tmp_path / "runs"
    shutil.copytree(trained_runs, folder)
    yield from app_over(folder, monkeypatch)


def test_costs_move_the_threshold_and_saving_relabels_predictions(own_run_app):
    at = open_page(own_run_app, "results")
    run_dir = next(p for p in _runs_folder().iterdir() if (p / "metrics.json").exists())
    key = f"results.decision.{run_dir.name}"
    even = float(_metric(at, "Threshold"))
    at.number_input(key=f"{key}.cost_fn").set_value(20.0).run()
    assert not at.exception
    costly_misses = float(_metric(at, "Threshold"))
    assert costly_misses <= even  # missing a bad loan costs more: flag more rows
    at.button(key=f"{key}.save").click().run()
    assert not at.exception
    saved = json.loads((run_dir / "decision.json").read_text())
    assert saved["cost_fn"] == 20.0 and abs(saved["threshold"] - costly_misses) < 5e-4
    predictions = (run_dir / "predictions.csv").read_text().splitlines()
    header = predictions[0].split(",")
    flagged = sum(line.split(",")[header.index("prediction")] == "bad" for line in predictions[1:])
    probabilities = [float(line.split(",")[header.index("prob_bad")]) for line in predictions[1:]]
    assert flagged == sum(p >= saved["threshold"] for p in probabilities)
    metrics = json.loads((run_dir / "metrics.json").read_text())  # one decision record
    assert (
        metrics["decision"] == saved and metrics["at_threshold"]["threshold"] == saved["threshold"]
    )
    assert metrics["at_threshold"]["tp"] + metrics["at_threshold"]["fp"] == flagged


def test_approval_rate_sets_the_share_approved(own_run_app):
    at = open_page(own_run_app, "results")
    run_dir = next(p for p in _runs_folder().iterdir() if (p / "metrics.json").exists())
    key = f"results.decision.{run_dir.name}"
    at.radio(key=f"{key}.method").set_value("approval_rate").run()
    at.slider(key=f"{key}.approval").set_value(0.6).run()
    assert not at.exception
    approval = float(_metric(at, "Approval rate (test)").rstrip("%")) / 100
    assert abs(approval - 0.6) < 0.12  # chosen on validation rows, measured on test rows


def _metric(at, label: str) -> str:
    return next(m.value for m in at.metric if m.label == label)


def _runs_folder():
    import os
    from pathlib import Path

    return Path(os.environ["FINTUNE_RUNS_DIR"])
