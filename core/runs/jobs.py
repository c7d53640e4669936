"""Background fine-tuning jobs: a process-wide queue whose threads supervise worker processes.

Each job is one run folder. A dispatcher thread starts at most ``max_concurrent`` worker
processes (:mod:`.process`) and a supervising thread per process waits for it and settles its
final state. Progress is read from the run folder, so a snapshot is the same from any thread, tab
or process.
"""

from __future__ import annotations

import logging
import signal
import subprocess
import threading
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from ..config import RunConfig
from ..errors import RunError
from ..training.events import TRAINING_PHASE, EpochEvent, StepEvent
from . import folder as runs
from .files import DAMAGED_FIX, DamagedRunError
from .process import settle_exit, signal_group, start_warm_worker, start_worker, terminate
from .status import DAMAGED, FINAL_STATES, settle_dead_run, write_status

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class JobSnapshot:
    """An immutable view of a run's progress, built from its folder."""

    run_id: str
    state: str
    phase: str = ""
    message: str = ""
    kind: str = ""
    step: int = 0
    total_steps: int = 0
    epoch: int = 0
    loss: float | None = None
    samples_per_s: float | None = None
    eta_s: float | None = None
    elapsed_s: float | None = None
    steps: list[dict] = field(default_factory=list)
    epochs: list[dict] = field(default_factory=list)
    started: str = ""  # ISO times from status.json ("" until the worker starts / the run ends)
    finished_at: str = ""

    @property
    def wall_s(self) -> float | None:
        """Seconds from the worker's start to the end (or to now while it runs): every phase,
        loading and the report after training included."""
        if not self.started:
            return None

        def moment(text: str) -> datetime:
            stamp = datetime.fromisoformat(text)
            return stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)  # status.json is UTC

        end = moment(self.finished_at) if self.finished_at else datetime.now(UTC)
        return max(0.0, (end - moment(self.started)).total_seconds())

    @property
    def training(self) -> bool:
        """Whether the run is in its training loop (not loading, nor writing its report)."""
        return not self.finished and self.phase == TRAINING_PHASE and bool(self.steps)

    @property
    def progress(self) -> float:
        """The share of steps done, 0 to 1 (1 once the run succeeded)."""
        if self.state == "succeeded":
            return 1.0
        return min(1.0, self.step / self.total_steps) if self.total_steps else 0.0

    @property
    def finished(self) -> bool:
        """Whether the run is in a final state (damaged included)."""
        return self.state in FINAL_STATES


def snapshot(run_dir: Path) -> JobSnapshot:
    """Progress of the run in ``run_dir`` (works for runs started by any process); a damaged run
    folder gives state ``damaged`` with the reason and the fix as the message."""
    run_dir = Path(run_dir)
    try:
        _, _, status = runs.read_run(run_dir)
    except DamagedRunError as exc:
        return JobSnapshot(
            run_id=run_dir.name, state=DAMAGED, message=f"{exc.reason}. {DAMAGED_FIX}"
        )
    history = runs.read_events(run_dir)
    steps = [e for e in history if isinstance(e, StepEvent)]
    epochs = [e for e in history if isinstance(e, EpochEvent)]
    last = steps[-1] if steps else StepEvent()
    return JobSnapshot(
        run_id=run_dir.name,
        state=status["state"],
        phase=status.get("phase") or "",
        message=status.get("message") or "",
        kind=status.get("kind") or "",
        step=last.step or 0,
        total_steps=last.total_steps or 0,
        epoch=last.epoch or 0,
        loss=last.loss,
        samples_per_s=last.samples_per_s,
        eta_s=last.eta_s,
        elapsed_s=last.elapsed_s,
        steps=[e.to_dict() for e in steps],  # as dicts: the dashboard's curves plot them
        epochs=[e.to_dict() for e in epochs],
        started=status.get("started") or "",
        finished_at=status.get("finished") or "",
    )


class JobManager:
    """Runs fine-tuning jobs in the background; one per process (the dashboard caches it)."""

    def __init__(
        self,
        runs_dir: str | Path = runs.DEFAULT_RUNS_DIR,
        *,
        max_concurrent: int = 1,
        warm_worker: bool = True,
    ):
        self.runs_dir = Path(runs_dir)
        self.max_concurrent = max_concurrent
        # keep one worker process started and imported, ready for the next run
        self.warm_worker = warm_worker
        self._spare: subprocess.Popen | None = None
        self._lock = threading.Condition()
        self._queue: deque[str] = deque()
        self._processes: dict[str, subprocess.Popen] = {}
        self._cancel_requested: set[str] = set()
        self._closed = False
        self.runs_dir.mkdir(parents=True, exist_ok=True)
        for summary in runs.list_runs(self.runs_dir):  # runs left running or queued by a dead app
            if summary.state == "interrupted":
                settle_dead_run(summary.path)
        if warm_worker:
            self._spare = start_warm_worker()
        self._dispatcher = threading.Thread(
            target=self._dispatch, name="fintune-dispatcher", daemon=True
        )
        self._dispatcher.start()

    # ----------------------------------------------------------------- public API

    def submit(self, config: RunConfig, frame: pd.DataFrame, *, source: str = "") -> str:
        """Create a queued run and return its id; it starts when a slot is free."""
        run_dir = runs.create_run(self.runs_dir, config, frame, source=source)
        with self._lock:
            self._queue.append(run_dir.name)
            self._lock.notify_all()
        return run_dir.name

    def cancel(self, run_id: str) -> bool:
        """Stop a queued or running job; False when it had already finished."""
        run_dir = runs.run_path(self.runs_dir, run_id)
        with self._lock:
            if run_id in self._queue:
                self._queue.remove(run_id)
                _record(run_dir, "cancelled", message="Cancelled before it started.")
                return True
            process = self._processes.get(run_id)
            if process is None or process.poll() is not None:
                return False
            self._cancel_requested.add(run_id)
        terminate(process)
        return True

    def snapshot(self, run_id: str) -> JobSnapshot:
        """Progress of the job ``run_id``, read from its run folder."""
        return snapshot(runs.run_path(self.runs_dir, run_id))

    def list_runs(self) -> list[runs.RunSummary]:
        """All runs in this manager's runs folder, newest first."""
        return runs.list_runs(self.runs_dir)

    def active(self) -> list[str]:
        """Ids of queued and running jobs, in order."""
        with self._lock:
            running = [rid for rid, p in self._processes.items() if p.poll() is None]
            return running + list(self._queue)

    def wait(self, run_id: str, timeout: float | None = None) -> JobSnapshot:
        """Block until the job finishes (for scripts and tests)."""
        import time

        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            with self._lock:
                pending = run_id in self._queue or run_id in self._processes
                if pending:
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        break
                    self._lock.wait(timeout=min(remaining or 1.0, 1.0))
                    continue
            break
        return self.snapshot(run_id)

    def shutdown(self) -> None:
        """Cancel everything (used by tests and at exit)."""
        with self._lock:
            self._closed = True
            queued, self._queue = list(self._queue), deque()
            self._lock.notify_all()
        for run_id in queued:
            _record(runs.run_path(self.runs_dir, run_id), "cancelled", message="The app shut down.")
        for run_id in list(self._processes):
            self.cancel(run_id)
        spare, self._spare = self._spare, None
        if spare is not None and spare.poll() is None:
            spare.stdin.close()  # end of input: the warm worker exits without a run

    # ----------------------------------------------------------------- threads

    def _dispatch(self) -> None:
        while True:
            with self._lock:
                while not self._closed and (
                    not self._queue or len(self._processes) >= self.max_concurrent
                ):
                    self._lock.wait()
                if self._closed:
                    return
                run_id = self._queue.popleft()
                try:
                    self._processes[run_id] = self._launch(run_id)
                except (OSError, RunError) as exc:  # RunError: its folder was damaged meanwhile
                    _record(
                        runs.run_path(self.runs_dir, run_id),
                        "failed",
                        kind="other",
                        message=f"Could not start the training process: {exc}",
                    )
                    self._lock.notify_all()
                    continue
            threading.Thread(
                target=self._supervise, args=(run_id,), name=f"fintune-{run_id}", daemon=True
            ).start()

    def _launch(self, run_id: str) -> subprocess.Popen:
        """Hand the run to the warm spare worker if there is one, else start a cold one."""
        run_dir = runs.run_path(self.runs_dir, run_id).resolve()
        processes = runs.load_config(run_dir).train.num_processes
        spare, self._spare = self._spare, None
        process = None
        if spare is not None and processes > 1:
            # several processes start under a launcher: keep the spare
            self._spare, spare = spare, None
        if spare is not None and spare.poll() is None:
            try:
                spare.stdin.write(f"{run_dir}\n".encode())
                spare.stdin.close()
                process = spare
            except OSError:
                signal_group(spare, signal.SIGKILL)
        if process is None:
            process = start_worker(run_dir, processes)
        if self.warm_worker and not self._closed and self._spare is None:
            self._spare = start_warm_worker()
        return process

    def _supervise(self, run_id: str) -> None:
        run_dir = runs.run_path(self.runs_dir, run_id)
        process = self._processes[run_id]
        code = process.wait()
        try:
            settle_exit(run_dir, code, cancelled=run_id in self._cancel_requested)
        except RunError as exc:  # the worker's folder was damaged meanwhile: leave it as it is
            logger.warning("run %s: its final state could not be recorded: %s", run_id, exc)
        finally:
            with self._lock:
                self._processes.pop(run_id, None)
                self._cancel_requested.discard(run_id)
                self._lock.notify_all()


def _record(run_dir: Path, state: str, **fields) -> None:
    """write_status for the manager's own bookkeeping: a damaged status.json is left as it is."""
    try:
        write_status(run_dir, state, **fields)
    except RunError as exc:
        logger.warning("run %s could not be marked %s: %s", Path(run_dir).name, state, exc)
