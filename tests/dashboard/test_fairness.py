"""Fairness on the dashboard: the Results page's Fairness tab and the Data page's warning."""

import os
import shutil
from pathlib import Path

import pytest
from apptest_helpers import open_page, texts
from conftest import app_over

PROTECTED = ["personal_status_sex", "age_years", "foreign_worker"]  # in the credit sample


@pytest.fixture
def own_run_app(trained_runs, tmp_path, monkeypatch):
    """The trained run in a runs folder of this test's own."""
    folder = tmp_path / "runs"
    shutil.copytree(trained_runs, folder)
    yield from app_over(folder, monkeypatch)


def _run_id(at) -> str:
    """The id of the one finished run in the app's runs folder."""
    folder = Path(os.environ["FINTUNE_RUNS_DIR"])
    return next(p.name for p in folder.iterdir() if (p / "metrics.json").exists())


def test_fairness_tab_groups_by_the_protected_inputs(trained_app):
    at = open_page(trained_app, "results")
    assert not at.exception
    assert "Fairness" in [t.label for t in at.tabs]
    run_id = _run_id(at)
    assert at.multiselect(key=f"results.fairness.by.{run_id}").value == PROTECTED
    tables = [d.value for d in at.dataframe]
    groups = [t for t in tables if "approval rate" in t.columns]
    assert len(groups) == len(PROTECTED)
    assert {"ROC AUC", "true positive rate", "false positive rate", "bad (positives)"} <= set(
        groups[0].columns
    )
    assert "[" in groups[0]["approval rate"].iloc[0]  # with its interval
    assert any("approval ratio" in t.columns for t in tables)
    assert any("p (shuffled groups)" in t.columns for t in tables)
    assert "age_years is cut in 4 bands" in texts(at.caption)
    assert {f"Retrain without {c}" for c in PROTECTED} <= {b.label for b in at.button}


def test_grouping_by_another_column_and_by_nothing(trained_app):
    at = open_page(trained_app, "results")
    key = f"results.fairness.by.{_run_id(at)}"
    at.multiselect(key=key).set_value(["housing"]).run()
    assert not at.exception
    assert "housing" in texts(at.subheader)
    at.multiselect(key=key).set_value([]).run()
    assert not at.exception
    assert "Choose columns to compare" in texts(at.info)


def test_retrain_without_queues_a_run_and_points_compare_at_both(own_run_app, monkeypatch):
    import core
    from dashboard import state

    asked = []

    def fake(jobs, run_dir, columns):
        asked.append((run_dir.name, list(columns)))
        return "20990101-000000-abcdef"

    monkeypatch.setattr(core, "retrain_without", fake, raising=False)
    at = open_page(own_run_app, "results")
    run_id = _run_id(at)
    at.button(key=f"results.fairness.retrain.{run_id}.age_years").click().run()
    assert not at.exception
    assert asked == [(run_id, ["age_years"])]
    assert at.session_state[state.COMPARE_RUNS] == [run_id, "20990101-000000-abcdef"]
    assert at.session_state[state.CURRENT_RUN] == "20990101-000000-abcdef"
    assert "Queued run 20990101-000000-abcdef (without age_years)" in texts(at.success)


def test_data_page_warns_of_protected_inputs_and_leaves_them_out(app):
    app.run()
    assert not app.exception
    warning = next(w.value for w in app.warning if "protected attribute" in w.value)
    assert all(f"`{c}`" in warning for c in PROTECTED)
    app.button(key="data.leave_out_protected").click().run()
    assert not app.exception
    roles = app.session_state["data.roles"]
    assert all(roles.get(c) == "ignore" for c in PROTECTED)
    assert "protected attribute" not in texts(app.warning)
