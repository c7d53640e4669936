"""The inference thread behind ``fintune serve``: micro-batches across requests, turns, cancelling.

The worker is model-agnostic: here its forward pass is a small numpy function (output = the row's
numeric inputs times two), so each test controls exactly when a step runs.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from core.serving.batching import CallJob, InferenceWorker, Job, QueueFull, WorkerClosed

pytestmark = pytest.mark.timeout(60)


class Model:
    """A forward pass that records its steps and, while ``hold`` is clear, waits before scoring."""

    def __init__(self):
        self.steps: list[list[float]] = []
        self.hold = threading.Event()
        self.hold.set()
        self.entered = threading.Event()
        self.fail = False

    def __call__(self, input_ids: list[list[int]], numeric: np.ndarray) -> np.ndarray:
        self.entered.set()
        assert self.hold.wait(10)
        if self.fail:
            raise RuntimeError("out of memory")
        self.steps.append(list(numeric[:, 0]))
        return numeric * 2


def job(values, *, deadline: float | None = None, lengths=None) -> Job:
    values = np.asarray(values, dtype=np.float32)
    lengths = lengths or [3] * len(values)
    return Job(
        [[1] * n for n in lengths],
        values[:, None],
        deadline=time.monotonic() + 30 if deadline is None else deadline,
    )


def test_queued_requests_share_one_forward_pass_and_get_their_own_rows():
    model = Model()
    worker = InferenceWorker(model, batch_size=64)
    model.hold.clear()
    first = worker.submit(job([1.0]))
    assert model.entered.wait(10)  # the thread is busy with the first request
    others = [worker.submit(job([10.0 * k + i for i in range(3)])) for k in range(1, 5)]
    model.hold.set()
    np.testing.assert_array_equal(first.future.result(10)[:, 0], [2.0])
    for k, other in enumerate(others, start=1):
        want = [2 * (10.0 * k + i) for i in range(3)]
        np.testing.assert_array_equal(other.future.result(10)[:, 0], want)
    assert [len(step) for step in model.steps] == [1, 12]  # the four waiting requests: one pass
    worker.close()


def test_a_big_request_takes_turns_with_small_ones():
    model = Model()
    worker = InferenceWorker(model, batch_size=4)
    model.hold.clear()
    big = worker.submit(job(np.arange(12.0)))
    assert model.entered.wait(10)
    small = worker.submit(job([100.0]))
    model.hold.set()
    np.testing.assert_array_equal(small.future.result(10)[:, 0], [200.0])
    np.testing.assert_array_equal(big.future.result(10)[:, 0], np.arange(12.0) * 2)
    assert model.steps[1][0] == 100.0  # the small request went in the second pass, not the last
    assert sorted(v for step in model.steps for v in step) == sorted([*np.arange(12.0), 100.0])
    worker.close()


def test_rows_are_scored_shortest_first_and_returned_in_order():
    model = Model()
    worker = InferenceWorker(model, batch_size=2)
    done = worker.submit(job([1.0, 2.0, 3.0, 4.0], lengths=[9, 1, 5, 2]))
    np.testing.assert_array_equal(done.future.result(10)[:, 0], [2.0, 4.0, 6.0, 8.0])
    assert model.steps == [[2.0, 4.0], [3.0, 1.0]]  # lengths 1, 2, then 5, 9
    worker.close()


def test_a_cancelled_or_expired_job_is_dropped_between_steps():
    model = Model()
    worker = InferenceWorker(model, batch_size=4)
    model.hold.clear()
    cancelled = worker.submit(job(np.arange(40.0)))
    assert model.entered.wait(10)
    expired = worker.submit(job([7.0, 8.0], deadline=time.monotonic() - 1))
    cancelled.cancel()  # the client went away during the first step
    model.hold.set()
    after = worker.submit(job([5.0]))
    np.testing.assert_array_equal(after.future.result(10)[:, 0], [10.0])
    assert len(model.steps) == 2 and worker.rows_scored == 5
    assert worker.rows_dropped == 36 + 2 and worker.queued_rows == 0
    assert not cancelled.future.done() and not expired.future.done()  # their waiters answer
    worker.close()


def test_a_failing_step_fails_its_jobs_and_the_thread_goes_on():
    model = Model()
    worker = InferenceWorker(model, batch_size=8)
    model.fail = True
    failed = worker.submit(job([1.0, 2.0]))
    with pytest.raises(RuntimeError, match="out of memory"):
        failed.future.result(10)
    model.fail = False
    np.testing.assert_array_equal(worker.submit(job([3.0])).future.result(10)[:, 0], [6.0])
    worker.close()


def test_call_jobs_run_alone_and_can_be_stopped():
    model = Model()
    worker = InferenceWorker(model, batch_size=8)
    seen = []
    call = worker.submit(
        CallJob(
            lambda should_stop: seen.append(should_stop()) or "explained",
            deadline=time.monotonic() + 30,
        )
    )
    assert call.future.result(10) == "explained" and seen == [False]
    late = CallJob(lambda should_stop: should_stop(), deadline=time.monotonic() - 1)
    assert late.should_stop()
    worker.close()


def test_a_full_queue_and_a_closed_worker_refuse_work():
    model = Model()
    worker = InferenceWorker(model, batch_size=2, max_queued_rows=10)
    model.hold.clear()
    worker.submit(job([0.0] * 2))
    assert model.entered.wait(10)
    queued = worker.submit(job([1.0] * 8))
    with pytest.raises(QueueFull, match="8 rows are already queued"):
        worker.submit(job([2.0] * 3))
    model.hold.set()
    queued.future.result(10)
    model.hold.clear()
    model.entered.clear()
    worker.submit(job([0.0]))
    assert model.entered.wait(10)
    waiting = worker.submit(job([3.0]))
    closer = threading.Thread(target=worker.close)
    closer.start()
    time.sleep(0.05)
    model.hold.set()
    closer.join(10)
    with pytest.raises(WorkerClosed):
        waiting.future.result(10)
    with pytest.raises(WorkerClosed):
        worker.submit(job([4.0]))
