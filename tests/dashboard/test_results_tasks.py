"""Results and Compare for the other tasks: multiclass and regression runs render without error."""

import pytest
from apptest_helpers import open_page, texts
from conftest import app_over


@pytest.fixture(scope="module")
def task_runs(tmp_path_factory, tiny_backbone, make_table):
    """Two tiny regression runs and one multiclass run, trained in-process on the tiny backbone."""
    from core.config import DataConfig, ModelConfig, RunConfig, TrainConfig
    from core.runs import folder as runs
    from core.runs import worker
    from core.runs.status import read_status

    def tiny_config(target, **train):
        return RunConfig(
            data=DataConfig(target=target),
            model=ModelConfig(backbone=tiny_backbone, d_hidden=32, d_numeric=16),
            train=TrainConfig(batch_size=16, head_lr=1e-2, seed=0, **train),
        )

    folder = tmp_path_factory.mktemp("tasks") / "runs"
    for target, table, lr in (
        ("label", "sentiment", 1e-3),
        ("spread_bps", "regression", 1e-3),
        ("spread_bps", "regression", 5e-4),
    ):
        frame = make_table(table)
        run_dir = runs.create_run(folder, tiny_config(target, epochs=1, lr=lr), frame)
        assert worker.execute(run_dir) == "succeeded", read_status(run_dir)
    return folder


@pytest.fixture
def tasks_app(task_runs, monkeypatch):
    yield from app_over(task_runs, monkeypatch)


def test_results_for_regression_and_multiclass(tasks_app):
    at = open_page(tasks_app, "results")
    assert not at.exception
    for run_id in list(at.selectbox(key="results.run").options):
        at.selectbox(key="results.run").select(run_id).run()
        assert not at.exception
        tabs = [t.label for t in at.tabs]
        assert tabs[-3:] == ["Stability", "Training", "Predictions"]
        assert tabs[0] in ("Fit", "Curves")
        scorecard = at.dataframe[0].value
        assert {"Fine-tuned"} < set(scorecard.columns)


def test_compare_two_regression_runs(tasks_app):
    at = open_page(tasks_app, "compare")
    from core import list_runs

    regression = [s.run_id for s in list_runs(_folder()) if s.target == "spread_bps"]
    at.multiselect(key="compare.runs").set_value(regression).run()
    assert not at.exception
    assert "Differences with 95% intervals (paired bootstrap)" in texts(at.subheader)


def _folder():
    import os

    return os.environ["FINTUNE_RUNS_DIR"]
