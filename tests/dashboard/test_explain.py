"""The Explain page: background SHAP job, importance charts, a row's waterfall and its words,
downloads."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pandas as pd
import pytest
from apptest_helpers import open_page, texts
from conftest import app_over

import core
from dashboard import state

SAMPLES = Path(__file__).resolve().parents[2] / "sample_data"


@pytest.fixture(scope="module")
def text_runs(tmp_path_factory) -> Path:
    """A runs folder with one tiny multiclass run on texts: a few sentiment rows of each class."""
    directory = tmp_path_factory.mktemp("text") / "runs"
    jobs = core.JobManager(directory)
    frame = (
        core.read_table(SAMPLES / "fin_sentiment.csv")
        .groupby("label")
        .head(40)
        .reset_index(drop=True)
    )
    config = core.default_config("label").replace(
        model={"freeze_depth": 6}, train={"epochs": 1, "max_steps": 2}
    )
    run_id = jobs.submit(config, frame, source="fin_sentiment.csv")
    snapshot = jobs.wait(run_id, timeout=600)
    jobs.shutdown()
    assert snapshot.state == "succeeded", snapshot.message
    return directory


def _compute(at, n_rows: int) -> core.ExplainJob:
    """Explain the first n rows with the page's button; return the job the page started."""
    at.number_input(key=state.EXPLAIN_ROWS).set_value(n_rows).run()
    [button] = [b for b in at.button if b.label == "Compute explanations"]
    button.click().run()
    assert not at.exception
    *_, job = state.explain_jobs().jobs()  # a fresh registry each test; the newest job last
    return job


def _chart_titles(at) -> list[str]:
    return [
        json.loads(chart.proto.spec)["layout"]["title"]["text"] for chart in at.get("plotly_chart")
    ]


def test_explains_the_test_rows_of_a_run(trained_app):
    open_page(trained_app, "explain")
    assert not trained_app.exception
    assert trained_app.number_input(key=state.EXPLAIN_ROWS).value == core.DEFAULT_EXPLAIN_ROWS
    assert "probability of **bad**" in texts(trained_app.caption)  # binary: the positive class
    job = _compute(trained_app, 6)
    assert job.wait(timeout=300).state == "succeeded", job.snapshot().error
    trained_app.run()
    assert not trained_app.exception
    titles = _chart_titles(trained_app)
    assert len(titles) == 3 and titles[0].startswith("Importance") and "P(bad)" in titles[0]
    assert titles[1].startswith("Effect on P(bad)")
    assert "backbone passes" in texts(trained_app.caption)
    assert not trained_app.get("html")  # the credit table has no text column: no word view

    # The row picker redraws the waterfall for the picked row.
    picker = trained_app.selectbox(key=state.EXPLAIN_ROW)
    first, second = picker.options[:2]
    assert f"for row {first.split()[1]}" in titles[2]
    picker.select_index(1).run()
    assert not trained_app.exception
    assert f"for row {second.split()[1]}" in _chart_titles(trained_app)[2]

    [download] = trained_app.get("download_button")
    assert "SHAP" in download.proto.label

    # A second visit with the same run and rows is served from the registry, without a click.
    open_page(trained_app, "results")
    open_page(trained_app, "explain")
    assert not trained_app.exception
    assert state.explain_jobs().jobs() == [job]
    assert len(trained_app.get("plotly_chart")) == 3
    assert not [b for b in trained_app.button if b.label == "Compute explanations"]


def test_estimate_queue_place_cancel_then_compute_again(trained_app, trained_runs):
    open_page(trained_app, "explain")
    [run] = core.list_runs(trained_runs)
    jobs = state.explain_jobs()
    deadline = time.monotonic() + 300
    while jobs.speed(run.path) is None and time.monotonic() < deadline:
        time.sleep(0.2)  # opening the page asked the explainer to time a few rows of the run
    trained_app.run()
    assert "estimated from a timed check of 16 rows here" in texts(trained_app.caption)

    # Another tab's long job holds the explainer: this one waits, and says behind what.
    rows = core.test_rows(run.path)
    other = jobs.start("another tab", run.path, pd.concat([rows] * 6), n_permutations=4)
    job = _compute(trained_app, 200)
    assert job is not other and not job.snapshot().finished
    [bar] = trained_app.get("progress")
    assert bar.proto.text == f"1st in the queue, after {len(rows) * 6} rows of {run.run_id}" + (
        " (computing now)"
    )
    trained_app.button(key="explain.cancel").click().run()
    assert job.wait(timeout=120).state == "cancelled"
    assert job.snapshot().state == "cancelled"  # a queued job is dropped at once
    trained_app.run()
    assert not trained_app.exception
    assert "cancelled" in texts(trained_app.warning)
    assert [b for b in trained_app.button if b.label == "Compute explanations"]
    other.cancel()
    assert other.wait(timeout=120).state == "cancelled"


def test_bad_files_show_the_engines_message(trained_app):
    open_page(trained_app, "explain")
    trained_app.radio(key=state.EXPLAIN_SOURCE).set_value("upload").run()
    assert "Upload a file" in texts(trained_app.info)
    trained_app.file_uploader[0].set_value(("few.csv", b"a,b\n1,2\n3,4\n", "text/csv")).run()
    assert not trained_app.exception
    assert "The file lacks column(s) " in texts(trained_app.error)
    assert "'credit_amount'" in texts(trained_app.error)  # a column the run was trained on
    trained_app.file_uploader[0].set_value(("empty.csv", b"", "text/csv")).run()
    assert not trained_app.exception
    assert "empty.csv is empty" in texts(trained_app.error)
    assert not state.explain_jobs().jobs()  # nothing was started


@pytest.fixture
def text_app(text_runs, monkeypatch):
    """An AppTest whose runs folder holds the tiny text run."""
    yield from app_over(text_runs, monkeypatch)


def test_words_of_an_uploaded_text_are_shaded_and_escaped(text_app):
    at = text_app
    open_page(at, "explain")
    assert (
        at.selectbox(key=state.EXPLAIN_CLASS).value == "neutral"
    )  # multiclass: the last by default
    at.selectbox(key=state.EXPLAIN_CLASS).select("bearish").run()
    at.radio(key=state.EXPLAIN_SOURCE).set_value("upload").run()
    rows = b'text,label\n"Profit warning <script>alert(1)</script> shares plunge",bearish\n'
    at.file_uploader[0].set_value(("new.csv", rows, "text/csv")).run()
    job = _compute(at, 5)
    assert job.wait(timeout=300).state == "succeeded", job.snapshot().error
    at.run()
    assert not at.exception
    assert "P(bearish)" in _chart_titles(at)[0]
    [words] = at.get("html")
    body = words.proto.body
    assert "&lt;" in body and "<script" not in body and "alert" in body  # every token escaped
    assert "plunge" in body and "rgba(" in body
    assert "Green words raise P(bearish)" in texts(at.caption)
