"""The dashboard started for real, as a user starts it, for the browser tests."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
APP = ROOT / "dashboard" / "app.py"
# Written to an ignored folder, so a test run never changes tracked files. To refresh the README's
# pictures: FINTUNE_SCREENSHOTS_DIR=docs/screenshots pytest tests/dashboard/test_browser.py
SCREENSHOTS = Path(os.environ.get("FINTUNE_SCREENSHOTS_DIR") or ROOT / "build" / "browser")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_dashboard(log_path: Path, *, cwd: Path, env: dict, address: str | None):
    """``streamlit run dashboard/app.py`` as a user starts it; ``address=None`` leaves it unset.

    Returns the process and the URL once the server answers its health check.
    """
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(APP),
        "--server.port",
        str(port),
        "--server.headless",
        "true",
        "--browser.gatherUsageStats",
        "false",
    ]
    if address is not None:
        command += ["--server.address", address]
    log = open(log_path, "wb")
    process = subprocess.Popen(
        command, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    log.close()  # the child keeps its own handle
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                if response.status == 200:
                    return process, url
        except OSError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"streamlit did not start: {log_path.read_text()[-2000:]}")
        time.sleep(0.5)


def settle(page, *, before_ms: int = 300, after_ms: int = 300) -> None:
    """Wait until Streamlit has finished the script run the last action started (the status
    widget appears a moment after the action, hence the pause before)."""
    page.wait_for_timeout(before_ms)
    page.locator('[data-testid="stStatusWidget"]').wait_for(state="hidden", timeout=120_000)
    if after_ms:
        page.wait_for_timeout(after_ms)


def open_nav(page, title: str, **pauses) -> None:
    """Open a page from the sidebar and wait for its title and its script run."""
    page.locator('[data-testid="stSidebarNav"]').get_by_role("link", name=title).click()
    page.get_by_role("heading", name=title, level=1).wait_for(timeout=60_000)
    settle(page, **pauses)


def shot(page, name: str) -> None:
    """A full-page screenshot, ``SCREENSHOTS/<name>.png``."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def runs_dir_of(tmp_path_factory, url: str) -> Path:
    """The runs folder the `server` fixture gave the dashboard at ``url`` (its log names it)."""
    for log in tmp_path_factory.getbasetemp().glob("runs*/streamlit.log"):
        if f"URL: {url}\n" in log.read_text(errors="replace"):
            return log.parent
    pytest.fail(f"no runs folder of the dashboard at {url}")
