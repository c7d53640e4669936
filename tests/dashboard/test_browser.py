"""End to end in a real Chromium: upload, pick the target, train briefly, read the results, explain.

Runs ``streamlit run dashboard/app.py`` on a free localhost port with its own runs folder, drives
Debian's chromium through Playwright, and saves a screenshot of every page to docs/screenshots/.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest
from live_server import SCREENSHOTS, open_nav, settle, shot
from playwright.sync_api import expect

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "sample_data"
TIMINGS = SCREENSHOTS / "browser_timings.json"  # time to first feedback, measured by this test
TRAINING_TIMEOUT_S = 300
EXPLAIN_TIMEOUT_S = 300  # 200 rows of the credit sample on a 2-core CPU

pytestmark = pytest.mark.browser


def _final_state(page) -> str:
    """Poll the Train page's state line until the run has finished; return the state."""
    line = page.locator('[data-testid="stMarkdown"]').filter(has_text="State:")
    deadline = time.monotonic() + TRAINING_TIMEOUT_S
    while time.monotonic() < deadline:
        text = line.first.inner_text() if line.count() else ""
        for state in ("succeeded", "failed", "cancelled", "interrupted"):
            if state in text:
                return state
        page.wait_for_timeout(1000)
    return "still running after the timeout"


def test_upload_train_and_read_results(server, browser):
    page = browser.new_page(viewport={"width": 1440, "height": 1700})
    page.set_default_timeout(60_000)
    page.goto(server)
    page.get_by_role("heading", name="Data", level=1).wait_for()
    settle(page)

    # Data: upload the credit CSV through the file uploader and pick the target.
    page.locator('[data-testid="stFileUploaderDropzoneInput"]').first.set_input_files(
        str(SAMPLES / "credit_risk.csv")
    )
    page.get_by_text("credit_risk.csv · 1,000 rows × 21 columns").wait_for()
    target = page.locator('[data-testid="stSelectbox"]').filter(has_text="Target column")
    target.click()
    page.get_by_role("option", name="credit_risk", exact=True).click()
    page.get_by_text("Task: binary").wait_for()
    page.locator('[data-testid="stPlotlyChart"]').first.wait_for()
    settle(page)
    shot(page, "data")

    # Model: a small budget, and the input preview is there.
    open_nav(page, "Model")
    page.get_by_text("Trainable backbone parameters").wait_for()
    unfrozen = page.locator('[data-testid="stMetricValue"]').first.inner_text()
    # Sliders in page order: freeze depth, epochs, patience.
    for index, keys, shown in (
        (0, ("End", "ArrowLeft", "ArrowLeft"), "4"),  # freeze depth 4 of MiniLM's 6 layers
        (1, ("Home", "ArrowRight"), "1"),  # epochs: auto, then 1
    ):
        page.get_by_role("slider").nth(index).focus()
        for key in keys:
            page.keyboard.press(key)
            page.wait_for_timeout(300)  # one key per rerun: a press during a rerun can be dropped
        settle(page)
        # expect() retries until the rerun that follows the last key press has drawn the page.
        thumb = page.locator('[data-testid="stSliderThumbValue"]').nth(index)
        expect(thumb).to_have_text(shown, timeout=30_000)
    expect(page.locator('[data-testid="stMetricValue"]').first).not_to_have_text(
        unfrozen, timeout=30_000
    )
    field = page.get_by_label("Max steps (optional)", exact=True)
    field.fill("4")
    field.press("Enter")
    settle(page)
    page.get_by_text("What the model reads").wait_for()
    page.get_by_text("tokens", exact=False).first.wait_for()
    shot(page, "model")

    # Train: start, watch it finish.
    open_nav(page, "Train")
    page.get_by_text("freeze depth 4, 1 epoch, at most 4 steps").wait_for()
    page.get_by_role("button", name="Start fine-tuning").click()
    clicked = time.monotonic()
    page.get_by_text("Run 2").wait_for()
    # Time to first feedback: from the click to the first loss point on the page.
    page.get_by_text(re.compile(r"step \d+ of \d+")).wait_for(timeout=TRAINING_TIMEOUT_S * 1000)
    first_feedback_s = time.monotonic() - clicked
    TIMINGS.parent.mkdir(parents=True, exist_ok=True)
    TIMINGS.write_text(
        json.dumps({"time_to_first_loss_point_s": round(first_feedback_s, 1)}, indent=2) + "\n"
    )
    print(f"time to first feedback: {first_feedback_s:.1f} s")
    assert _final_state(page) == "succeeded", page.locator(
        "section.main, [data-testid='stMain']"
    ).inner_text()
    page.wait_for_timeout(2000)  # one more fragment refresh draws the final curves
    shot(page, "train")

    # Results: the scorecard beside the baselines, the curves, then the decision threshold by cost.
    open_nav(page, "Results")
    page.get_by_role("heading", name="Scorecard: fine-tuned vs baselines (test)").wait_for()
    page.get_by_text("DeLong test of each baseline").wait_for()
    assert page.locator('[data-testid="stDataFrame"]').count() >= 2  # scorecard and DeLong table
    page.locator(".js-plotly-plot").first.wait_for()
    settle(page)
    titles = page.locator(".js-plotly-plot .gtitle").all_text_contents()
    assert any(t.startswith("ROC curve") for t in titles) and any(
        t.startswith("Scores by actual class (KS") for t in titles
    ), titles
    shot(page, "results")
    page.get_by_role("tab", name="Decision threshold").click()
    miss = page.get_by_label("Cost of missing a bad row (false negative)")
    miss.fill("5")
    miss.press("Enter")
    settle(page)
    page.get_by_text("Expected cost per row (test)").wait_for()
    page.get_by_role("button", name="Use this threshold for predictions").click()
    page.get_by_text("saved: predictions now use it").wait_for()
    settle(page)
    shot(page, "results-threshold")
    page.get_by_role("tab", name="Calibration").click()
    page.get_by_text("Expected calibration error").wait_for()
    settle(page)
    shot(page, "results-calibration")

    # Predict: score the same file with the finished run.
    open_nav(page, "Predict")
    page.locator('[data-testid="stFileUploaderDropzoneInput"]').first.set_input_files(
        str(SAMPLES / "credit_risk.csv")
    )
    page.get_by_text("1,000 predictions from run").wait_for(timeout=120_000)
    shot(page, "predict")
    assert not page.locator('[data-testid="stException"]').count()

    # Explain: SHAP values of the run's test rows in a background job, then the charts.
    open_nav(page, "Explain")
    page.get_by_role("button", name="Compute explanations").click()
    page.locator('[data-testid="stProgress"]').wait_for()
    page.get_by_role("heading", name="Global importance").wait_for(timeout=EXPLAIN_TIMEOUT_S * 1000)
    page.locator(".js-plotly-plot").nth(2).wait_for()
    settle(page)
    titles = page.locator(".js-plotly-plot .gtitle").all_text_contents()
    assert len(titles) == 3, titles
    assert titles[0].startswith("Importance") and titles[1].startswith("Effect on P(bad)")
    assert titles[2].startswith("Why P(bad)"), titles  # the waterfall of the first row
    assert page.locator(".js-plotly-plot .waterfalllayer .point").count() >= 2  # drawn bars
    page.locator('[data-testid="stDownloadButton"]').filter(has_text="SHAP").wait_for()
    page.set_viewport_size(
        {"width": 1440, "height": 1900}
    )  # the page scrolls inside: show the waterfall too
    settle(page)
    shot(page, "explain")
    assert not page.locator('[data-testid="stException"]').count()
    page.close()
