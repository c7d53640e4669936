"""Faults never lose work: a killed worker keeps its best checkpoint, a full disk keeps the last
good files, out of memory names the fix, concurrent sessions get their own runs."""

from __future__ import annotations

import errno
import hashlib
import os
import signal
import subprocess
import sys
import threading
import time

import pytest
import torch

from core.runs import checkpoint, worker
from core.runs import folder as runs
from core.runs.jobs import JobManager
from core.runs.status import read_status
from core.serving.predict import score_file
from core.training.estimator import FineTuner

pytestmark = pytest.mark.timeout(240)


def _wait_for(predicate, timeout: float = 90.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"condition not met within {timeout} s")


def _fingerprint(folder) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _long(tiny_config):
    return tiny_config("credit_risk", epochs=500, patience=500)


@pytest.fixture
def finished(runs_dir, credit_df, tiny_config):
    """An earlier succeeded run whose files must survive every fault."""
    run_dir = runs.create_run(runs_dir, tiny_config("credit_risk", max_steps=2), credit_df)
    assert worker.execute(run_dir) == "succeeded"
    assert not (
        run_dir / checkpoint.CHECKPOINT
    ).exists()  # dropped once model/ holds the same weights
    return run_dir, _fingerprint(run_dir)


def test_sigkill_mid_run_keeps_the_best_checkpoint(finished, runs_dir, credit_df, tiny_config):
    earlier, before = finished
    jobs = JobManager(runs_dir, max_concurrent=1)
    try:
        run_id = jobs.submit(_long(tiny_config), credit_df)
        run_dir = runs_dir / run_id
        _wait_for(lambda: (run_dir / checkpoint.CHECKPOINT / "checkpoint.json").is_file())
        os.kill(read_status(run_dir)["pid"], signal.SIGKILL)
        snapshot = jobs.wait(run_id, timeout=60)
    finally:
        jobs.shutdown()
    assert snapshot.state == "failed" and "killed" in snapshot.message
    assert "best checkpoint (epoch" in snapshot.message
    predictions, _ = score_file(run_dir / checkpoint.CHECKPOINT, credit_df.head(5))
    assert len(predictions) == 5 and predictions["prob_bad"].between(0, 1).all()
    assert _fingerprint(earlier) == before


def test_killed_with_the_app_is_interrupted_at_next_start(runs_dir, credit_df, tiny_config):
    run_dir = runs.create_run(runs_dir, _long(tiny_config), credit_df)
    process = subprocess.Popen(
        [sys.executable, "-m", "core.runs.worker", str(run_dir)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_for(lambda: (run_dir / checkpoint.CHECKPOINT / "checkpoint.json").is_file())
    finally:
        process.kill()
        process.wait()
    status = read_status(run_dir)  # what the next start of the app sees
    assert status["state"] == "interrupted"
    assert "best checkpoint (epoch" in status["message"] and "fintune predict" in status["message"]
    epoch = checkpoint.read_checkpoint(run_dir)["epoch"]
    assert epoch >= 1
    tuner = FineTuner.load(run_dir / checkpoint.CHECKPOINT / "model")
    assert tuner.predict_proba(credit_df.head(3)).shape == (3, 2)


def _disk_fills_after(monkeypatch, good_saves: int) -> list[int]:
    """FineTuner.save works ``good_saves`` times, then fails as on a full disk."""
    calls = []
    original = FineTuner.save

    def save(self, folder):
        calls.append(1)
        if len(calls) > good_saves:
            (folder / "partial.bin").parent.mkdir(parents=True, exist_ok=True)
            (folder / "partial.bin").write_bytes(b"half a file")
            raise OSError(errno.ENOSPC, "No space left on device", str(folder))
        return original(self, folder)

    monkeypatch.setattr(FineTuner, "save", save)
    return calls


def test_full_disk_keeps_the_last_good_checkpoint_and_says_so(
    finished, runs_dir, credit_df, tiny_config, monkeypatch
):
    earlier, before = finished
    calls = _disk_fills_after(monkeypatch, good_saves=1)
    # Epoch-wise improving validation is likely but not certain: allow a few epochs.
    run_dir = runs.create_run(runs_dir, tiny_config("credit_risk", epochs=4, patience=4), credit_df)
    assert worker.execute(run_dir) == "failed"
    status = read_status(run_dir)
    assert status["kind"] == "disk_full"
    assert "The disk is full" in status["message"] and "free space" in status["message"]
    assert "checkpoint" in status["message"] and len(calls) >= 2
    assert not (run_dir / "model").exists()  # the half-written model never became model/
    assert not [
        p
        for p in run_dir.iterdir()
        if p.name.startswith(".model-") or p.name.startswith(".checkpoint-")
    ]
    tuner = FineTuner.load(
        run_dir / checkpoint.CHECKPOINT / "model"
    )  # epoch 1's checkpoint is whole
    assert tuner.predict_proba(credit_df.head(2)).shape == (2, 2)
    assert _fingerprint(earlier) == before


def test_a_failed_checkpoint_does_not_stop_training(runs_dir, credit_df, tiny_config, monkeypatch):
    original = checkpoint.write_checkpoint

    def failing(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpoint, "write_checkpoint", failing)
    run_dir = runs.create_run(runs_dir, tiny_config("credit_risk", epochs=2), credit_df)
    assert worker.execute(run_dir) == "succeeded"
    warnings = [e for e in runs.read_history(run_dir) if e["type"] == "warning"]
    assert warnings and "not written" in warnings[0]["message"]
    monkeypatch.setattr(checkpoint, "write_checkpoint", original)


def test_out_of_memory_names_a_smaller_batch(runs_dir, credit_df, tiny_config, monkeypatch):
    import core.training.loop

    class OutOfMemory(torch.nn.Module):
        def forward(self, *args):
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(core.training.loop, "_loss_fn", lambda task, weights, config: OutOfMemory())
    run_dir = runs.create_run(runs_dir, tiny_config("credit_risk", batch_size=16), credit_df)
    assert worker.execute(run_dir) == "failed"
    status = read_status(run_dir)
    assert status["kind"] == "out_of_memory" and "try batch size 8" in status["message"]


def test_sessions_starting_runs_at_once_each_get_theirs(finished, runs_dir, credit_df, tiny_config):
    earlier, before = finished
    jobs = JobManager(runs_dir, max_concurrent=1)
    ids, errors = [], []
    start = threading.Barrier(4)

    def session():
        try:
            start.wait()
            ids.append(jobs.submit(tiny_config("credit_risk", max_steps=2), credit_df))
        except Exception as exc:  # noqa: BLE001 - the test reports any failure
            errors.append(exc)

    threads = [threading.Thread(target=session) for _ in range(4)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors and len(set(ids)) == 4
        states = [jobs.wait(run_id, timeout=180).state for run_id in ids]
    finally:
        jobs.shutdown()
    assert states == ["succeeded"] * 4
    assert _fingerprint(earlier) == before
