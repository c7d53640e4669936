"""Fixtures for the dashboard tests: a fresh runs folder and clean Streamlit caches per test."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from tests.dashboard.live_server import CHROMIUM_ARGS

ROOT = Path(__file__).resolve().parents[2]
APP = ROOT / "dashboard" / "app.py"
SAMPLES = ROOT / "sample_data"


@pytest.fixture
def runs_dir(tmp_path, monkeypatch) -> Path:
    directory = tmp_path / "runs"
    monkeypatch.setenv("FINTUNE_RUNS_DIR", str(directory))
    return directory


def app_over(runs_folder: Path, monkeypatch):
    """Yield an AppTest of the dashboard over ``runs_folder`` with empty caches; clean up after.

    Clearing st.cache_resource at the end also cancels explanation jobs the pages left running.
    """
    monkeypatch.setenv("FINTUNE_RUNS_DIR", str(runs_folder))
    st.cache_data.clear()
    st.cache_resource.clear()
    yield AppTest.from_file(str(APP), default_timeout=120)
    from dashboard import state

    state.manager().shutdown()
    st.cache_data.clear()
    st.cache_resource.clear()


@pytest.fixture
def app(runs_dir, monkeypatch):
    """An AppTest of the dashboard on the Data page, with empty caches and its own runs folder."""
    yield from app_over(runs_dir, monkeypatch)


def train_credit_run(directory: Path, *, freeze_depth: int, max_steps: int) -> str:
    """Train MiniLM briefly on the credit sample in ``directory`` through the job manager."""
    import core

    jobs = core.JobManager(directory)
    config = core.default_config("credit_risk").replace(
        model={"freeze_depth": freeze_depth}, train={"epochs": 1, "max_steps": max_steps}
    )
    run_id = jobs.submit(
        config, core.read_table(SAMPLES / "credit_risk.csv"), source="credit_risk.csv"
    )
    snapshot = jobs.wait(run_id, timeout=600)
    jobs.shutdown()
    assert snapshot.state == "succeeded", snapshot.message
    return run_id


@pytest.fixture(scope="session")
def trained_runs(tmp_path_factory) -> Path:
    """A runs folder holding one tiny succeeded run on the credit sample (frozen MiniLM, 2
    steps)."""
    directory = tmp_path_factory.mktemp("trained") / "runs"
    train_credit_run(directory, freeze_depth=6, max_steps=2)
    return directory


@pytest.fixture
def trained_app(trained_runs, monkeypatch):
    """An AppTest whose runs folder holds the tiny succeeded run."""
    yield from app_over(trained_runs, monkeypatch)


@pytest.fixture(scope="module")
def browser():
    """Debian's chromium driven by Playwright (its own browser download does not work here)."""
    executable = shutil.which("chromium") or shutil.which("chromium-browser")
    if executable is None:
        pytest.fail(
            "chromium is not installed: install Debian's package with `apt-get install chromium` "
            "(Playwright's own browser download does not work here)."
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The dashboard served by `streamlit run` on localhost over a fresh, empty runs folder."""
    from live_server import start_dashboard

    from tests.conftest import stop_process

    runs_dir = tmp_path_factory.mktemp("runs")
    env = dict(os.environ, FINTUNE_RUNS_DIR=str(runs_dir), TOKENIZERS_PARALLELISM="false")
    process, url = start_dashboard(
        runs_dir / "streamlit.log", cwd=ROOT, env=env, address="127.0.0.1"
    )
    yield url
    stop_process(process, timeout=20)
