"""Fixtures for the bad-input corpus: its files, written once a session, and the dashboard."""

from __future__ import annotations

import pytest

from tests.bad_inputs.make_corpus import Case, make_corpus
from tests.dashboard.conftest import app_over


@pytest.fixture(scope="session")
def corpus(tmp_path_factory) -> dict[str, Case]:
    """The hostile files by case name."""
    return {case.name: case for case in make_corpus(tmp_path_factory.mktemp("bad_inputs"))}


@pytest.fixture
def app(tmp_path, monkeypatch):
    """An AppTest of the dashboard on the Data page, with empty caches and its own runs folder."""
    yield from app_over(tmp_path / "runs", monkeypatch)
