"""The live demo in a real Chromium, timed: Load sample (credit) -> Quick demo run (reloaded
mid-run) -> Results -> global SHAP.

Issue 16's target: from the click on "Load sample" through a finished run (the Quick demo preset,
issue 17) to the Explain page showing global SHAP for 200 rows in under 60 s. The test does what a
user does, waiting for what the pages show, and prints the time of each part; the 60 s is a
benchmark figure, so the assertion on time is only a generous bound for slow shared machines.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from live_server import open_nav, settle
from playwright.sync_api import expect

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOT = ROOT / "build" / "browser" / "demo_explain.png"  # build/ is ignored by git
TARGET_S = 60  # issue 16's figure, printed beside the measured time
BOUND_S = 600  # asserted: far above the target, so a busy CI machine does not fail the suite
CREDIT_CSV = ROOT / "sample_data" / "credit_risk.csv"

pytestmark = pytest.mark.browser


def _idle(page) -> None:
    """A short settle: the demo's clock runs through every wait."""
    settle(page, before_ms=200, after_ms=0)


def _open(page, title: str) -> None:
    open_nav(page, title, before_ms=200, after_ms=0)


def test_demo_load_sample_train_and_explain(server, browser):
    page = browser.new_page(viewport={"width": 1440, "height": 1900})
    page.set_default_timeout(60_000)
    page.goto(server)
    page.get_by_role("heading", name="Data", level=1).wait_for()
    _idle(page)

    # Data: the credit sample is the sample picker's default; its default target is credit_risk.
    expect(page.get_by_role("combobox", name="Or use a sample dataset")).to_have_value(
        "credit_risk.csv"
    )
    page.get_by_role("button", name="Load sample").click()
    clicked = time.monotonic()
    page.get_by_text("credit_risk.csv · 1,000 rows × 21 columns").wait_for()
    expect(page.get_by_role("combobox", name="Target column")).to_have_value("credit_risk")
    page.get_by_text("Task: binary").wait_for()

    # Train: the Quick demo preset (issue 17), started at once: a presenter does not wait for
    # the estimate, which is measured meanwhile and read after the run.
    _open(page, "Train")
    page.get_by_text("predict credit_risk (binary)").wait_for()
    page.locator('[data-testid="stButtonGroup"]').get_by_text("Quick demo", exact=True).click()
    page.get_by_text("up to 10 epochs").first.wait_for()
    page.get_by_role("button", name="Start fine-tuning").click()
    state_line = page.locator('[data-testid="stMarkdown"]').filter(has_text="State:")
    expect(state_line.first).to_contain_text(re.compile("queued|running|succeeded"), timeout=60_000)
    started = time.monotonic()
    # A reload mid-run (issue 17): the tab keeps the file, the target and the preset's epochs,
    # and follows the run it started.
    page.reload()
    page.get_by_text("predict credit_risk (binary)").wait_for()
    page.get_by_text("up to 10 epochs").first.wait_for()
    expect(state_line.first).to_contain_text(re.compile("queued|running|succeeded"))
    reloaded = time.monotonic()
    expect(state_line.first).to_contain_text(
        re.compile("succeeded|failed|cancelled|interrupted"), timeout=BOUND_S * 1000
    )
    trained = time.monotonic()
    assert "succeeded" in state_line.first.inner_text(), page.locator(
        '[data-testid="stMain"]'
    ).inner_text()
    shown = page.locator('[data-testid="stMarkdown"]').filter(has_text="Estimated run time: about")
    estimate = shown.first.inner_text() if shown.count() else "Estimated run time: not shown yet"

    # Results: the verdict and the scorecard of the run just trained.
    _open(page, "Results")
    page.get_by_text("Scorecard: fine-tuned vs baselines (test)").wait_for()
    results = time.monotonic()

    # Explain: global SHAP of 200 held-out rows of the run just trained.
    _open(page, "Explain")
    rows = page.get_by_label("How many (the first N)", exact=True)
    rows.wait_for()  # the page loads the run's model first
    expect(rows).to_have_value("200")
    compute = page.get_by_role("button", name="Compute explanations")
    compute.wait_for()
    ready = time.monotonic()
    compute.click()
    page.get_by_role("heading", name="Global importance").wait_for(timeout=BOUND_S * 1000)
    chart = page.locator(".js-plotly-plot").first
    chart.wait_for()
    shown = time.monotonic()

    total = shown - clicked
    print(
        f"\nload sample -> run started {started - clicked:.1f} s; "
        f"reload mid-run, every choice back {reloaded - started:.1f} s; "
        f"training until finished {trained - started:.1f} s; "
        f"results {results - trained:.1f} s; "
        f"explain until the global SHAP chart shows {shown - results:.1f} s "
        f"(page ready {ready - results:.1f} s, then computed and drawn {shown - ready:.1f} s)",
        flush=True,
    )
    print(f"demo time {total:.1f} s (target {TARGET_S} s)", flush=True)
    print(f"{estimate}\nmeasured: training until finished {trained - started:.1f} s", flush=True)
    # The rest of the page (one row's waterfall) comes in the same script run; then it is idle.
    page.get_by_role("heading", name="One row: columns and words").wait_for()
    expect(page.get_by_role("button", name="Compute explanations")).to_have_count(0, timeout=60_000)
    _idle(page)
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOT), full_page=True)

    titles = page.locator(".js-plotly-plot .gtitle").all_text_contents()
    assert titles and titles[0].startswith("Importance"), titles
    # The credit sample's test split is 150 rows: the page tops the 200 up with validation rows.
    page.get_by_text(
        re.compile(r"^200 rows explained in .*150 test rows and 50 of its valid")
    ).wait_for()
    # The importance bars are named by the credit table's input columns.
    columns = set(CREDIT_CSV.read_text().splitlines()[0].split(",")) - {"credit_risk"}
    named = [tick.strip() for tick in chart.locator(".ytick").all_text_contents()]
    assert len([name for name in named if name in columns]) >= 5, named
    assert not page.locator('[data-testid="stException"]').count()
    assert total < BOUND_S
    page.close()
