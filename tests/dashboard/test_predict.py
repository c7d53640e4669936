"""The Predict page: score an uploaded file with a finished run; bad files show the engine's
message."""

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
    assert "Stability against the training data" in texts(trained_app.subheader)


def test_threshold_slider_decides_the_labels(trained_app):
    open_page(trained_app, "predict")
    slider = next(s for s in trained_app.slider if s.key.startswith("predict.threshold."))
    rows = (SAMPLES / "credit_risk.csv").read_text().splitlines()[:41]
    trained_app.file_uploader[0].set_value(("new.csv", "\n".join(rows).encode(), "text/csv")).run()
    slider.set_value(0.0).run()
    assert not trained_app.exception
    assert set(trained_app.dataframe[0].value["prediction"]) == {"bad"}  # everything flagged
    assert "100.0% flagged bad" in texts(trained_app.success)
    next(s for s in trained_app.slider if s.key.startswith("predict.threshold.")).set_value(
        1.0
    ).run()
    assert set(trained_app.dataframe[0].value["prediction"]) == {"good"}


def test_shifted_file_is_flagged(trained_app):
    import core

    open_page(trained_app, "predict")
    frame = core.read_table(SAMPLES / "credit_risk.csv").head(200)
    frame["credit_amount"] = frame["credit_amount"] * 10  # a currency mix-up
    trained_app.file_uploader[0].set_value(
        ("shifted.csv", frame.to_csv(index=False).encode(), "text/csv")
    ).run()
    assert not trained_app.exception
    assert "'credit_amount' has shifted since training" in texts(trained_app.warning)


def test_missing_columns_and_empty_files_show_errors(trained_app):
    open_page(trained_app, "predict")
    trained_app.file_uploader[0].set_value(("few.csv", b"a,b\n1,2\n3,4\n", "text/csv")).run()
    assert not trained_app.exception
    assert "The file lacks column(s) " in texts(trained_app.error)
    assert "'credit_amount'" in texts(trained_app.error)  # a column the run was trained on
    trained_app.file_uploader[0].set_value(("empty.csv", b"", "text/csv")).run()
    assert not trained_app.exception
    assert "empty.csv is empty" in texts(trained_app.error)
