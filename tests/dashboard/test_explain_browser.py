"""The dashboard stays responsive while an explanation computes: a real Chromium, two tabs.

Issue 17: text SHAP computed inside the server made a fresh tab wait for minutes on a 2-core CPU.
Explanations now run in the explainer process. This test starts a slow one (1,000 headlines of a
frozen MiniLM sentiment run, a backbone pass per headline), and while it runs opens the app in a
second tab and times how long its first page takes to show; it prints the time.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from live_server import open_nav, runs_dir_of, settle
from playwright.sync_api import expect

import core

ROOT = Path(__file__).resolve().parents[2]
SENTIMENT_CSV = ROOT / "sample_data" / "fin_sentiment.csv"
EXPLAINED_ROWS = 1000
RENDER_TARGET_S = 2.0  # issue 17's figure, printed beside the measured time
HANG_BOUND_S = 10.0

pytestmark = [pytest.mark.browser, pytest.mark.timeout(400)]


def _train_sentiment_run(runs_dir: Path) -> None:
    """A frozen MiniLM on 40 headlines per class, two steps: seconds to train."""
    jobs = core.JobManager(runs_dir, warm_worker=False)
    frame = core.read_table(SENTIMENT_CSV).groupby("label").head(40).reset_index(drop=True)
    config = core.default_config("label").replace(
        model={"freeze_depth": 6}, train={"epochs": 1, "max_steps": 2}
    )
    run_id = jobs.submit(config, frame, source="fin_sentiment.csv")
    snapshot = jobs.wait(run_id, timeout=300)
    jobs.shutdown()
    assert snapshot.state == "succeeded", snapshot.message


def _new_tab_render_s(browser, url: str) -> float:
    """Seconds from opening the app in a new tab until its first page's title shows."""
    tab = browser.new_page(viewport={"width": 1440, "height": 1200})
    started = time.monotonic()
    tab.goto(url, timeout=120_000)
    tab.get_by_role("heading", name="Data", level=1).wait_for(timeout=120_000)
    rendered = time.monotonic() - started
    settle(tab, before_ms=0, after_ms=0)
    tab.close()
    return rendered


def test_a_new_tab_renders_while_an_explanation_computes(server, browser, tmp_path_factory):
    _train_sentiment_run(runs_dir_of(tmp_path_factory, server))
    rows_file = tmp_path_factory.mktemp("explain_rows") / "headlines.csv"
    core.read_table(SENTIMENT_CSV).tail(EXPLAINED_ROWS).to_csv(rows_file, index=False)

    page = browser.new_page(viewport={"width": 1440, "height": 1200})
    page.set_default_timeout(60_000)
    page.goto(server)
    page.get_by_role("heading", name="Data", level=1).wait_for()
    settle(page)
    open_nav(page, "Explain")
    page.get_by_text("rows of a file", exact=True).click()
    settle(page)
    page.locator('[data-testid="stFileUploaderDropzoneInput"]').first.set_input_files(
        str(rows_file)
    )
    compute = page.get_by_role("button", name="Compute explanations")
    compute.wait_for()  # the page has read the file
    settle(page)
    rows = page.get_by_label("How many (the first N)", exact=True)
    rows.fill(str(EXPLAINED_ROWS))
    rows.press("Enter")
    settle(page)
    expect(
        page.get_by_text(re.compile(rf"^{EXPLAINED_ROWS} rows \(the first rows of"))
    ).to_be_visible()
    idle = _new_tab_render_s(browser, server)
    print(f"\nnew tab before the explanation: Data page shown in {idle:.2f} s", flush=True)
    # Before the click the page says how long it will take (or that it is timing a few rows).
    estimate = page.get_by_text(re.compile("^(Computing takes|Timing a few rows)"))
    expect(estimate).to_be_visible(timeout=60_000)
    compute.click()
    # The bar of this job (a speed check's bar can show beside it while it waits in the queue).
    progress = page.locator('[data-testid="stProgress"]').filter(
        has_text=f"of {EXPLAINED_ROWS} rows"
    )
    running = progress.filter(has_text=re.compile(rf"[1-9]\d?% of {EXPLAINED_ROWS} rows .*left"))
    expect(running.first).to_be_visible(timeout=180_000)

    rendered = _new_tab_render_s(browser, server)
    # Still computing (the bar is gone once it finished): the time was taken under its load.
    during = progress.first.inner_text(timeout=1000) if progress.count() else "finished"
    print(
        f"\nnew tab: Data page shown in {rendered:.2f} s while the explanation ran "
        f"({during.strip()}); {idle:.2f} s before it started (target {RENDER_TARGET_S} s)",
        flush=True,
    )
    assert re.search(rf"\d+% of {EXPLAINED_ROWS} rows", during), during
    # The 2 s target is a benchmark figure (printed above, recorded in docs/benchmarks.md: 1.83 s
    # on a quiet machine). Asserted is what a server busy with the explanation would miss by far
    # (a tab waited minutes when explanations ran in it), with room for a shared CI machine.
    assert rendered < max(HANG_BOUND_S, 3 * idle), (rendered, idle)

    # Cancel what is left (on a fast machine it may have finished meanwhile: then the charts).
    cancel = page.get_by_role("button", name="Cancel")
    if cancel.count():
        cancel.click()
    ended = page.get_by_text("The explanation was cancelled.").or_(
        page.get_by_role("heading", name="Global importance")
    )
    ended.first.wait_for(timeout=120_000)
    assert not page.locator('[data-testid="stException"]').count()
    page.close()
