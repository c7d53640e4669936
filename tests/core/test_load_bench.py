"""bench.load's wait for the job: it fails fast, with the reason, instead of hanging CI."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from bench.load import JobNotReady, still_running, wait_for_step


@dataclass
class _Snapshot:
    step: int
    state: str = "running"
    message: str = ""

    @property
    def finished(self) -> bool:
        return self.state in ("succeeded", "failed", "cancelled", "interrupted")


class _Jobs:
    def __init__(self, *snapshots: _Snapshot):
        self.snapshots = list(snapshots)
        self.cancelled: list[str] = []

    def snapshot(self, run_id: str) -> _Snapshot:
        return self.snapshots.pop(0) if len(self.snapshots) > 1 else self.snapshots[0]

    def cancel(self, run_id: str) -> bool:
        self.cancelled.append(run_id)
        return True


def test_returns_once_the_job_reaches_the_step():
    jobs = _Jobs(_Snapshot(0), _Snapshot(4), _Snapshot(11))
    assert wait_for_step(jobs, "r", 10, timeout_s=60, poll_s=0).step == 11
    assert jobs.cancelled == []


def test_a_failed_job_fails_at_once_with_its_message():
    jobs = _Jobs(_Snapshot(2), _Snapshot(3, "failed", "The loss became nan at step 3"))
    with pytest.raises(JobNotReady, match="ended as failed before step 10: The loss became nan"):
        wait_for_step(jobs, "r", 10, timeout_s=60, poll_s=0)


def test_a_hung_job_is_cancelled_after_the_timeout():
    ticks = iter(range(100))
    jobs = _Jobs(_Snapshot(1))
    with pytest.raises(
        JobNotReady, match=r"did not reach step 10 in 5 s \(state running, step 1\)"
    ):
        wait_for_step(jobs, "r", 10, timeout_s=5, poll_s=0, clock=lambda: next(ticks))
    assert jobs.cancelled == ["r"]


def test_a_job_that_ends_during_a_phase_fails_the_measurement():
    still_running(_Jobs(_Snapshot(50)), "r", "alone (before)")
    with pytest.raises(JobNotReady, match="ended as succeeded during 'alone \\(after\\)'"):
        still_running(_Jobs(_Snapshot(90, "succeeded")), "r", "alone (after)")
