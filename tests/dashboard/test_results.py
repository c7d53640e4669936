"""The Results page: metrics, charts and safe downloads of a finished run."""

from apptest_helpers import open_page, texts


def test_metrics_charts_and_predictions(trained_app):
    open_page(trained_app, "results")
    assert not trained_app.exception
    assert "Metrics" in texts(trained_app.subheader)
    metrics = trained_app.dataframe[0].value
    assert set(metrics["split"]) == {"val", "test"}
    assert {"roc_auc", "accuracy", "f1", "log_loss"} <= set(metrics.columns)
    # Loss and validation curves, then confusion matrix, ROC and precision-recall.
    assert len(trained_app.get("plotly_chart")) == 5
    predictions = trained_app.dataframe[1].value
    assert {"credit_risk", "prediction", "prob_good", "prob_bad"} <= set(predictions.columns)
    assert trained_app.get("download_button")
