"""Explanation jobs: background explain_rows with progress, cancel, typed failures; a registry that
reuses results."""

from __future__ import annotations

import pandas as pd
import pytest

from core.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from core.errors import DataError
from core.explain.jobs import ExplainJobs
from core.runs import folder as runs
from core.runs.status import read_status
from core.runs.worker import execute
from tests.conftest import sentiment_table

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def text_run(tmp_path_factory, tiny_backbone):
    config = RunConfig(
        data=DataConfig(target="label"),
        model=ModelConfig(backbone=tiny_backbone, d_hidden=32, d_numeric=16),
        train=TrainConfig(epochs=1, batch_size=16, max_steps=2, seed=0),
    )
    run_dir = runs.create_run(
        tmp_path_factory.mktemp("explain_jobs"), config, sentiment_table(), source="test"
    )
    assert execute(run_dir) == "succeeded", read_status(run_dir)
    return run_dir


def test_a_job_reports_progress_and_is_reused_per_key(text_run):
    jobs = ExplainJobs(warm_up=False)
    rows = runs.test_rows(text_run, 4)
    job = jobs.start("k", text_run, rows)
    snap = job.wait(timeout=120)
    assert snap.state == "succeeded" and snap.fraction == 1.0 and snap.finished
    assert snap.explanation.values.shape[0] == 4
    assert list(snap.explanation.instance_names) == list(rows.index)
    assert jobs.start("k", text_run, rows) is job and jobs.get("k") is job and jobs.jobs() == [job]
    assert jobs.start("other", text_run, rows.head(2)) is not job


def test_cancel_and_typed_failures_end_up_in_the_snapshot(text_run):
    jobs = ExplainJobs(warm_up=False)
    rows = runs.test_rows(text_run)
    job = jobs.start("all", text_run, pd.concat([rows] * 20))
    job.cancel()
    assert job.wait(timeout=120).state == "cancelled"
    assert jobs.start("all", text_run, rows.head(2)) is not job  # a cancelled job is replaced

    failed = jobs.start("bad", text_run, pd.DataFrame({"other": [1]})).wait(timeout=60)
    assert failed.state == "failed" and isinstance(failed.error, DataError)
    assert "headline" in str(failed.error)  # names the missing column


def test_token_explanations_are_computed_once_per_key(text_run):
    jobs = ExplainJobs(warm_up=False)
    row = runs.test_rows(text_run, 1)
    first = jobs.tokens("t", text_run, row, "headline")
    assert jobs.tokens("t", text_run, row, "headline") is first
    assert len(first.values[0]) == len(first.data[0])
