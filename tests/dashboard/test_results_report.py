"""The model-risk report from the dashboard and in a browser.

The Results page's "Model report" button writes the report and offers it for download (AppTest);
the written file opens offline in Debian's chromium with its charts drawn and no console errors,
and a screenshot of it goes to build/browser/report.png (docs/screenshots/ with
FINTUNE_SCREENSHOTS_DIR=docs/screenshots, as for test_browser.py).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from apptest_helpers import open_page
from conftest import SAMPLES, app_over

ROOT = Path(__file__).resolve().parents[2]
# An ignored folder unless asked, so a test run changes no tracked file (as test_browser.py).
SCREENSHOT = (
    Path(os.environ.get("FINTUNE_SCREENSHOTS_DIR") or ROOT / "build" / "browser") / "report.png"
)
HEADINGS = (
    "Data fingerprint",
    "Split",
    "Model",
    "Reproducibility",
    "Test metrics",
    "Calibration",
    "Top attributions",
    "Stability and leakage",
    "Known limitations",
)

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def credit_run(tmp_path_factory, tiny_backbone) -> Path:
    """A succeeded run of the tiny backbone on the credit sample (1,000 rows, 21 columns)."""
    import core
    from core.runs import folder as runs
    from core.runs.status import read_status
    from core.runs.worker import execute

    config = core.default_config("credit_risk", tiny_backbone).replace(
        model={"d_hidden": 32, "d_numeric": 16},
        train={"epochs": 1, "batch_size": 32, "lr": 1e-3, "head_lr": 1e-2},
    )
    run_dir = runs.create_run(
        tmp_path_factory.mktemp("report") / "runs",
        config,
        core.read_table(SAMPLES / "credit_risk.csv"),
        source="credit_risk.csv",
    )
    assert execute(run_dir) == "succeeded", read_status(run_dir)
    return run_dir


@pytest.fixture
def report_app(credit_run, tmp_path, monkeypatch):
    """The Results page over a private copy of the run: the report it writes is this test's own."""
    folder = tmp_path / "runs"
    shutil.copytree(credit_run.parent, folder)
    yield from app_over(folder, monkeypatch)


def test_results_button_writes_the_report_and_offers_it(report_app):
    at = open_page(report_app, "results")
    assert not at.exception
    label = "Download the model report (HTML)"
    assert label not in [
        b.label for b in at.download_button
    ]  # no report written yet: nothing to download
    next(b for b in at.button if b.label == "Model report").click().run()
    assert not at.exception, at.exception
    assert label in [b.label for b in at.download_button]
    runs = Path(os.environ["FINTUNE_RUNS_DIR"]).iterdir()  # .sessions: the tabs' saved choices
    run_dir = next(p for p in runs if p.is_dir() and not p.name.startswith("."))
    assert "<h2>Known limitations</h2>" in (run_dir / "report.html").read_text(encoding="utf-8")


@pytest.mark.browser
def test_report_opens_offline_in_chromium(credit_run, browser):
    from core.review.report import write_model_report

    path = write_model_report(credit_run)
    page = browser.new_page(viewport={"width": 1280, "height": 1600})
    try:
        errors: list[str] = []
        page.on(
            "console",
            lambda message: errors.append(message.text) if message.type == "error" else None,
        )
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.on(
            "request",
            lambda request: (
                errors.append(f"fetched {request.url}")
                if not request.url.startswith(("file:", "data:", "blob:"))
                else None
            ),
        )
        page.goto(path.resolve().as_uri())
        page.locator("svg.main-svg").first.wait_for(timeout=60_000)
        for heading in HEADINGS:
            assert page.get_by_role("heading", name=heading, level=2, exact=True).is_visible()
        assert page.locator(".plot-container").count() == 2  # reliability diagram, SHAP bars
        assert page.locator("#calibration .scatterlayer .trace").count() == 2  # diagonal and model
        columns = len(page.locator("#attributions table tbody tr").all())
        assert columns >= 10 and page.locator("#attributions .barlayer .point").count() == columns
        assert "credit_risk.csv" in page.locator("#data").inner_text()
        page.wait_for_timeout(500)
        assert errors == []
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOT), full_page=False)
    finally:
        page.close()
