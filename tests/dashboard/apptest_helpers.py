"""Small helpers for the AppTest page tests."""

from __future__ import annotations

from streamlit.testing.v1 import AppTest


def open_page(at: AppTest, page: str) -> AppTest:
    """Switch to ``views/<page>.py`` and run it (after one run that registers the pages)."""
    at.run()
    return at.switch_page(f"views/{page}.py").run()


def texts(elements) -> str:
    """All values of a list of text elements, joined (for `in` checks)."""
    return "\n".join(str(e.value) for e in elements)
