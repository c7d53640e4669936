"""Background jobs: worker processes supervised by threads, with queueing, cancel and crashes.

Each worker process starts in about 5 s (torch + transformers imports); tiny backbones and
max_steps keep the training itself under a second.
"""

from __future__ import annotations

import hashlib
import os
import signal
import time

import pytest

from core.runs import folder as runs
from core.runs.files import read_json
from core.runs.jobs import JobManager
from core.runs.status import read_status, write_status

pytestmark = pytest.mark.timeout(180)


def _wait_for(predicate, timeout: float = 60.0, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout} s")


def _pid_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def _fingerprint(folder) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture
def manager(runs_dir):
    jobs = JobManager(runs_dir, max_concurrent=1)
    yield jobs
    jobs.shutdown()
    for run_id in jobs.active():  # let cancelled workers exit before tmp_path goes away
        jobs.wait(run_id, timeout=30)


def _long(tiny_config):
    """A job that trains until cancelled (many epochs, no early stop)."""
    return tiny_config("credit_risk", epochs=500, patience=500)


def test_submit_runs_to_success(manager, runs_dir, credit_df, tiny_config):
    run_id = manager.submit(tiny_config("credit_risk", max_steps=3), credit_df, source="credit.csv")
    snap = manager.wait(run_id, timeout=120)
    assert snap.state == "succeeded", snap.message
    assert snap.finished and snap.progress == 1.0
    assert snap.step == 3 and snap.total_steps == 3 and len(snap.epochs) == 1
    run_dir = runs_dir / run_id
    for name in (
        "config.json",
        "status.json",
        "history.jsonl",
        "metrics.json",
        "predictions.csv",
        "model/model.safetensors",
    ):
        assert (run_dir / name).is_file(), name
    metrics = runs.read_metrics(run_dir)
    assert metrics["task"] == "binary" and set(metrics["test"]) >= {
        "roc_auc",
        "accuracy",
        "f1",
        "log_loss",
    }
    assert manager.active() == []
    assert [s.run_id for s in manager.list_runs()] == [run_id]


def test_cancel_a_running_job(manager, credit_df, tiny_config):
    run_id = manager.submit(_long(tiny_config), credit_df)
    _wait_for(lambda: manager.snapshot(run_id).step > 0, timeout=90)
    pid = read_status(manager.runs_dir / run_id)["pid"]
    asked = time.monotonic()
    assert manager.cancel(run_id)
    snap = manager.wait(run_id, timeout=30)
    assert snap.state == "cancelled"
    assert time.monotonic() - asked < 5.0
    assert _wait_for(lambda: _pid_gone(pid), timeout=5)
    assert not manager.cancel(run_id)  # already finished


def test_jobs_beyond_the_limit_stay_queued(manager, credit_df, tiny_config):
    first = manager.submit(_long(tiny_config), credit_df)
    second = manager.submit(tiny_config("credit_risk", max_steps=2), credit_df)
    _wait_for(lambda: manager.snapshot(first).step > 0, timeout=90)
    time.sleep(1.0)
    assert manager.snapshot(second).state == "queued"
    assert manager.active() == [first, second]
    manager.cancel(first)
    assert manager.wait(first, timeout=30).state == "cancelled"
    assert manager.wait(second, timeout=120).state == "succeeded"
    first_status = read_status(manager.runs_dir / first)
    second_status = read_status(manager.runs_dir / second)
    assert second_status["started"] >= first_status["finished"]


def test_cancel_a_queued_job(manager, credit_df, tiny_config):
    first = manager.submit(_long(tiny_config), credit_df)
    second = manager.submit(tiny_config("credit_risk", max_steps=2), credit_df)
    assert manager.cancel(second)
    assert manager.snapshot(second).state == "cancelled"
    manager.cancel(first)
    assert manager.wait(first, timeout=60).state == "cancelled"
    assert not (manager.runs_dir / second / "history.jsonl").exists()  # it never ran


def test_bad_backbone_fails_with_its_kind_and_message(manager, credit_df, tiny_config):
    config = tiny_config("credit_risk", model={"backbone": "no-such-org/no-such-model"})
    snap = manager.wait(manager.submit(config, credit_df), timeout=120)
    assert snap.state == "failed"
    assert snap.kind == "backbone_error"
    assert "'no-such-org/no-such-model'" in snap.message and "offline" in snap.message


def test_killed_worker_fails_and_leaves_other_runs_alone(manager, credit_df, tiny_config):
    done = manager.submit(tiny_config("credit_risk", max_steps=2), credit_df)
    assert manager.wait(done, timeout=120).state == "succeeded"
    before = _fingerprint(manager.runs_dir / done)

    victim = manager.submit(_long(tiny_config), credit_df)
    _wait_for(lambda: manager.snapshot(victim).step > 0, timeout=90)
    pid = read_status(manager.runs_dir / victim)["pid"]
    os.kill(pid, signal.SIGKILL)
    snap = manager.wait(victim, timeout=30)
    assert snap.state in ("failed", "interrupted")
    assert "killed" in snap.message
    assert _fingerprint(manager.runs_dir / done) == before
    assert {s.run_id: s.state for s in manager.list_runs()}[done] == "succeeded"


def test_a_new_manager_settles_runs_of_a_dead_app(runs_dir, credit_df, tiny_config):
    run_dir = runs.create_run(runs_dir, tiny_config("credit_risk"), credit_df)
    write_status(run_dir, "running", pid=2**22 + 12345)  # no such process
    jobs = JobManager(runs_dir)
    try:
        assert read_json(run_dir / "status.json")["state"] == "interrupted"
    finally:
        jobs.shutdown()


def test_runs_start_in_the_warm_spare_worker(manager, runs_dir, credit_df, tiny_config):
    """The manager keeps one imported worker ready; a run is handed to it, and a new spare is
    started."""
    spare = manager._spare
    assert spare is not None and spare.poll() is None
    run_id = manager.submit(tiny_config("credit_risk", max_steps=2), credit_df, source="credit.csv")
    assert manager.wait(run_id, timeout=120).state == "succeeded"
    run_dir = runs.run_path(runs_dir, run_id)
    assert read_status(run_dir)["pid"] == spare.pid
    assert (run_dir / "worker.log").exists()
    assert manager._spare is not None and manager._spare.pid != spare.pid


def test_shutdown_ends_the_spare_worker(runs_dir):
    jobs = JobManager(runs_dir)
    spare = jobs._spare
    jobs.shutdown()
    assert spare.wait(timeout=60) == 0


def _gone_or_zombie(pid: int) -> bool:
    """Ended: no such process, or one that ended and waits for a parent to reap it (an orphan
    is re-parented, and a container's first process may never reap it)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def test_a_worker_stops_when_the_app_that_started_it_is_gone(runs_dir, credit_df, tiny_config):
    import subprocess
    import sys
    from pathlib import Path

    run_dir = runs.create_run(runs_dir, _long(tiny_config), credit_df)
    # A stand-in for the dashboard: it starts the worker and exits at once (as a dashboard
    # stopped with SIGTERM does), leaving the worker in its own session.
    starter = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from core.runs.process import start_worker; "
            "print(start_worker(sys.argv[1]).pid)",
            str(run_dir),
        ],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    pid = int(starter.stdout)
    final = _wait_for(
        lambda: read_status(run_dir)["state"] in ("cancelled", "failed", "succeeded"), timeout=120
    )
    assert final
    status = read_status(run_dir)
    assert status["state"] == "cancelled", status
    assert "The app that started this run stopped" in status["message"]
    assert _wait_for(lambda: _gone_or_zombie(pid), timeout=20)


def test_the_snapshot_tells_the_loop_from_the_phases_around_it():
    from core.runs.jobs import JobSnapshot

    step = [{"step": 10, "total_steps": 10}]
    loop = JobSnapshot("r", "running", phase="Training", steps=step, started="2026-01-01T00:00:00")
    after = JobSnapshot(
        "r",
        "running",
        phase="Fitting baselines on the same split",
        steps=step,
        started=loop.started,
    )
    assert loop.training and not after.training  # the baselines are not "epoch 4, ETA 0 s"
    done = JobSnapshot(
        "r",
        "succeeded",
        steps=step,
        started="2026-01-01T00:00:00+00:00",
        finished_at="2026-01-01T00:03:05+00:00",
    )
    assert done.wall_s == 185.0  # the report's minutes count in the elapsed time
    assert JobSnapshot("r", "queued").wall_s is None
    assert loop.wall_s > 0  # still running: up to now
