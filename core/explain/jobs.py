"""Explanation jobs: :func:`core.explain.explain_rows` in the explainer process, queued, cached.

A dashboard starts an :class:`ExplainJob` through one process-wide :class:`ExplainJobs` registry
and polls its immutable :meth:`ExplainJob.snapshot`; a second visit with the same run, rows and
class finds the finished job and draws at once. The computing happens in one long-lived
:class:`~.worker.ExplainerProcess`, so the app's server stays free to answer every tab: jobs wait
in a visible queue and run one at a time; a process that died is replaced for the next job.
Word (token) explanations of one row go the same way, ahead of the queue, since a page waits on
them. Plain Python: no UI.
"""

from __future__ import annotations

import itertools
import logging
import shutil
import tempfile
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Hashable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ..errors import ConfigError, DataError, FinTuneError
from .attributions import ExplanationCancelled
from .results import read_explanation
from .speed import ExplainSpeed, fit
from .worker import ExplainerProcess

logger = logging.getLogger(__name__)

# Per explanation job; the REST service has its own, per-request limit. Cost grows linearly with
# rows: a page should not start an hour-long job.
MAX_EXPLAIN_ROWS = 1000
MAX_JOBS = 16  # finished jobs kept per registry, least recently used dropped first
MAX_TOKEN_RESULTS = 64
REPLY_POLL_S = 0.25  # how often the dispatcher checks that a silent explainer is still alive
_OPTIONS = ("background", "n_permutations", "precision", "seed", "fast")


class ExplainerError(FinTuneError, RuntimeError):
    """The explainer process could not start or died during a job; the next job starts a new
    one."""


@dataclass(frozen=True)
class ExplainSnapshot:
    """An immutable view of one job: state, place in the queue or progress, and the result or the
    error when finished."""

    state: str  # "queued" | "running" | "succeeded" | "failed" | "cancelled"
    fraction: float = 0.0
    explanation: object | None = None  # the shap.Explanation once succeeded
    error: BaseException | None = None  # what failed; a FinTuneError carries the user's fix
    position: int = 0  # queued: 1 for the next job to run; 0 otherwise
    after: str = ""  # queued: the job just ahead of this one (the running one for the 1st)
    elapsed_s: float | None = None  # running: seconds since the explainer took it
    rows_per_s: float | None = None  # running: rows done per second so far
    eta_s: float | None = None  # running: seconds left, from rows_per_s (or the run's speed)
    pid: int | None = None  # the process that computes it (not the app's)

    @property
    def finished(self) -> bool:
        return self.state in ("succeeded", "failed", "cancelled")


class ExplainJob:
    """One request to the explainer (rows, one row's words, or a speed check), as the app sees
    it: a snapshot to poll, cancel, wait. Made by :class:`ExplainJobs`."""

    def __init__(
        self,
        owner: ExplainJobs,
        kind: str,
        run_dir: str | Path,
        rows: pd.DataFrame | None,
        *,
        label: str,
        class_index: int | str | None = None,
        text_column: str | None = None,
        options: dict | None = None,
    ):
        self.id = str(next(_ids))
        self.kind = kind  # "explain" | "tokens" | "probe"
        self.run_dir = Path(run_dir)
        self.n_rows = len(rows) if rows is not None else 0
        self.label = label
        self._owner = owner
        self._rows = rows
        self._class_index = class_index
        self._text_column = text_column
        self._options = dict(options or {})
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._state = "queued"
        self._fraction = 0.0
        self._started: float | None = None
        self._progressed: tuple[float, float] | None = None  # (fraction, time) of the last news
        self._pid: int | None = None
        self._result = None
        self._error: BaseException | None = None
        self._cancel_requested = False

    def snapshot(self) -> ExplainSnapshot:
        position, after = self._owner._place(self)
        with self._lock:
            state, fraction, started = self._state, self._fraction, self._started
            progressed = self._progressed
            result, error, pid = self._result, self._error, self._pid
        elapsed = rate = eta = None
        if state == "running" and started is not None:
            elapsed = time.monotonic() - started
            if progressed is not None and progressed[0] > 0:
                rate = progressed[0] * self.n_rows / max(progressed[1] - started, 1e-3)
                eta = max(
                    0.0, (1 - fraction) * self.n_rows / rate - (time.monotonic() - progressed[1])
                )
            else:  # no chunk done yet: the run's measured speed says how long the whole takes
                speed = self._owner._speeds.get(str(self.run_dir))
                total = speed.seconds(self.n_rows) if speed is not None else None
                eta = max(0.0, total - elapsed) if total is not None else None
        return ExplainSnapshot(
            state=state,
            fraction=fraction,
            explanation=result,
            error=error,
            position=position,
            after=after,
            elapsed_s=elapsed,
            rows_per_s=rate,
            eta_s=eta,
            pid=pid,
        )

    def cancel(self) -> None:
        """Drop the job from the queue, or stop it before its next chunk of rows; the snapshot
        turns ``cancelled`` (at once when it was queued)."""
        self._owner._cancel(self)

    def wait(self, timeout: float | None = None) -> ExplainSnapshot:
        """Block until the job finishes (for scripts and tests)."""
        self._done.wait(timeout)
        return self.snapshot()

    # ----------------------------------------------------------------- the dispatcher's side

    def _begin(self, pid: int | None) -> None:
        with self._lock:
            self._state, self._started, self._pid = "running", time.monotonic(), pid

    def _progress(self, fraction: float) -> None:
        with self._lock:
            self._fraction = float(fraction)
            self._progressed = (self._fraction, time.monotonic())

    def _finish(self, state: str, *, result=None, error: BaseException | None = None) -> None:
        with self._lock:
            if self._state in ("succeeded", "failed", "cancelled"):
                return
            self._state, self._result, self._error = state, result, error
            if state == "succeeded":
                self._fraction = 1.0
        self._rows = None  # the result keeps what it needs
        self._done.set()

    def _request(self, folder: Path) -> dict:
        """The message for the explainer; the rows (and a given background) go as Parquet."""
        try:
            self._rows.to_parquet(folder / "rows.parquet")
            options = dict(self._options)
            if isinstance(options.get("background"), pd.DataFrame):
                options.pop("background").to_parquet(folder / "background.parquet")
                options["background_file"] = True
        except (ValueError, TypeError, ImportError) as exc:  # pyarrow: a column of mixed types
            raise DataError(
                f"These rows cannot be written for the explainer ({exc}): give each column one "
                "type, e.g. read the file again with its columns' types."
            ) from exc
        class_index = self._class_index
        if hasattr(class_index, "item"):  # a numpy label
            class_index = class_index.item()
        return {
            "type": self.kind,
            "id": self.id,
            "run_dir": str(self.run_dir.resolve()),
            "folder": str(folder),
            "class_index": class_index,
            "text_column": self._text_column,
            "options": options,
        }


_ids = itertools.count(1)


def _error_types(base: type) -> list[type]:
    """``base`` and every subclass of it, however deep."""
    found = [base]
    for sub in base.__subclasses__():
        found += _error_types(sub)
    return found


def _error_from(reply: dict) -> BaseException:
    """The worker's failure as an exception here: the same FinTuneError type for a user's error,
    a RuntimeError carrying the worker's traceback for a bug."""
    error = reply.get("error") or {}
    kind, message = error.get("kind", "Exception"), error.get("message", "")
    if error.get("user"):
        cls = next((c for c in _error_types(FinTuneError) if c.__name__ == kind), None)
        if cls is not None:
            try:
                return cls(message)
            except TypeError:  # an error with required fields (TrainingError's kind)
                pass
        return FinTuneError(message)
    return RuntimeError(f"{kind} in the explainer process: {message}\n{error.get('traceback', '')}")


def _import_shap() -> None:
    import shap  # noqa: F401


class ExplainJobs:
    """A process-wide registry of explanation jobs and token explanations, keyed by the caller,
    computed one at a time by the explainer process.

    The key names the run, the row set and the class (e.g. ``(run_id, "test", 200, "good")``);
    :meth:`start` returns the existing job for a key unless it failed or was cancelled. With
    ``warm_up`` the explainer process starts now and imports torch and shap and compiles shap's
    kernels meanwhile, so the first job does not pay for it while the user waits; without, it
    starts with the first job. :meth:`speed` says how long N rows of a run take here.
    """

    def __init__(self, *, warm_up: bool = True, max_jobs: int = MAX_JOBS):
        self.max_jobs = max_jobs
        self.folder = Path(tempfile.mkdtemp(prefix="fintune-explain-"))  # requests and results
        self._jobs: OrderedDict[Hashable, ExplainJob] = OrderedDict()
        self._tokens: OrderedDict[Hashable, object] = OrderedDict()
        self._speeds: dict[str, ExplainSpeed] = {}
        self._probes: dict[str, ExplainJob] = {}
        self._cond = threading.Condition()
        self._queue: deque[ExplainJob] = deque()
        self._running: ExplainJob | None = None
        self._closed = False
        self._process: ExplainerProcess | None = None
        if warm_up:
            try:
                self._process = ExplainerProcess(warm_up=True)
            except OSError:  # the first job tries again and reports what fails
                logger.warning("the explainer process could not start", exc_info=True)
            # Results are rebuilt as shap.Explanation here: import shap before the first one.
            threading.Thread(target=_import_shap, name="fintune-import-shap", daemon=True).start()
        self._dispatcher = threading.Thread(
            target=self._dispatch, name="fintune-explain-dispatcher", daemon=True
        )
        self._dispatcher.start()

    # ----------------------------------------------------------------- public API

    @property
    def worker_pid(self) -> int | None:
        """The explainer process's pid (None before it starts)."""
        process = self._process
        return process.pid if process is not None else None

    def jobs(self) -> list[ExplainJob]:
        """The jobs held now, least recently used first."""
        with self._cond:
            return list(self._jobs.values())

    def get(self, key: Hashable) -> ExplainJob | None:
        with self._cond:
            job = self._jobs.get(key)
            if job is not None:
                self._jobs.move_to_end(key)
            return job

    def start(
        self,
        key: Hashable,
        run_dir: str | Path,
        rows: pd.DataFrame,
        *,
        class_index: int | str | None = None,
        **options,
    ) -> ExplainJob:
        """The job for ``key``: the queued, running or finished one, or a new one at the end of
        the queue (``options`` go to explain_rows: background, n_permutations, precision, seed,
        fast)."""
        unknown = set(options) - set(_OPTIONS)
        if unknown:
            raise ConfigError(f"Unknown explanation options {sorted(unknown)}: use {_OPTIONS}.")
        with self._cond:
            job = self._jobs.get(key)
            if job is not None and job.snapshot().state not in ("failed", "cancelled"):
                self._jobs.move_to_end(key)
                return job
            name = Path(run_dir).name
            job = ExplainJob(
                self,
                "explain",
                run_dir,
                rows,
                label=f"{len(rows)} rows of {name}",
                class_index=class_index,
                options=options,
            )
            self._jobs[key] = job
            self._jobs.move_to_end(key)
            finished = [k for k, j in self._jobs.items() if j._done.is_set() and k != key]
            for old in finished[: max(0, len(self._jobs) - self.max_jobs)]:
                del self._jobs[old]
            self._enqueue(job)
            return job

    def tokens(
        self,
        key: Hashable,
        run_dir: str | Path,
        row: pd.DataFrame,
        text_column: str,
        *,
        class_index: int | str | None = None,
    ):
        """Token SHAP of one row's text column (:func:`explain_tokens`), computed once per key.

        Computed by the explainer, ahead of queued jobs (after the one running now); blocks until
        done. Raises what explain_tokens raises.
        """
        with self._cond:
            if key in self._tokens:
                self._tokens.move_to_end(key)
                return self._tokens[key]
            job = ExplainJob(
                self,
                "tokens",
                run_dir,
                row,
                label=f"the words of row {row.index[0] if len(row) else '?'} of "
                f"{Path(run_dir).name}",
                class_index=class_index,
                text_column=text_column,
            )
            self._enqueue(job, first=True)
        snap = job.wait()
        if snap.state != "succeeded":
            raise snap.error if snap.error is not None else ExplanationCancelled()
        with self._cond:
            self._tokens[key] = snap.explanation
            while len(self._tokens) > MAX_TOKEN_RESULTS:
                self._tokens.popitem(last=False)
        return snap.explanation

    def speed(self, run_dir: str | Path) -> ExplainSpeed | None:
        """How fast rows of this run are explained here, measured; None while the first
        measurement runs.

        Measured on the explanations of the run this registry finished, else on a timed check in
        the explainer (one row, then up to 16 of the run's held-out rows), which this call queues
        once per run; it also loads the run in the explainer ahead of the first job. When the
        check failed, the speed is unknown (``seconds()`` is None).
        """
        name = str(Path(run_dir))
        with self._cond:
            if name in self._speeds:
                return self._speeds[name]
            probe = self._probes.get(name)
            if probe is None or (probe._done.is_set() and probe._state == "cancelled"):
                probe = ExplainJob(
                    self, "probe", run_dir, None, label=f"a speed check of {Path(run_dir).name}"
                )
                self._probes[name] = probe
                self._enqueue(probe)
            elif probe._done.is_set():  # failed: no estimate for this run
                self._speeds[name] = ExplainSpeed(
                    None, None, f"the speed check failed: {probe._error}"
                )
                return self._speeds[name]
            return None

    def shutdown(self) -> None:
        """Cancel every job, stop the explainer process and delete the files (at exit, and when a
        dashboard drops its registry)."""
        with self._cond:
            self._closed = True
            queued, self._queue = list(self._queue), deque()
            running = self._running
            self._cond.notify_all()
        for job in queued:
            job._finish("cancelled")
        if running is not None:
            running._finish("cancelled")
        process, self._process = self._process, None
        if process is not None:
            process.stop()
        self._dispatcher.join(5.0)
        shutil.rmtree(self.folder, ignore_errors=True)

    # ----------------------------------------------------------------- the queue

    def _enqueue(self, job: ExplainJob, *, first: bool = False) -> None:
        with self._cond:
            if self._closed:
                job._finish("cancelled")
                return
            if first:
                self._queue.appendleft(job)
            else:
                self._queue.append(job)
            self._cond.notify_all()

    def _place(self, job: ExplainJob) -> tuple[int, str]:
        """A queued job's position (1 = next) and the job just ahead of it."""
        with self._cond:
            if job not in self._queue:
                return 0, ""
            i = self._queue.index(job)
            if i > 0:
                return i + 1, self._queue[i - 1].label
            running = self._running
            return 1, f"{running.label} (computing now)" if running is not None else ""

    def _cancel(self, job: ExplainJob) -> None:
        with self._cond:
            if job in self._queue:
                self._queue.remove(job)
                job._finish("cancelled")
                return
            if self._running is not job or job._done.is_set():
                return
            job._cancel_requested = True
            process = self._process
        if process is not None:
            process.send({"type": "cancel", "id": job.id})

    def _dispatch(self) -> None:
        while True:
            with self._cond:
                while not self._closed and not self._queue:
                    self._cond.wait()
                if self._closed:
                    return
                job = self._queue.popleft()
                self._running = job
            try:
                self._run(job)
            except FinTuneError as exc:
                job._finish("failed", error=exc)
            except Exception as exc:  # noqa: BLE001 - a bug: handed to the caller to surface
                logger.exception("explaining %s failed", job.run_dir)
                job._finish("failed", error=exc)
            finally:
                if job.kind == "probe" and job._state != "succeeded":
                    logger.info("the speed check of %s ended %s", job.run_dir, job._state)
                with self._cond:
                    self._running = None
                    self._cond.notify_all()

    def _ensure_process(self) -> ExplainerProcess:
        process = self._process
        if process is not None and process.alive():
            return process
        if process is not None:
            process.stop()
        try:
            self._process = ExplainerProcess(warm_up=False)
        except OSError as exc:
            self._process = None
            raise ExplainerError(f"The explainer process could not start: {exc}.") from exc
        return self._process

    def _run(self, job: ExplainJob) -> None:
        """Hand ``job`` to the explainer, follow it to its end, and settle it once its files are
        gone (the rows are the user's: not left behind)."""
        folder = self.folder / job.id
        folder.mkdir()
        outcome = None
        try:
            request = job._request(folder) if job.kind != "probe" else None
            process = self._ensure_process()
            if request is None:
                request = {"type": "probe", "id": job.id, "run_dir": str(job.run_dir.resolve())}
            job._begin(process.pid)
            if not process.send(request):
                outcome = self._died(job, process)
            while outcome is None:
                try:
                    reply = process.receive(REPLY_POLL_S)
                except EOFError:
                    outcome = self._died(job, process)
                    break
                if reply is None and not process.alive():
                    outcome = self._died(job, process)
                elif reply is not None and reply.get("id") == job.id:
                    outcome = self._settle(job, reply, folder)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        job._finish(outcome[0], **outcome[1])

    def _settle(self, job: ExplainJob, reply: dict, folder: Path) -> tuple[str, dict] | None:
        """Note a reply of the explainer; for its last one, the job's final state and fields."""
        kind = reply["type"]
        if kind == "progress":
            job._progress(reply["fraction"])
            return None
        if kind == "cancelled":
            return "cancelled", {}
        if kind == "failed":
            return "failed", {"error": _error_from(reply)}
        name = str(job.run_dir)
        if job.kind == "probe":
            points = reply["points"]
            biggest = max(points, key=lambda p: p[0])
            speed = fit(points, f"a timed check of {biggest[0]} rows here")
            with self._cond:
                self._speeds.setdefault(name, speed)
            return "succeeded", {}
        result = read_explanation(folder, job._rows)
        if job.kind == "explain" and reply.get("warm"):
            with self._cond:
                known = self._speeds.get(name) or ExplainSpeed(None, None, "")
                self._speeds[name] = known.with_point(job.n_rows, reply["seconds"])
        return "succeeded", {"result": result}

    def _died(self, job: ExplainJob, process: ExplainerProcess) -> tuple[str, dict]:
        if self._closed:
            return "cancelled", {}
        how = process.describe_exit()
        process.stop()
        self._process = None
        what = "explaining" if job.kind != "probe" else "checking the speed of"
        return "failed", {
            "error": ExplainerError(
                f"The explainer process {how} while {what} {job.label}. Try again, perhaps with "
                "fewer rows: the next explanation starts a new explainer process."
            )
        }
