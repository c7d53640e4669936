"""Explanation jobs: explain_rows in the explainer process, with a visible queue, progress, cancel,
typed failures, a replaced process after a crash, results as files without pickle, and a measured
speed; a registry that reuses results."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest

from core.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from core.errors import DataError, FinTuneError
from core.explain.attributions import explain_rows, explain_tokens
from core.explain.jobs import ExplainerError, ExplainJobs
from core.explain.results import META_FILE, VALUES_FILE, read_explanation, write_explanation
from core.explain.speed import fit
from core.runs import folder as runs
from core.runs.status import read_status
from core.runs.worker import execute
from tests.conftest import sentiment_table

pytestmark = pytest.mark.timeout(300)

LONG = 40  # copies of the test rows in a job long enough to be caught running


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


@pytest.fixture(scope="module")
def jobs():
    """One registry (and explainer process) for the module, as a dashboard holds one."""
    registry = ExplainJobs(warm_up=False)
    yield registry
    registry.shutdown()


def _long_rows(text_run) -> pd.DataFrame:
    rows = runs.test_rows(text_run)
    return pd.concat([rows] * LONG)


def _wait_running(job, timeout: float = 120):
    """Wait until ``job`` has done its first chunk of rows (so it is surely in the explainer)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        snap = job.snapshot()
        if snap.finished or (snap.state == "running" and snap.fraction > 0):
            return snap
        time.sleep(0.05)
    pytest.fail(f"the job did not start: {job.snapshot()}")


def test_a_job_runs_in_the_explainer_and_equals_explain_rows(jobs, text_run):
    rows = runs.test_rows(text_run, 4)
    job = jobs.start("k", text_run, rows)
    snap = job.wait(timeout=120)
    assert snap.state == "succeeded" and snap.fraction == 1.0 and snap.finished, snap.error
    assert snap.pid is not None and snap.pid != os.getpid() and snap.pid == jobs.worker_pid
    got, expected = snap.explanation, explain_rows(text_run, rows)
    np.testing.assert_allclose(got.values, expected.values, atol=1e-6)
    np.testing.assert_allclose(got.base_values, expected.base_values, atol=1e-6)
    assert got.feature_names == expected.feature_names
    assert list(got.instance_names) == list(rows.index) == list(expected.instance_names)
    assert (got.data == expected.data).all() and got.output_names == expected.output_names
    assert got.background == expected.background
    assert got.stats.model_rows == expected.stats.model_rows
    assert not list(jobs.folder.iterdir())  # the rows and the results are not left behind
    assert jobs.start("k", text_run, rows) is job and jobs.get("k") is job and jobs.jobs() == [job]
    assert jobs.start("other", text_run, rows.head(2)) is not job


def test_the_queue_shows_places_and_cancels_queued_and_running_jobs(jobs, text_run):
    rows = runs.test_rows(text_run)
    first = jobs.start("first", text_run, _long_rows(text_run))
    second = jobs.start("second", text_run, rows.head(3))
    third = jobs.start("third", text_run, rows.head(2))
    _wait_running(first)
    assert (second.snapshot().position, third.snapshot().position) == (1, 2)
    assert second.snapshot().after == f"{first.label} (computing now)"
    assert third.snapshot().after == second.label == f"3 rows of {text_run.name}"
    # Only the files of the job computing now are there, and none is a pickle.
    names = {p.name for p in jobs.folder.rglob("*") if p.is_file()}
    assert names == {"rows.parquet"}

    second.cancel()  # queued: dropped at once
    assert second.snapshot().state == "cancelled" and third.snapshot().position == 1
    running = first.snapshot()
    assert running.state == "running" and running.rows_per_s > 0 and running.eta_s is not None
    first.cancel()  # running: stops before its next chunk
    assert first.wait(timeout=60).state == "cancelled"
    assert 0 < first.snapshot().fraction < 1
    assert third.wait(timeout=120).state == "succeeded"
    assert jobs.start("second", text_run, rows.head(3)) is not second  # a cancelled job is replaced


def test_typed_failures_end_up_in_the_snapshot(jobs, text_run):
    failed = jobs.start("bad", text_run, pd.DataFrame({"other": [1]})).wait(timeout=60)
    assert failed.state == "failed" and isinstance(failed.error, DataError)
    assert "headline" in str(failed.error)  # names the missing column
    with pytest.raises(DataError, match="exactly one"):
        jobs.tokens("two", text_run, runs.test_rows(text_run, 2), "headline")


def test_a_killed_explainer_fails_its_job_clearly_and_the_next_job_gets_a_new_one(jobs, text_run):
    job = jobs.start("killed", text_run, _long_rows(text_run))
    pid = _wait_running(job).pid
    os.kill(pid, signal.SIGKILL)
    snap = job.wait(timeout=60)
    assert snap.state == "failed" and isinstance(snap.error, ExplainerError), snap
    assert isinstance(snap.error, FinTuneError)  # the page shows its message
    assert "killed (SIGKILL" in str(snap.error) and "next explanation" in str(snap.error)
    after = jobs.start("after", text_run, runs.test_rows(text_run, 2)).wait(timeout=120)
    assert after.state == "succeeded" and after.pid not in (None, pid), after.error


def test_token_explanations_are_computed_once_per_key_in_the_explainer(jobs, text_run):
    row = runs.test_rows(text_run, 1)
    first = jobs.tokens("t", text_run, row, "headline")
    assert jobs.tokens("t", text_run, row, "headline") is first
    expected = explain_tokens(text_run, row, "headline")
    assert list(first.data[0]) == list(expected.data[0])
    np.testing.assert_allclose(first.values[0], expected.values[0], atol=1e-6)
    np.testing.assert_allclose(
        np.reshape(first.base_values, -1), np.reshape(expected.base_values, -1), atol=1e-6
    )
    assert first.output_names == expected.output_names and first.stats.backbone_passes > 0


def test_the_speed_is_measured_in_the_explainer_then_on_real_jobs(text_run):
    jobs = ExplainJobs(warm_up=False)  # one that has not explained this run yet
    try:
        deadline = time.monotonic() + 120
        while (speed := jobs.speed(text_run)) is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert speed is not None and speed.basis.startswith("a timed check of"), speed
        assert speed.seconds(200) >= speed.seconds(1) > 0
        rows = runs.test_rows(text_run)
        assert jobs.start("speed", text_run, rows).wait(timeout=120).state == "succeeded"
        measured = jobs.speed(text_run)
        assert measured.basis.startswith(f"this run's last explanation here ({len(rows)} rows")
        assert measured.seconds(len(rows)) > 0 and len(measured.points) == len(speed.points) + 1
    finally:
        jobs.shutdown()


def test_speed_is_a_line_through_the_timings():
    speed = fit([(1, 0.3), (16, 0.45)], "check")
    assert speed.fixed_s == pytest.approx(0.29) and speed.per_row_s == pytest.approx(0.01)
    assert speed.seconds(200) == pytest.approx(2.29)
    assert fit([(1, 0.5), (16, 0.4)], "noise").per_row_s == 0.0  # never negative
    assert fit([(4, 2.0)], "one size").seconds(8) == pytest.approx(4.0)
    assert fit([], "nothing").seconds(10) is None


def test_results_travel_as_arrays_and_json_without_pickle(tmp_path, text_run):
    rows = runs.test_rows(text_run, 3)
    explanation = explain_rows(text_run, rows)
    write_explanation(explanation, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([META_FILE, VALUES_FILE])
    with np.load(tmp_path / VALUES_FILE, allow_pickle=False) as arrays:
        assert {arrays[name].dtype for name in arrays.files} == {np.dtype("float64")}
    meta = json.loads((tmp_path / META_FILE).read_text())
    assert meta["feature_names"] == ["headline"]
    assert meta["background"]["description"] == explanation.background.description
    text = (tmp_path / META_FILE).read_text()
    assert not any(value in text for value in rows["headline"])  # the rows' texts stay home
    again = read_explanation(tmp_path, rows)
    np.testing.assert_array_equal(again.values, explanation.values)
    assert again.stats == explanation.stats and again.background == explanation.background


def test_the_explainer_ends_when_the_app_is_killed(tmp_path):
    script = (
        "import sys, time\n"
        "from core.explain.jobs import ExplainJobs\n"
        "jobs = ExplainJobs()\n"
        "print(jobs.worker_pid, flush=True)\n"
        "time.sleep(600)\n"
    )
    app = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, cwd=os.getcwd()
    )
    try:
        worker = int(app.stdout.readline())
        os.kill(app.pid, signal.SIGKILL)  # no exit handler runs
        app.wait()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and _alive(worker):
            time.sleep(0.2)
        assert not _alive(worker), "the explainer outlived the app"
    finally:
        if app.poll() is None:
            app.kill()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie waiting for init to reap it has ended too.
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().split(")")[-1].split()[0] != "Z"
