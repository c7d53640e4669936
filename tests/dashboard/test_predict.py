"""The Predict page: score an uploaded file with a finished run; bad files show the engine's message."""

from pathlib import Path

from apptest_helpers import open_page, texts

SAMPLES = Path(__file__).resolve().parents[2] / "sample_data"


def test_scores_an_uploaded_file(trained_app):
    open_page(trained_app, "predict")
    rows = (SAMPLES / "credit_risk.csv").read_text().splitlines()[:31]
    trained_app.file_uploader[0].set_value(("new.csv", "\n".join(rows).encode(), "text/csv")).run()
    assert not trained_app.exception
    assert "30 predictions" in texts(trained_app.success)
    predictions = trained_app.dataframe[0].value
    assert len(predictions) == 30
    assert {"prediction", "prob_good", "prob_bad"} <= set(predictions.columns)
    assert trained_app.get("download_button")


def test_missing_columns_and_empty_files_show_errors(trained_app):
    open_page(trained_app, "predict")
    trained_app.file_uploader[0].set_value(("few.csv", b"a,b\n1,2\n3,4\n", "text/csv")).run()
    assert not trained_app.exception
    assert trained_app.error and "column" in texts(trained_app.error)
    trained_app.file_uploader[0].set_value(("empty.csv", b"", "text/csv")).run()
    assert not trained_app.exception
    assert "empty.csv is empty" in texts(trained_app.error)
