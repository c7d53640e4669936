"""The served run: the loaded model and the work the routes give it, and the serving settings.

The model runs only on one inference thread (:mod:`core.serving.batching`), which scores the queued
requests' rows together in micro-batches. Parsing, tokenising and writing replies run on a few
request threads of the service's own, so the event loop (``/health``) never waits on them.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import logging
import math
import os
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
from fastapi import HTTPException, Request
from pydantic import BaseModel, ValidationError

from ..data.preprocess import column_warnings
from ..data.read import read_table
from ..errors import ConfigError, DataError, RunError
from ..explain.attributions import explain_rows, explanation_frame
from ..explain.reasons import reason_codes
from ..runs.fitted import load_model
from .batching import CallJob, InferenceWorker, Job, QueueFull, WorkerClosed
from .predict import decision_for
from .schemas import (
    ExplainResponse,
    Health,
    Inference,
    InputColumn,
    Limits,
    Prediction,
    PredictResponse,
    RowExplanation,
    request_models,
)
from .validation import csv_row, invalid, json_row, problems, value_errors

logger = logging.getLogger(__name__)

REQUEST_TIMEOUT_ENV = "FINTUNE_REQUEST_TIMEOUT"
THREADS_ENV = "FINTUNE_SERVE_THREADS"
DEFAULT_REQUEST_TIMEOUT = 60.0  # seconds from a request's arrival to its reply
ENCODE_CHUNK_ROWS = 256  # rows prepared and tokenised at a time (short GIL holds)
DISCONNECT_POLL_S = 0.1  # how often a waiting request checks that its client is still there
# Declined rows per /predict request that get reasons (SHAP per row). The credit sample's 197
# declined rows of 1,000 took 3 s on 2 CPU cores with MiniLM (bench/reasons.py): 1,000 declined
# rows stay well within the default budget of 60 s, text columns' words included.
MAX_REASON_ROWS = 1_000


class OverBudget(Exception):
    """The request's time budget ran out."""


class ClientGone(Exception):
    """The client closed the connection before its reply was ready."""


# --------------------------------------------------------------------------- settings


def _usable_cores() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def resolve_threads(threads: int | None) -> int:
    """torch intra-op threads for the inference thread: by default one core fewer than the process
    may use (at least one), left for the event loop, parsing and tokenising. On a 2-core CPU, two
    threads that wait for each other at every op stall whenever any other thread takes one of the
    cores (measured: 20-130 rows/s instead of 600 for MiniLM); one thread keeps ~370.
    """
    import torch

    if threads is None:
        raw = os.environ.get(THREADS_ENV, "").strip()
        if raw:
            if not raw.isdigit() or int(raw) < 1:
                raise ConfigError(
                    f"{THREADS_ENV}={raw!r}: set a whole number of threads, 1 or more."
                )
            return int(raw)
        return max(1, min(torch.get_num_threads(), _usable_cores() - 1))
    if threads < 1:
        raise ConfigError(f"threads={threads}: use 1 or more.")
    return threads


def resolve_timeout(value: float | None) -> float:
    """The time budget per request in seconds: ``value``, else FINTUNE_REQUEST_TIMEOUT, else 60."""
    if value is None:
        raw = os.environ.get(REQUEST_TIMEOUT_ENV, "").strip()
        if not raw:
            return DEFAULT_REQUEST_TIMEOUT
        try:
            value = float(raw)
        except ValueError:
            raise ConfigError(
                f"{REQUEST_TIMEOUT_ENV}={raw!r}: set the time budget per request in "
                "seconds, e.g. 60."
            ) from None
    if not math.isfinite(value) or value <= 0:
        raise ConfigError(
            f"The request timeout is {value!r} s: use a positive number of seconds, e.g. 60."
        )
    return float(value)


def _finite(value) -> float | None:
    value = float(value)
    return value if np.isfinite(value) else None


# --------------------------------------------------------------------------- the served run


class ServedRun:
    """The loaded run and what the routes do with it. The model runs only on the inference thread
    (``self.worker``), so no request waits on a lock in the event loop's thread pool."""

    def __init__(
        self,
        run_dir: Path,
        *,
        max_predict_rows: int,
        max_explain_rows: int,
        max_body_bytes: int,
        request_timeout: float,
        threads: int,
        batch_size: int,
    ):
        from ..training.devices import autocast_dtype, resolve_device

        self.run_dir = run_dir
        self.tuner = load_model(run_dir)
        self.decision = decision_for(run_dir, self.tuner)
        self.spec = self.tuner.spec_
        self.reason_decision = None  # binary runs: the decision reasons are given for
        if self.spec.task == "binary":
            from ..stats.thresholds import Decision

            # No saved decision: labels are the most probable class, i.e. P(positive) >= 0.5.
            self.reason_decision = self.decision or Decision(self.spec.positive_class, 0.5)
        self.limits = Limits(
            max_predict_rows=max_predict_rows,
            max_explain_rows=max_explain_rows,
            max_body_bytes=max_body_bytes,
        )
        self.predict_model, self.explain_model = request_models(
            self.spec, max_predict_rows, max_explain_rows
        )
        self.request_timeout = request_timeout
        self.threads = threads
        train = self.tuner.config.train
        try:
            self.device = resolve_device(train.device)
        except ConfigError:  # trained on a GPU this machine lacks: serve on what is here
            logger.warning(
                "the run's device %r is not available here; serving on the best one", train.device
            )
            self.device = resolve_device("auto")
        self.dtype = autocast_dtype(self.device, train.precision)
        self.tokenizer_lock = threading.Lock()  # one tokenizer, called from the request threads
        # Parsing, tokenising and writing replies: a few threads of their own, not the event loop's
        # pool of 40. More threads than cores only queue for the GIL, and the event loop (/health)
        # would queue behind them.
        self.request_threads = concurrent.futures.ThreadPoolExecutor(
            max_workers=max(1, min(4, _usable_cores())), thread_name_prefix="fintune-request"
        )
        self.worker = InferenceWorker(
            self._forward,
            batch_size=batch_size,
            max_queued_rows=10 * max_predict_rows,
            setup=self._setup_thread,
        )
        self._health = Health(status="ok", run_id=self.run_id)
        self._details = self._health_details()

    @property
    def run_id(self) -> str:
        """The served run's id (its folder's name)."""
        return self.run_dir.name

    async def off_loop(self, fn, *args):
        """``fn(*args)`` on a request thread: the event loop stays free for /health and the rest."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.request_threads, functools.partial(fn, *args))

    def close(self) -> None:
        """Stop the inference thread and the request threads."""
        self.worker.close()
        self.request_threads.shutdown(wait=False, cancel_futures=True)

    @property
    def precision(self) -> str:
        """The inference precision as /health names it: bf16, fp16 or fp32."""
        import torch

        names = {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}
        return names.get(self.dtype, str(self.dtype))

    def _health_details(self) -> dict:
        spec, decision = self.spec, self.decision
        return Health(
            status="ok",
            run_id=self.run_id,
            task=spec.task,
            target=spec.target,
            backbone=self.tuner.config.model.backbone,
            classes=list(spec.classes),
            positive_class=spec.positive_class if spec.task == "binary" else None,
            threshold=(
                decision.threshold if decision is not None and spec.task == "binary" else None
            ),
            columns=[InputColumn(name=c, role=spec.roles[c]) for c in spec.feature_columns],
            limits=self.limits,
        ).model_dump(mode="json", exclude_unset=True)

    def health(self, *, details: bool) -> dict:
        """Built from what is in memory: no lock, no model, nothing that waits on inference."""
        if not details:
            return self._health.model_dump(mode="json", exclude_unset=True)
        worker = self.worker
        inference = Inference(
            device=self.device.type,
            precision=self.precision,
            threads=self.threads,
            batch_size=worker.batch_size,
            max_length=self.tuner.max_length_,
            request_timeout_s=self.request_timeout,
            queued_requests=worker.queued_jobs,
            queued_rows=max(0, worker.queued_rows),
            rows_scored=worker.rows_scored,
            rows_dropped=worker.rows_dropped,
        )
        return {**self._details, "inference": inference.model_dump(mode="json")}

    # ----------------------------------------------------------------- inputs

    def rows_from_json(self, body: bytes, model: type[BaseModel], max_rows: int):
        """The rows as a frame of the model's input columns, warnings for the keys it does not use,
        and the parsed body."""
        try:
            parsed = model.model_validate_json(body)
        except ValidationError as exc:
            detail = problems(exc.errors(include_url=False), self.spec, max_rows)
            raise HTTPException(422, detail=detail) from None
        # Only the model's columns become the frame: 100,000 stray keys are a warning, not a table.
        columns = {
            column: [getattr(row, f"column_{i}") for row in parsed.rows]
            for i, column in enumerate(self.spec.feature_columns)
        }
        frame = pd.DataFrame(columns, index=pd.RangeIndex(len(parsed.rows)))
        extra = dict.fromkeys(key for row in parsed.rows for key in (row.model_extra or ()))
        warnings = column_warnings(self.tuner.preprocessor_.unused_columns(extra))
        self._check_values(frame, json_row)
        return frame, warnings, parsed

    def rows_from_csv(self, raw: bytes) -> tuple[pd.DataFrame, list[str]]:
        """The rows of an uploaded CSV and warnings for its unused columns; a 422 when unusable."""
        where = ["body", "file"]
        if raw[:4] == b"PAR1":
            raise invalid(where, "The upload is a Parquet file: send a CSV file with a header row.")
        # read_table's own message asks for enough rows to train on; scoring needs one.
        if b"\x00" not in raw and sum(1 for line in raw.splitlines() if line.strip()) == 1:
            raise invalid(
                where, "The CSV has no data rows: send a header row and at least one row."
            )
        try:
            frame = read_table(raw, filename="upload.csv")
        except DataError as exc:
            raise invalid(where, str(exc)) from None
        limit = self.limits.max_predict_rows
        if len(frame) > limit:
            raise invalid(
                where,
                f"The CSV has {len(frame):,} rows; at most {limit:,} per request: split the file.",
                "too_long",
            )
        try:
            warnings = self.tuner.preprocessor_.check_columns(frame)
        except DataError as exc:
            raise invalid(where, str(exc), "missing") from None
        frame = frame.reset_index(drop=True)
        self._check_values(frame, csv_row)
        return frame, warnings

    def _check_values(self, frame: pd.DataFrame, name_row) -> None:
        found = value_errors(frame, self.spec, name_row)
        if found:
            raise HTTPException(422, detail=found)

    # ----------------------------------------------------------------- work

    def encode(self, frame: pd.DataFrame, deadline: float) -> Job:
        """Features and token ids of the rows (on a request thread), as an inference job.

        In chunks: the tokenizer holds the GIL for ~0.2 s per 10,000 texts, and the event loop
        must not wait that long; the time budget is checked between chunks.
        """
        tuner = self.tuner
        inputs = frame[self.spec.feature_columns]
        input_ids: list[list[int]] = []
        numeric: list[np.ndarray] = []
        extras: dict[str, list[np.ndarray]] = {}
        for start in range(0, len(inputs), ENCODE_CHUNK_ROWS):
            if time.monotonic() >= deadline:
                raise OverBudget
            chunk = inputs.iloc[start : start + ENCODE_CHUNK_ROWS]
            features = tuner.preprocessor_.transform(chunk)
            numeric.append(features.numeric)
            if features.cells is not None:
                extras.setdefault("cells", []).append(features.cells)
            if tuner.trees_ is not None:
                extras.setdefault("trees", []).append(tuner.trees_.raw_outputs(chunk))
            if not tuner.preprocessor_.reads_row_text:
                input_ids += [[] for _ in range(len(chunk))]
                continue
            with self.tokenizer_lock:
                input_ids += tuner.tokenizer_(
                    features.texts, truncation=True, max_length=tuner.max_length_
                )["input_ids"]
        return Job(
            input_ids,
            np.concatenate(numeric),
            deadline=deadline,
            extras={name: np.concatenate(parts) for name, parts in extras.items()},
        )

    def _setup_thread(self) -> None:
        import torch

        if torch.get_num_threads() != self.threads:
            torch.set_num_threads(self.threads)
        self.tuner.model_.eval()

    def _forward(
        self,
        input_ids: list[list[int]],
        numeric: np.ndarray,
        cells: np.ndarray | None = None,
        trees: np.ndarray | None = None,
    ) -> np.ndarray:
        """Raw outputs of one step's rows, on the inference thread: one padded batch, one pass."""
        import torch

        from ..training.loop import EncodedRows, collate, model_inputs

        model = self.tuner.model_
        if next(model.parameters()).device != self.device:  # an explanation put it back on the CPU
            model.to(self.device)
        rows = EncodedRows(input_ids, numeric, None, cells=cells)
        batch = collate(rows, np.arange(len(input_ids)), pad_id=self.tuner.pad_id_)
        autocast = (
            contextlib.nullcontext()
            if self.dtype is None
            else torch.autocast(device_type=self.device.type, dtype=self.dtype)
        )
        inputs = [None if x is None else x.to(self.device) for x in model_inputs(batch)]
        with torch.inference_mode(), autocast:
            out = model(*inputs)
        out = out.float().cpu().numpy()
        if trees is None:
            return out
        from ..model.trees import apply_blend

        return apply_blend(self.tuner.blend_, out, trees)  # the run's model: network and trees

    def declined_probabilities(self, outputs: np.ndarray) -> tuple[np.ndarray, int]:
        """A binary run's positive-class probabilities from raw outputs, and how many rows the
        decision declines."""
        decision = self.reason_decision
        k = list(self.spec.classes).index(decision.positive_class)
        probabilities = self.tuner.outputs_to_predictions(outputs)[:, k]
        return probabilities, int((probabilities >= decision.threshold).sum())

    def reasons(
        self, frame: pd.DataFrame, probabilities: np.ndarray, should_stop
    ) -> tuple[list[list[str]] | None, str | None]:
        """Each row's reasons toward decline (empty for approved rows), on the inference thread
        (explanations move the model about); or None and a warning when the run cannot give
        them (e.g. no training row is approved at its threshold)."""
        try:
            codes = reason_codes(
                self.run_dir,
                frame,
                decision=self.reason_decision,
                probabilities=probabilities,
                should_stop=should_stop,
            )
        except RunError as exc:
            return None, f"no reason codes: {exc}"
        columns = [c for c in codes.frame.columns if c.startswith("reason_")]
        lines = codes.frame[columns].itertuples(index=False, name=None)
        return [[reason for reason in line if reason] for line in lines], None

    def predict_reply(
        self,
        frame: pd.DataFrame,
        outputs: np.ndarray,
        warnings: list[str],
        reasons: list[list[str]] | None = None,
    ) -> bytes:
        """The ``/predict`` reply as JSON bytes (on a request thread); ``reasons``: one list per
        row (binary runs, when asked for)."""
        table = self.tuner.predictions_frame(frame, outputs, decision=self.decision)
        classes = list(self.spec.classes)
        probabilities = (
            table[[f"prob_{c}" for c in classes]].to_numpy(dtype=float) if classes else None
        )
        predictions = []
        for i, (row, label) in enumerate(zip(table["row"], table["prediction"], strict=True)):
            predicted = _finite(label) if self.spec.task == "regression" else str(label)
            probs = (
                None
                if probabilities is None
                else dict(zip(classes, map(float, probabilities[i]), strict=True))
            )
            predictions.append(
                Prediction(
                    row=int(row),
                    prediction=predicted,
                    probabilities=probs,
                    reasons=None if reasons is None else reasons[i],
                )
            )
        reply = PredictResponse(
            run_id=self.run_id, task=self.spec.task, predictions=predictions, warnings=warnings
        )
        return reply.model_dump_json().encode()

    def check_label(self, label: str | None) -> None:
        """A 422 when ``label`` (the explained class) is not one of the run's classes."""
        classes = list(self.spec.classes)
        if label is not None and label not in classes:
            raise invalid(
                ["body", "class"],
                f"'class' {label!r} is not one of this run's classes {classes}: pick "
                "one, or leave it out."
                if classes
                else "This is a regression run: the predicted value is explained; leave "
                "'class' out.",
            )

    def explain(
        self, frame: pd.DataFrame, label: str | None, warnings: list[str], should_stop
    ) -> bytes:
        """SHAP values as JSON, on the inference thread (explanations move the model about)."""
        explanation = explain_rows(self.run_dir, frame, class_index=label, should_stop=should_stop)
        table = explanation_frame(explanation)
        columns = list(explanation.feature_names)
        rows = [
            RowExplanation(
                row=int(line["row"]),
                values={c: float(line[c]) for c in columns},
                base_value=float(line["base_value"]),
                output_value=float(line["prediction"]),
            )
            for _, line in table.iterrows()
        ]
        reply = ExplainResponse(
            run_id=self.run_id, output=str(explanation.output_names), rows=rows, warnings=warnings
        )
        return reply.model_dump_json().encode()

    # ----------------------------------------------------------------- waiting for inference

    async def run(self, request: Request, job: Job | CallJob, n_rows: int):
        """Queue ``job`` and wait for it; drop it if the client goes away or the budget runs out."""
        try:
            self.worker.submit(job)
        except QueueFull as exc:
            raise HTTPException(
                503,
                detail=f"The server is busy ({exc}): retry in a few seconds, "
                "or send fewer rows per request.",
                headers={"Retry-After": "5"},
            ) from None
        except WorkerClosed:
            raise HTTPException(
                503, detail="The server is shutting down: retry against the new one."
            ) from None
        waiter = asyncio.wrap_future(job.future)
        try:
            while True:
                remaining = job.deadline - time.monotonic()
                if remaining <= 0:
                    raise OverBudget
                done, _ = await asyncio.wait({waiter}, timeout=min(DISCONNECT_POLL_S, remaining))
                if done:
                    return waiter.result()
                if await request.is_disconnected():
                    raise ClientGone
        finally:
            if not job.future.done():
                job.cancel()  # the inference thread drops its rows at the next step
                waiter.cancel()

    def over_budget(self, n_rows: int) -> HTTPException:
        """The 503 for ``n_rows`` rows that did not finish within the time budget."""
        what = f"{n_rows:,} row{'s' if n_rows != 1 else ''}"
        queued = self.worker.queued_rows
        budget = self.request_timeout
        return HTTPException(
            503,
            detail=f"Scoring {what} did not finish within the server's "
            f"time budget of {budget:g} s per request ({queued:,} rows are queued "
            "now): send fewer rows per request, or start the server with a larger "
            f"budget (--request-timeout SECONDS or {REQUEST_TIMEOUT_ENV}).",
        )
