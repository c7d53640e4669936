"""The Compare page: two real runs side by side with DeLong, paired differences and config
changes."""

import shutil

import pytest
from apptest_helpers import open_page, texts
from conftest import app_over, train_credit_run


@pytest.fixture(scope="module")
def two_runs(trained_runs, tmp_path_factory):
    """The shared tiny run plus a second one with another freeze depth, on the same split."""
    folder = tmp_path_factory.mktemp("compare") / "runs"
    shutil.copytree(trained_runs, folder)
    train_credit_run(folder, freeze_depth=5, max_steps=3)
    return folder


@pytest.fixture
def compare_app(two_runs, monkeypatch):
    yield from app_over(two_runs, monkeypatch)


def test_two_runs_compared_on_the_same_rows(compare_app):
    at = open_page(compare_app, "compare")
    assert not at.exception
    headers = texts(at.subheader)
    assert (
        "ROC AUC: DeLong test" in headers
        and "Differences with 95% intervals (paired bootstrap)" in headers
    )
    metrics, delong, differences, settings = (d.value for d in at.dataframe[:4])
    assert len(metrics) == 2 and "KS ↑" in metrics.columns
    assert len(delong) == 1 and 0.0 <= float(delong["p (DeLong)"].iloc[0]) <= 1.0
    assert "KS ↑" in set(differences["metric"])
    assert "model.freeze_depth" in set(settings["setting"])
    assert len(at.get("plotly_chart")) == 2


def test_one_run_is_not_enough(trained_app):
    open_page(trained_app, "compare")
    assert not trained_app.exception
    assert "Comparing needs two finished runs" in texts(trained_app.info)
