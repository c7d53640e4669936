"""Explanation jobs: :func:`core.explain.explain_rows` in a background thread, cached per row set.

A dashboard starts an :class:`ExplainJob` through one process-wide :class:`ExplainJobs` registry
and polls its immutable :meth:`ExplainJob.snapshot`; a second visit with the same run, rows and
class finds the finished job and draws at once. Token explanations of one row are cached here too.
Plain Python: no UI, the worker thread only calls ``core``.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd

from .attributions import ExplanationCancelled, explain_rows, explain_tokens, warm_up_explanations

logger = logging.getLogger(__name__)

# Per explanation job; the REST service has its own, per-request limit. Cost grows linearly with
# rows: a page should not start an hour-long job.
MAX_EXPLAIN_ROWS = 1000
MAX_JOBS = 16  # finished jobs kept per registry, least recently used dropped first
MAX_TOKEN_RESULTS = 64


@dataclass(frozen=True)
class ExplainSnapshot:
    """An immutable view of one job: state, progress, and the result or the error when finished."""

    state: str  # "queued" | "running" | "succeeded" | "failed" | "cancelled"
    fraction: float = 0.0
    explanation: object | None = None  # the shap.Explanation once succeeded
    error: BaseException | None = None  # what failed; a FinTuneError carries the user's fix

    @property
    def finished(self) -> bool:
        return self.state in ("succeeded", "failed", "cancelled")


class ExplainJob:
    """One :func:`explain_rows` call in a daemon thread, with progress, cancel and a snapshot.

    ``compute_lock`` serialises jobs that share a model: runs loaded by ``load_model`` are shared
    per process, and an explanation moves its model to the device and back.
    """

    def __init__(
        self,
        run_dir: str | Path,
        rows: pd.DataFrame,
        *,
        class_index: int | str | None = None,
        compute_lock: threading.Lock | None = None,
        ready: threading.Event | None = None,
        **options,
    ):
        self.run_dir = Path(run_dir)
        self.n_rows = len(rows)
        self._rows = rows
        self._class_index = class_index
        self._options = options
        self._compute_lock = compute_lock or threading.Lock()
        self._ready = ready
        self._cancel = threading.Event()
        self._lock = threading.Lock()
        self._snapshot = ExplainSnapshot("queued")
        self._thread = threading.Thread(
            target=self._work, name=f"fintune-explain-{self.run_dir.name}", daemon=True
        )
        self._thread.start()

    def snapshot(self) -> ExplainSnapshot:
        with self._lock:
            return self._snapshot

    def cancel(self) -> None:
        """Ask the job to stop before its next row; the snapshot turns ``cancelled`` soon after."""
        self._cancel.set()

    def wait(self, timeout: float | None = None) -> ExplainSnapshot:
        """Block until the job finishes (for scripts and tests)."""
        self._thread.join(timeout)
        return self.snapshot()

    def _set(self, **fields) -> None:
        with self._lock:
            self._snapshot = replace(self._snapshot, **fields)

    def _work(self) -> None:
        try:
            if self._ready is not None:
                self._ready.wait()  # shap's kernels compile once; no point compiling them twice
            with self._compute_lock:
                if self._cancel.is_set():
                    raise ExplanationCancelled()
                self._set(state="running")
                explanation = explain_rows(
                    self.run_dir,
                    self._rows,
                    class_index=self._class_index,
                    on_progress=lambda fraction: self._set(fraction=fraction),
                    should_stop=self._cancel.is_set,
                    **self._options,
                )
        except ExplanationCancelled:
            self._set(state="cancelled")
        except Exception as exc:  # noqa: BLE001 - handed to the caller through the snapshot
            logger.log(
                logging.INFO if _is_user_error(exc) else logging.ERROR,
                "explaining %s failed",
                self.run_dir,
                exc_info=not _is_user_error(exc),
            )
            self._set(state="failed", error=exc)
        else:
            self._set(state="succeeded", fraction=1.0, explanation=explanation)
        finally:
            self._rows = None  # the result keeps what it needs


def _is_user_error(exc: BaseException) -> bool:
    from ..errors import FinTuneError

    return isinstance(exc, FinTuneError)


class ExplainJobs:
    """A process-wide registry of explanation jobs and token explanations, keyed by the caller.

    The key names the run, the row set and the class (e.g. ``(run_id, "test", 200, "good")``);
    :meth:`start` returns the existing job for a key unless it failed or was cancelled. One job
    computes at a time. With ``warm_up`` a thread compiles shap's kernels at once, so the first
    job does not pay for it while the user waits.
    """

    def __init__(self, *, warm_up: bool = True, max_jobs: int = MAX_JOBS):
        self.max_jobs = max_jobs
        self._jobs: OrderedDict[Hashable, ExplainJob] = OrderedDict()
        self._tokens: OrderedDict[Hashable, object] = OrderedDict()
        self._lock = threading.Lock()
        self._compute_lock = threading.Lock()
        self._ready = threading.Event()
        if warm_up:
            threading.Thread(
                target=self._warm_up, name="fintune-explain-warm-up", daemon=True
            ).start()
        else:
            self._ready.set()

    def _warm_up(self) -> None:
        try:
            warm_up_explanations()
        except Exception:  # noqa: BLE001 - only a speed-up: the first job compiles instead
            logger.warning("warming up shap failed", exc_info=True)
        finally:
            self._ready.set()

    def jobs(self) -> list[ExplainJob]:
        """The jobs held now, least recently used first."""
        with self._lock:
            return list(self._jobs.values())

    def get(self, key: Hashable) -> ExplainJob | None:
        with self._lock:
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
        """The job for ``key``: the running or finished one, or a new one (``options`` go to
        explain_rows)."""
        with self._lock:
            job = self._jobs.get(key)
            if job is not None and job.snapshot().state not in ("failed", "cancelled"):
                self._jobs.move_to_end(key)
                return job
            job = ExplainJob(
                run_dir,
                rows,
                class_index=class_index,
                compute_lock=self._compute_lock,
                ready=self._ready,
                **options,
            )
            self._jobs[key] = job
            self._jobs.move_to_end(key)
            finished = [k for k, j in self._jobs.items() if j.snapshot().finished and k != key]
            for old in finished[: max(0, len(self._jobs) - self.max_jobs)]:
                del self._jobs[old]
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

        Runs in the caller's thread, after any job computing now. Raises what explain_tokens raises.
        """
        with self._lock:
            if key in self._tokens:
                self._tokens.move_to_end(key)
                return self._tokens[key]
        self._ready.wait()
        with self._compute_lock:
            explanation = explain_tokens(run_dir, row, text_column, class_index=class_index)
        with self._lock:
            self._tokens[key] = explanation
            while len(self._tokens) > MAX_TOKEN_RESULTS:
                self._tokens.popitem(last=False)
        return explanation

    def shutdown(self) -> None:
        """Cancel every unfinished job (at exit, and when a dashboard drops its registry)."""
        with self._lock:
            jobs = list(self._jobs.values())
        for job in jobs:
            job.cancel()
