"""Pages that need a finished run say so, instead of failing, when there is none."""

import pytest
from apptest_helpers import open_page, texts


@pytest.mark.parametrize("page", ["results", "predict", "explain"])
def test_no_runs_yet_is_explained(app, page):
    open_page(app, page)
    assert not app.exception
    assert "No finished runs yet" in texts(app.info)
