"""One inference thread for a served model: requests queue, the thread scores them in micro-batches.

Scoring in a web server's shared thread pool lets every waiting request hold a pool thread (and,
with torch, an OpenMP thread team of its own that spins on the same cores): ``/health`` and request
parsing starve, and the teams fight over the CPUs. Here one long-lived thread owns the model.

Each step the thread takes up to ``batch_size`` rows from the queued jobs, in turn: a job that still
has rows after its share goes to the back of the queue, so a 10,000-row request is scored in steps
between which small requests get theirs. The rows of a step, whichever requests they come from, go
through the model in one forward pass, and each job gets its slice back. A job's own rows are taken
shortest first (the least padding). A cancelled job (its client went away, or its time budget is
spent) is dropped at the next step; ``call`` jobs (explanations) run alone, in turn.

The thread knows nothing of HTTP: jobs carry a ``concurrent.futures.Future`` that the server awaits.
"""

from __future__ import annotations

import collections
import concurrent.futures
import logging
import threading
import time
from collections.abc import Callable

import numpy as np

logger = logging.getLogger(__name__)

Forward = Callable[[list[list[int]], np.ndarray], np.ndarray]


class QueueFull(Exception):
    """Raised by :meth:`InferenceWorker.submit` when the queue already holds ``max_queued_rows``."""


class WorkerClosed(Exception):
    """The worker was closed (the server is shutting down) before the job ran."""


class Job:
    """Rows to score (token ids and numeric inputs) and the future their outputs arrive in."""

    def __init__(
        self,
        input_ids: list[list[int]],
        numeric: np.ndarray,
        *,
        deadline: float,
        extras: dict[str, np.ndarray] | None = None,
    ):
        self.input_ids = input_ids
        self.numeric = numeric
        # Other per-row inputs of the model (cell ids, the trees' outputs), passed on by name.
        self.extras = extras or {}
        self.deadline = deadline
        self.future: concurrent.futures.Future = concurrent.futures.Future()
        lengths = np.fromiter(map(len, input_ids), dtype=np.int64, count=len(input_ids))
        self.order = np.argsort(lengths, kind="stable")  # shortest first: less padding per step
        self.taken = 0  # rows handed to a step so far
        self.scored = 0
        self.outputs: np.ndarray | None = None
        self.cancelled = False

    def __len__(self) -> int:
        return len(self.input_ids)

    @property
    def left(self) -> int:
        """Rows not yet handed to a step."""
        return len(self) - self.taken

    def cancel(self) -> None:
        """Drop the rows not yet scored (at the worker's next step); safe from any thread."""
        self.cancelled = True

    def expired(self, now: float) -> bool:
        return self.cancelled or now >= self.deadline

    def take(self, n: int) -> np.ndarray:
        positions = self.order[self.taken : self.taken + n]
        self.taken += len(positions)
        return positions

    def store(self, positions: np.ndarray, outputs: np.ndarray) -> None:
        if self.outputs is None:
            self.outputs = np.zeros((len(self), outputs.shape[1]), dtype=np.float32)
        self.outputs[positions] = outputs
        self.scored += len(positions)
        if self.scored == len(self):
            _resolve(self.future, result=self.outputs)


class CallJob:
    """A function run alone on the worker thread: ``fn(should_stop)``, e.g. an explanation."""

    def __init__(self, fn: Callable[[Callable[[], bool]], object], *, deadline: float):
        self.fn = fn
        self.deadline = deadline
        self.future: concurrent.futures.Future = concurrent.futures.Future()
        self.cancelled = False
        self.taken = 0

    def __len__(self) -> int:
        return 0

    left = 0

    def cancel(self) -> None:
        self.cancelled = True

    def expired(self, now: float) -> bool:
        return self.cancelled or now >= self.deadline

    def should_stop(self) -> bool:
        return self.expired(time.monotonic())


def _resolve(
    future: concurrent.futures.Future, *, result=None, error: BaseException | None = None
) -> None:
    """Set a future's outcome unless its waiter already gave up on it."""
    try:
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)
    except concurrent.futures.InvalidStateError:
        pass


class InferenceWorker:
    """A daemon thread scoring queued :class:`Job` s in micro-batches of up to ``batch_size`` rows.

    ``forward(input_ids, numeric) -> outputs`` scores one step's rows (all on this thread).
    ``setup()``, when given, runs once on the thread before the first step (e.g. torch's threads).
    The thread starts with the first job; :meth:`close` stops it and fails what is still queued.
    """

    def __init__(
        self,
        forward: Forward,
        *,
        batch_size: int = 64,
        max_queued_rows: int = 100_000,
        setup: Callable[[], None] | None = None,
        name: str = "fintune-inference",
    ):
        if batch_size < 1 or max_queued_rows < 1:
            raise ValueError("batch_size and max_queued_rows must be at least 1")
        self.forward = forward
        self.batch_size = batch_size
        self.max_queued_rows = max_queued_rows
        self.setup = setup
        self.name = name
        self._queue: collections.deque = collections.deque()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closed = False
        self.queued_rows = 0  # rows waiting for a step (read without the lock: a snapshot)
        self._carried = 0  # jobs in the running step with rows left, queued again after it
        self.steps = 0
        self.rows_scored = 0
        self.rows_dropped = 0

    # ----------------------------------------------------------------- the server's side

    @property
    def queued_jobs(self) -> int:
        return len(self._queue) + self._carried

    def submit(self, job: Job | CallJob) -> Job | CallJob:
        """Queue ``job``; :class:`QueueFull` when ``max_queued_rows`` rows are queued already."""
        with self._cond:
            if self._closed:
                raise WorkerClosed("the scoring service is shutting down")
            if len(job) and self.queued_rows and self.queued_rows + len(job) > self.max_queued_rows:
                raise QueueFull(f"{self.queued_rows:,} rows are already queued")
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
                self._thread.start()
            self._queue.append(job)
            self.queued_rows += len(job)
            self._cond.notify()
        return job

    def close(self, timeout: float = 10.0) -> None:
        """Stop the thread after its current step; queued jobs fail with :class:`WorkerClosed`."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    # ----------------------------------------------------------------- the thread

    def _run(self) -> None:
        if self.setup is not None:
            try:
                self.setup()
            except Exception:  # a failed tuning step must not stop the service
                logger.exception("inference thread setup failed; continuing with the defaults")
        again: list[Job] = []
        while True:
            with self._cond:
                # What is left of the last step's jobs waits behind requests that came meanwhile.
                self._queue.extend(again)
                while not self._queue and not self._closed:
                    self._cond.wait()
                if self._closed:
                    self._fail_queued()
                    return
                step, again = self._next_step()
                self._carried = len(again)
            if isinstance(step, CallJob):
                self._call(step)
            elif step:
                self._score(step)

    def _fail_queued(self) -> None:
        while self._queue:
            job = self._queue.popleft()
            self.queued_rows -= job.left
            _resolve(job.future, error=WorkerClosed("the scoring service is shutting down"))

    def _next_step(self) -> tuple[CallJob | list[tuple[Job, np.ndarray]], list[Job]]:
        """Rows for one forward pass, up to ``batch_size``, a share from each queued job in turn;
        and the jobs that will have rows left, to queue again after the step."""
        now = time.monotonic()
        step: list[tuple[Job, np.ndarray]] = []
        again: list[Job] = []
        room = self.batch_size
        while self._queue and room > 0:
            job = self._queue.popleft()
            if job.expired(now):  # its waiter answers the client; the rows are not scored
                self.queued_rows -= job.left
                self.rows_dropped += job.left
                continue
            if isinstance(job, CallJob):
                if step:
                    self._queue.appendleft(job)
                    break
                return job, again
            positions = job.take(room)
            self.queued_rows -= len(positions)
            room -= len(positions)
            step.append((job, positions))
            if job.left:
                again.append(job)
        return step, again

    def _score(self, step: list[tuple[Job, np.ndarray]]) -> None:
        input_ids = [job.input_ids[i] for job, positions in step for i in positions]
        numeric = np.concatenate([job.numeric[positions] for job, positions in step])
        extras = {
            name: np.concatenate([job.extras[name][positions] for job, positions in step])
            for name in step[0][0].extras
        }
        try:
            outputs = self.forward(input_ids, numeric, **extras)
        except Exception as exc:  # noqa: BLE001 - the step's jobs get the error; the thread goes on
            logger.exception("scoring %d rows failed", len(input_ids))
            for job, _ in step:
                job.cancel()
                _resolve(job.future, error=exc)
            return
        self.steps += 1
        self.rows_scored += len(input_ids)
        start = 0
        for job, positions in step:
            job.store(positions, outputs[start : start + len(positions)])
            start += len(positions)

    def _call(self, job: CallJob) -> None:
        try:
            result = job.fn(job.should_stop)
        except Exception as exc:  # noqa: BLE001 - handed to the waiter, which turns it into a reply
            _resolve(job.future, error=exc)
        else:
            _resolve(job.future, result=result)
