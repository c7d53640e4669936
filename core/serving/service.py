"""A REST scoring service for one finished run: ``/health``, ``/predict``, ``/explain``, and an OpenAPI schema.

``create_app(run_dir)`` loads the run once (weights only through ``FineTuner.load``, i.e. safetensors) and
returns a FastAPI app; ``fintune serve RUN_DIR`` runs it under uvicorn on 127.0.0.1.

The request models are built from the run's own input columns, one field per column typed by its role
(numeric: a number or null; categorical, text, datetime: a string or null). Every input column must be
present in every row, with null for an unknown value: that is what the model was trained on, and it turns a
misspelt column name into a 422 instead of a silent missing value. Other keys are allowed, ignored by the
model and reported under ``warnings``, as ``fintune predict`` does for extra file columns.

Bad input is a 422 whose ``detail`` entries name the field (``loc``) and say the fix (``msg``); a body over
the size limit is a 413. JSON has no NaN or Infinity: such a value is a 422 too (a missing value
is null). With an API token (``FINTUNE_API_TOKEN`` for the CLI) every path but ``/health`` needs
``Authorization: Bearer <token>``, and ``/health`` shows the run's details only to those who send
it.

Concurrency: ``/health`` is a coroutine that touches no lock and no thread pool, so it answers at
any load. Parsing, tokenising and writing replies run on a few request threads of the service's
own; the model runs only on one inference thread (:mod:`core.batching`), which scores the queued
requests' rows together in micro-batches. Each request has a time budget (``request_timeout``,
default 60 s; ``FINTUNE_REQUEST_TIMEOUT``): past it the reply is a 503 saying to send fewer rows or
raise the budget, and its queued rows are dropped, as they are when the client goes away.
"""

# No ``from __future__ import annotations``: FastAPI reads the endpoints' annotations at runtime.

import asyncio
import concurrent.futures
import contextlib
import functools
import gc
import hmac
import html
import logging
import math
import os
import sys
import threading
import time
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import pandas as pd
from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, create_model
from pydantic_core import PydanticCustomError
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.formparsers import MultiPartException

from ..data.preprocess import column_warnings
from ..data.read import read_table
from ..data.schema import parse_datetime, to_number
from ..errors import ConfigError, DataError, FinTuneError
from ..explain.attributions import ExplanationCancelled, explain_rows, explanation_frame
from ..runs.fitted import load_model
from .batching import CallJob, InferenceWorker, Job, QueueFull, WorkerClosed
from .predict import decision_for

logger = logging.getLogger(__name__)

MAX_PREDICT_ROWS = 10_000  # per request; a file of any size goes through `fintune predict`
MAX_EXPLAIN_ROWS_PER_REQUEST = 20  # SHAP reruns the model per column and row: seconds per row on a CPU
MAX_BODY_BYTES = 10 * 1024 * 1024
MIN_TOKEN_CHARS = 16
MAX_REPORTED_ERRORS = 20  # a 10,000-row file with one bad column would otherwise list 10,000 errors
TOKEN_ENV = "FINTUNE_API_TOKEN"
REQUEST_TIMEOUT_ENV = "FINTUNE_REQUEST_TIMEOUT"
THREADS_ENV = "FINTUNE_SERVE_THREADS"
DEFAULT_REQUEST_TIMEOUT = 60.0  # seconds from a request's arrival to its reply
INFERENCE_BATCH_ROWS = 64  # rows per forward pass: MiniLM on a CPU is as fast per row as at 256
ENCODE_CHUNK_ROWS = 256  # rows prepared and tokenised at a time (short GIL holds)
DISCONNECT_POLL_S = 0.1  # how often a waiting request checks that its client is still there

_EXPECTED = {
    "numeric": "a number or null",
    "categorical": "a string or null",
    "text": "a string or null",
    "datetime": "a date string such as 2024-03-31 (ISO 8601) or null",
}


# --------------------------------------------------------------------------- response models


class InputColumn(BaseModel):
    name: str
    role: str = Field(description="numeric, categorical, text or datetime")


class Limits(BaseModel):
    max_predict_rows: int
    max_explain_rows: int
    max_body_bytes: int


class Inference(BaseModel):
    """How the model runs, and the work waiting for it now."""

    device: str
    precision: str = Field(description="bf16 or fp16 (autocast) or fp32")
    threads: int = Field(description="torch intra-op threads of the inference thread")
    batch_size: int = Field(description="rows per forward pass, from all queued requests together")
    max_length: int = Field(description="tokens per text; longer texts are truncated")
    request_timeout_s: float = Field(description="time budget per request, from its arrival")
    queued_requests: int
    queued_rows: int
    rows_scored: int = Field(description="since the server started")
    rows_dropped: int = Field(description="rows not scored: their client went away or their time "
                                          "budget ran out")


class Health(BaseModel):
    """The run being served. Without the API token (when one is set) only ``status`` and ``run_id``."""

    status: str
    run_id: str
    task: str | None = None
    target: str | None = None
    backbone: str | None = None
    classes: list[str] | None = None
    positive_class: str | None = None
    threshold: float | None = Field(None, description="binary: positive-class probability at which a row is "
                                                      "labelled positive; null: the most probable class")
    columns: list[InputColumn] | None = None
    limits: Limits | None = None
    inference: Inference | None = None


class Prediction(BaseModel):
    row: int = Field(description="position of the row in the request (0-based)")
    prediction: str | float | None = Field(description="class label, or the predicted value (regression)")
    probabilities: dict[str, float] | None = Field(None, description="classification: probability per class")


class PredictResponse(BaseModel):
    run_id: str
    task: str
    predictions: list[Prediction]
    warnings: list[str] = Field(description="e.g. columns the model does not use, which were ignored")


class RowExplanation(BaseModel):
    row: int
    values: dict[str, float] = Field(description="SHAP value per input column")
    base_value: float = Field(description="the output for the reference row")
    output_value: float = Field(description="base_value + the sum of the values: the model's output for the row")


class ExplainResponse(BaseModel):
    run_id: str
    output: str = Field(description="what is explained: the class whose probability it is, or the target")
    rows: list[RowExplanation]
    warnings: list[str]


# --------------------------------------------------------------------------- request models from the run


def _refuse_nan(value):
    """JSON has no NaN or Infinity (Python's json.dumps writes them anyway): refuse them rather than
    read a missing value or the category "nan". A missing value is null."""
    if isinstance(value, float) and not math.isfinite(value):
        spelt = "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
        raise PydanticCustomError("not_finite", "{value} is not a JSON value", {"value": spelt})
    return value


def _row_model(spec) -> type[BaseModel]:
    """One required, nullable field per input column. Aliases carry the column names, which need not be
    Python identifiers; extra keys are allowed (reported as warnings, ignored by the model)."""
    fields: dict[str, Any] = {}
    for i, column in enumerate(spec.feature_columns):
        role = spec.roles[column]
        kind = float if role == "numeric" else str
        described = Field(alias=column, title=column, description=f"{role}: {_EXPECTED[role]}")
        fields[f"column_{i}"] = (Annotated[kind | None, BeforeValidator(_refuse_nan)], described)
    # coerce_numbers_to_str: a category coded 3 reads as "3", as str(3) does when the table is serialised.
    config = ConfigDict(extra="allow", coerce_numbers_to_str=True)
    return create_model("Row", __config__=config, **fields)


def _request_models(spec, max_predict_rows: int, max_explain_rows: int) -> tuple[type[BaseModel], type[BaseModel]]:
    row = _row_model(spec)
    strict = ConfigDict(extra="forbid")
    predict = create_model(
        "PredictRequest", __config__=strict,
        rows=(list[row], Field(min_length=1, max_length=max_predict_rows, description="rows to score")),
    )
    explain = create_model(
        "ExplainRequest", __config__=strict,
        rows=(list[row], Field(min_length=1, max_length=max_explain_rows, description="rows to explain")),
        label=(str | None, Field(None, alias="class", description="class whose probability is explained "
                                 "(default: a binary run's positive class, else the last; leave out for regression)")),
    )
    return predict, explain


# --------------------------------------------------------------------------- validation messages


def _where(loc: tuple) -> str:
    """``rows[3]['income']`` from a pydantic location."""
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f"[{part!r}]" if text else str(part))
    return text or "The body"


def _message(error: dict, spec, max_rows: int) -> str:
    loc, kind, msg = tuple(error.get("loc", ())), error.get("type", ""), error.get("msg", "")
    where = _where(loc)
    if kind == "json_invalid":
        return f"The body is not valid JSON ({msg}): send {{\"rows\": [{{...}}, ...]}} with Content-Type: application/json."
    if loc == () and kind in ("model_type", "model_attributes_type", "dict_type"):
        return "The body must be a JSON object: send {\"rows\": [{column: value, ...}, ...]}."
    if loc == ("rows",):
        if kind == "missing":
            return "The body has no 'rows': send {\"rows\": [{column: value, ...}, ...]}."
        if kind == "too_short":
            return "'rows' is empty: send at least one row."
        if kind == "too_long":
            actual = error.get("ctx", {}).get("actual_length")
            return f"'rows' has {actual if actual is not None else 'too many'} rows; at most {max_rows} per request: split them."
        return f"'rows' must be a list of objects, one per row ({msg})."
    if len(loc) == 1 and kind == "extra_forbidden":
        return f"Unknown field {loc[0]!r} at the top of the body: put columns inside 'rows'."
    if len(loc) == 2 and loc[0] == "rows":
        return f"{where} must be an object of column: value ({msg})."
    if len(loc) == 3 and loc[0] == "rows" and loc[2] in spec.roles:
        column = loc[2]
        if kind == "missing":
            return f"{_where(loc[:2])} lacks {column!r}, a column the model was trained on: add it (null when unknown)."
        if kind == "not_finite":
            value = error.get("ctx", {}).get("value", "NaN")
            return (f"{where}: {value} is not a JSON value (JSON has no NaN or Infinity): send "
                    f"{_EXPECTED[spec.roles[column]]}; null marks a missing value.")
        return f"{where}: {msg}; send {_EXPECTED[spec.roles[column]]}."
    return f"{where}: {msg}."


def _capped(problems: list[dict]) -> list[dict]:
    if len(problems) <= MAX_REPORTED_ERRORS:
        return problems
    more = len(problems) - MAX_REPORTED_ERRORS
    return [*problems[:MAX_REPORTED_ERRORS], {"loc": ["body"], "msg": f"... and {more} more errors.",
                                              "type": "too_many_errors"}]


def _problems(errors: list[dict], spec, max_rows: int, prefix: tuple = ("body",)) -> list[dict]:
    """Pydantic errors as FastAPI's ``detail`` entries, with messages that say the fix; never echoing input."""
    return _capped([{"loc": [*prefix, *error.get("loc", ())], "msg": _message(error, spec, max_rows),
                     "type": error.get("type", "")} for error in errors])


def _invalid(loc: list, msg: str, kind: str = "value_error") -> HTTPException:
    return HTTPException(422, detail=[{"loc": loc, "msg": msg, "type": kind}])


def _given(series: pd.Series) -> np.ndarray:
    """Cells that hold a value (not null, not blank)."""
    blank = series.map(lambda v: isinstance(v, str) and not v.strip()).to_numpy(dtype=bool)
    return series.notna().to_numpy() & ~blank


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _value_errors(frame: pd.DataFrame, spec, name_row) -> list[dict]:
    """Numeric and date cells the model would silently read as missing, named by row and column."""
    problems = []
    for role, parse, wanted in (("numeric", lambda s: np.isfinite(to_number(s)), "a finite number"),
                                ("datetime", lambda s: parse_datetime(s).notna().to_numpy(), "a date")):
        for column in spec.columns(role):
            series = frame[column]
            bad = np.flatnonzero(_given(series) & ~parse(series))
            for i in bad:
                loc, where = name_row(int(i), column)
                problems.append({"loc": loc, "type": f"{role}_value",
                                 "msg": f"{where}: {_short(series.iloc[i])} is not {wanted}; send "
                                        f"{_EXPECTED[role]}."})
    return _capped(problems)


def _json_row(i: int, column: str) -> tuple[list, str]:
    return ["body", "rows", i, column], f"rows[{i}][{column!r}]"


def _csv_row(i: int, column: str) -> tuple[list, str]:
    return ["body", "file", i, column], f"column {column!r}, data row {i + 1} of the file"


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


def _is_json(media: str) -> bool:
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


def _finite(value) -> float | None:
    value = float(value)
    return value if np.isfinite(value) else None


# --------------------------------------------------------------------------- the token and the body limit


def _authorized(headers: list[tuple[bytes, bytes]], token: str | None) -> bool:
    if token is None:
        return True
    for name, value in headers:
        if name.lower() == b"authorization" and value[:7].lower() == b"bearer ":
            return hmac.compare_digest(value[7:].strip(), token.encode())
    return False


class _Guard:
    """ASGI middleware in front of every route: the bearer token (when set), then the body size limit.

    The body is read here, up to the limit, so neither a long Content-Length nor a chunked stream can
    make a route buffer more than ``max_body_bytes``.
    """

    def __init__(self, app, *, token: str | None, max_body_bytes: int):
        self.app = app
        self.token = token
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_nosniff(message):
            if message["type"] == "http.response.start":  # never let a browser read JSON as HTML
                message["headers"] = [*message.get("headers", []), (b"x-content-type-options", b"nosniff")]
            await send(message)

        if scope["path"] != "/health" and not _authorized(scope["headers"], self.token):
            reply = JSONResponse({"detail": "Missing or wrong API token: send the header "
                                            "'Authorization: Bearer <token>' with the server's FINTUNE_API_TOKEN."},
                                 status_code=401, headers={"WWW-Authenticate": "Bearer"})
            await reply(scope, receive, send_nosniff)
            return
        too_large = JSONResponse({"detail": f"The request body is over {self.max_body_bytes:,} bytes: send fewer "
                                            "rows per request."}, status_code=413)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_body_bytes):
            await too_large(scope, receive, send_nosniff)
            return
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                await too_large(scope, receive, send_nosniff)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body, replayed = b"".join(chunks), False

        async def replay():
            nonlocal replayed
            if replayed:
                return await receive()  # after the body: wait for the disconnect, as the server would
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send_nosniff)


# --------------------------------------------------------------------------- the service


class _OverBudget(Exception):
    """The request's time budget ran out."""


class _ClientGone(Exception):
    """The client closed the connection before its reply was ready."""


def _usable_cores() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _serving_threads(threads: int | None) -> int:
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
                raise ConfigError(f"{THREADS_ENV}={raw!r}: set a whole number of threads, "
                                  "1 or more.")
            return int(raw)
        return max(1, min(torch.get_num_threads(), _usable_cores() - 1))
    if threads < 1:
        raise ConfigError(f"threads={threads}: use 1 or more.")
    return threads


def _request_timeout(value: float | None) -> float:
    if value is None:
        raw = os.environ.get(REQUEST_TIMEOUT_ENV, "").strip()
        if not raw:
            return DEFAULT_REQUEST_TIMEOUT
        try:
            value = float(raw)
        except ValueError:
            raise ConfigError(f"{REQUEST_TIMEOUT_ENV}={raw!r}: set the time budget per request in "
                              "seconds, e.g. 60.") from None
    if not math.isfinite(value) or value <= 0:
        raise ConfigError(f"The request timeout is {value!r} s: use a positive number of seconds, "
                          "e.g. 60.")
    return float(value)


class _Service:
    """The loaded run and what the routes do with it. The model runs only on the inference thread
    (``self.worker``), so no request waits on a lock in the event loop's thread pool."""

    def __init__(self, run_dir: Path, *, max_predict_rows: int, max_explain_rows: int,
                 max_body_bytes: int, request_timeout: float, threads: int, batch_size: int):
        from ..training.devices import autocast_dtype, resolve_device

        self.run_dir = run_dir
        self.tuner = load_model(run_dir)
        self.decision = decision_for(run_dir, self.tuner)
        self.spec = self.tuner.spec_
        self.limits = Limits(max_predict_rows=max_predict_rows, max_explain_rows=max_explain_rows,
                             max_body_bytes=max_body_bytes)
        self.predict_model, self.explain_model = _request_models(self.spec, max_predict_rows, max_explain_rows)
        self.request_timeout = request_timeout
        self.threads = threads
        train = self.tuner.config.train
        try:
            self.device = resolve_device(train.device)
        except ConfigError:  # trained on a GPU this machine lacks: serve on what is here
            logger.warning("the run's device %r is not available here; serving on the best one",
                           train.device)
            self.device = resolve_device("auto")
        self.dtype = autocast_dtype(self.device, train.precision)
        self.tokenizer_lock = threading.Lock()  # one tokenizer, called from the request threads
        # Parsing, tokenising and writing replies: a few threads of their own, not the event loop's
        # pool of 40. More threads than cores only queue for the GIL, and the event loop (/health)
        # would queue behind them.
        self.request_threads = concurrent.futures.ThreadPoolExecutor(
            max_workers=max(1, min(4, _usable_cores())), thread_name_prefix="fintune-request")
        self.worker = InferenceWorker(self._forward, batch_size=batch_size,
                                      max_queued_rows=10 * max_predict_rows,
                                      setup=self._setup_thread)
        self._health = Health(status="ok", run_id=self.run_id)
        self._details = self._health_details()

    @property
    def run_id(self) -> str:
        return self.run_dir.name

    async def off_loop(self, fn, *args):
        """``fn(*args)`` on a request thread: the event loop stays free for /health and the rest."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.request_threads, functools.partial(fn, *args))

    def close(self) -> None:
        self.worker.close()
        self.request_threads.shutdown(wait=False, cancel_futures=True)

    @property
    def precision(self) -> str:
        import torch

        names = {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}
        return names.get(self.dtype, str(self.dtype))

    def _health_details(self) -> dict:
        spec = self.spec
        return Health(
            status="ok", run_id=self.run_id, task=spec.task, target=spec.target,
            backbone=self.tuner.config.model.backbone, classes=list(spec.classes),
            positive_class=spec.positive_class if spec.task == "binary" else None,
            threshold=self.decision.threshold if self.decision is not None and spec.task == "binary" else None,
            columns=[InputColumn(name=c, role=spec.roles[c]) for c in spec.feature_columns],
            limits=self.limits,
        ).model_dump(mode="json", exclude_unset=True)

    def health(self, *, details: bool) -> dict:
        """Built from what is in memory: no lock, no model, nothing that waits on inference."""
        if not details:
            return self._health.model_dump(mode="json", exclude_unset=True)
        worker = self.worker
        inference = Inference(
            device=self.device.type, precision=self.precision, threads=self.threads,
            batch_size=worker.batch_size, max_length=self.tuner.max_length_,
            request_timeout_s=self.request_timeout, queued_requests=worker.queued_jobs,
            queued_rows=max(0, worker.queued_rows), rows_scored=worker.rows_scored,
            rows_dropped=worker.rows_dropped)
        return {**self._details, "inference": inference.model_dump(mode="json")}

    # ----------------------------------------------------------------- inputs

    def rows_from_json(self, body: bytes, model: type[BaseModel], max_rows: int):
        """The rows as a frame of the model's input columns, warnings for the keys it does not use,
        and the parsed body."""
        try:
            parsed = model.model_validate_json(body)
        except ValidationError as exc:
            raise HTTPException(422, detail=_problems(exc.errors(include_url=False), self.spec, max_rows)) from None
        # Only the model's columns become the frame: 100,000 stray keys are a warning, not a table.
        columns = {column: [getattr(row, f"column_{i}") for row in parsed.rows]
                   for i, column in enumerate(self.spec.feature_columns)}
        frame = pd.DataFrame(columns, index=pd.RangeIndex(len(parsed.rows)))
        extra = dict.fromkeys(key for row in parsed.rows for key in (row.model_extra or ()))
        warnings = column_warnings(self.tuner.preprocessor_.unused_columns(extra))
        self._check_values(frame, _json_row)
        return frame, warnings, parsed

    def rows_from_csv(self, raw: bytes) -> tuple[pd.DataFrame, list[str]]:
        if raw[:4] == b"PAR1":
            raise _invalid(["body", "file"], "The upload is a Parquet file: send a CSV file with a header row.")
        # read_table's own message asks for enough rows to train on; scoring needs one.
        if b"\x00" not in raw and sum(1 for line in raw.splitlines() if line.strip()) == 1:
            raise _invalid(["body", "file"], "The CSV has no data rows: send a header row and at least one row.")
        try:
            frame = read_table(raw, filename="upload.csv")
        except DataError as exc:
            raise _invalid(["body", "file"], str(exc)) from None
        limit = self.limits.max_predict_rows
        if len(frame) > limit:
            raise _invalid(["body", "file"], f"The CSV has {len(frame):,} rows; at most {limit:,} per request: "
                                             "split the file.", "too_long")
        try:
            warnings = self.tuner.preprocessor_.check_columns(frame)
        except DataError as exc:
            raise _invalid(["body", "file"], str(exc), "missing") from None
        frame = frame.reset_index(drop=True)
        self._check_values(frame, _csv_row)
        return frame, warnings

    def _check_values(self, frame: pd.DataFrame, name_row) -> None:
        problems = _value_errors(frame, self.spec, name_row)
        if problems:
            raise HTTPException(422, detail=problems)

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
        for start in range(0, len(inputs), ENCODE_CHUNK_ROWS):
            if time.monotonic() >= deadline:
                raise _OverBudget
            features = tuner.preprocessor_.transform(inputs.iloc[start : start + ENCODE_CHUNK_ROWS])
            numeric.append(features.numeric)
            with self.tokenizer_lock:
                input_ids += tuner.tokenizer_(features.texts, truncation=True,
                                              max_length=tuner.max_length_)["input_ids"]
        return Job(input_ids, np.concatenate(numeric), deadline=deadline)

    def _setup_thread(self) -> None:
        import torch

        if torch.get_num_threads() != self.threads:
            torch.set_num_threads(self.threads)
        self.tuner.model_.eval()

    def _forward(self, input_ids: list[list[int]], numeric: np.ndarray) -> np.ndarray:
        """Raw outputs of one step's rows, on the inference thread: one padded batch, one pass."""
        import torch

        from ..training.loop import EncodedRows, collate

        model = self.tuner.model_
        if next(model.parameters()).device != self.device:  # an explanation put it back on the CPU
            model.to(self.device)
        rows = EncodedRows(input_ids, numeric, None)
        batch = collate(rows, np.arange(len(input_ids)), pad_id=self.tuner.pad_id_)
        autocast = (contextlib.nullcontext() if self.dtype is None
                    else torch.autocast(device_type=self.device.type, dtype=self.dtype))
        inputs = [batch[k].to(self.device) for k in ("input_ids", "attention_mask", "numeric")]
        with torch.inference_mode(), autocast:
            out = model(*inputs)
        return out.float().cpu().numpy()

    def predict_reply(self, frame: pd.DataFrame, outputs: np.ndarray, warnings: list[str]) -> bytes:
        table = self.tuner.predictions_frame(frame, outputs, decision=self.decision)
        classes = list(self.spec.classes)
        probabilities = table[[f"prob_{c}" for c in classes]].to_numpy(dtype=float) if classes else None
        predictions = []
        for i, (row, label) in enumerate(zip(table["row"], table["prediction"], strict=True)):
            predicted = _finite(label) if self.spec.task == "regression" else str(label)
            probs = None if probabilities is None else dict(zip(classes, map(float, probabilities[i]), strict=True))
            predictions.append(Prediction(row=int(row), prediction=predicted, probabilities=probs))
        reply = PredictResponse(run_id=self.run_id, task=self.spec.task, predictions=predictions,
                                warnings=warnings)
        return reply.model_dump_json().encode()

    def check_label(self, label: str | None) -> None:
        classes = list(self.spec.classes)
        if label is not None and label not in classes:
            raise _invalid(["body", "class"], f"'class' {label!r} is not one of this run's classes {classes}: pick "
                                              "one, or leave it out." if classes else
                           "This is a regression run: the predicted value is explained; leave 'class' out.")

    def explain(self, frame: pd.DataFrame, label: str | None, warnings: list[str],
                should_stop) -> bytes:
        """SHAP values as JSON, on the inference thread (explanations move the model about)."""
        explanation = explain_rows(self.run_dir, frame, class_index=label, should_stop=should_stop)
        table = explanation_frame(explanation)
        columns = list(explanation.feature_names)
        rows = [RowExplanation(row=int(line["row"]), values={c: float(line[c]) for c in columns},
                               base_value=float(line["base_value"]), output_value=float(line["prediction"]))
                for _, line in table.iterrows()]
        reply = ExplainResponse(run_id=self.run_id, output=str(explanation.output_names), rows=rows,
                                warnings=warnings)
        return reply.model_dump_json().encode()

    # ----------------------------------------------------------------- waiting for inference

    async def run(self, request: Request, job: Job | CallJob, n_rows: int):
        """Queue ``job`` and wait for it; drop it if the client goes away or the budget runs out."""
        try:
            self.worker.submit(job)
        except QueueFull as exc:
            raise HTTPException(503, detail=f"The server is busy ({exc}): retry in a few seconds, "
                                            "or send fewer rows per request.",
                                headers={"Retry-After": "5"}) from None
        except WorkerClosed:
            raise HTTPException(503, detail="The server is shutting down: retry against the new "
                                            "one.") from None
        waiter = asyncio.wrap_future(job.future)
        try:
            while True:
                remaining = job.deadline - time.monotonic()
                if remaining <= 0:
                    raise _OverBudget
                done, _ = await asyncio.wait({waiter}, timeout=min(DISCONNECT_POLL_S, remaining))
                if done:
                    return waiter.result()
                if await request.is_disconnected():
                    raise _ClientGone
        finally:
            if not job.future.done():
                job.cancel()  # the inference thread drops its rows at the next step
                waiter.cancel()

    def over_budget(self, n_rows: int) -> HTTPException:
        what = f"{n_rows:,} row{'s' if n_rows != 1 else ''}"
        queued = self.worker.queued_rows
        budget = self.request_timeout
        return HTTPException(503, detail=f"Scoring {what} did not finish within the server's "
                             f"time budget of {budget:g} s per request ({queued:,} rows are queued "
                             "now): send fewer rows per request, or start the server with a larger "
                             f"budget (--request-timeout SECONDS or {REQUEST_TIMEOUT_ENV}).")


# --------------------------------------------------------------------------- the app


def _csv_upload_schema() -> dict:
    return {"type": "object", "required": ["file"],
            "properties": {"file": {"type": "string", "format": "binary",
                                    "description": "CSV with a header row naming the run's input columns"}}}


def create_app(
    run_dir: str | Path,
    *,
    token: str | None = None,
    max_predict_rows: int = MAX_PREDICT_ROWS,
    max_explain_rows: int = MAX_EXPLAIN_ROWS_PER_REQUEST,
    max_body_bytes: int = MAX_BODY_BYTES,
    request_timeout: float | None = None,
    threads: int | None = None,
    batch_size: int = INFERENCE_BATCH_ROWS,
) -> FastAPI:
    """A FastAPI app scoring with the run in ``run_dir``, loaded once, now.

    ``token``: when given, every path but ``/health`` needs ``Authorization: Bearer <token>``.
    ``request_timeout``: seconds from a request's arrival to its reply, else a 503 (default
    ``FINTUNE_REQUEST_TIMEOUT`` or 60). ``threads``: torch intra-op threads of the inference thread
    (default ``FINTUNE_SERVE_THREADS``, else one fewer than the CPUs, at least 1; torch's setting is
    process-wide). ``batch_size``: rows per forward pass, gathered across queued requests.
    Raises :class:`~core.errors.RunError` when the run has no saved model.
    """
    if token is not None and len(token.strip()) < MIN_TOKEN_CHARS:
        raise ConfigError(f"The API token has {len(token.strip())} characters: use at least {MIN_TOKEN_CHARS}, e.g. "
                          "python -c 'import secrets; print(secrets.token_urlsafe(32))'.")
    if min(max_predict_rows, max_explain_rows, max_body_bytes, batch_size) < 1:
        raise ConfigError("max_predict_rows, max_explain_rows, max_body_bytes and batch_size "
                          "must be at least 1.")
    token = token.strip() if token is not None else None
    timeout = _request_timeout(request_timeout)
    service = _Service(Path(run_dir), max_predict_rows=max_predict_rows,
                       max_explain_rows=max_explain_rows, max_body_bytes=max_body_bytes,
                       request_timeout=timeout, threads=_serving_threads(threads),
                       batch_size=batch_size)
    spec = service.spec
    logger.info("serving run %s (%s, target %r): %s, %s, %d threads, %d rows per batch, %g s "
                "per request", service.run_id, spec.task, spec.target, service.device,
                service.precision, service.threads, batch_size, timeout)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        # The model, torch and the libraries are ~400,000 objects that live as long as the server:
        # a full garbage collection scanning them stops every thread for 0.1-0.2 s on a busy CPU,
        # /health included. Frozen, they are left out of every collection.
        gc.collect()
        gc.freeze()
        # A thread that wants the GIL waits up to the switch interval for a busy one to let go: at
        # 1 ms instead of 5 the event loop answers /health sooner while other threads work.
        sys.setswitchinterval(0.001)
        yield
        await asyncio.to_thread(service.close)

    # A constant title: FastAPI writes it unescaped into the /docs page's HTML.
    app = FastAPI(title="FinTune scoring service", version="1", redoc_url=None, lifespan=lifespan,
                  description=html.escape(f"Scores rows with run {service.run_id}: {spec.task}, target "
                                          f"{spec.target}. Request rows take the run's input columns."))
    app.add_middleware(_Guard, token=token, max_body_bytes=max_body_bytes)
    app.state.inference = service.worker  # the inference queue and its counters (tests, monitoring)

    @app.exception_handler(RequestValidationError)
    async def _on_invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": _problems(list(exc.errors()), spec, max_predict_rows, prefix=())},
                            status_code=422)

    @app.exception_handler(FinTuneError)
    async def _on_fintune_error(request: Request, exc: FinTuneError) -> JSONResponse:
        if isinstance(exc, (DataError, ConfigError)):
            return JSONResponse({"detail": [{"loc": ["body"], "msg": str(exc), "type": "value_error"}]},
                                status_code=422)
        return JSONResponse({"detail": str(exc)}, status_code=409)  # the run cannot do this, whatever is sent

    errors = {401: {"description": "missing or wrong API token"}, 413: {"description": "body over the size limit"},
              415: {"description": "neither JSON nor a multipart CSV upload"},
              422: {"description": "invalid rows: each detail entry names the field and the fix"},
              503: {"description": "over the time budget per request, or too much work queued: "
                                   "send fewer rows"}}

    async def scored(request: Request, job: Job | CallJob, n_rows: int):
        """The job's result, or the reply that says why there is none."""
        try:
            return await service.run(request, job, n_rows)
        except _OverBudget:
            raise service.over_budget(n_rows) from None
        except (FinTuneError, HTTPException, _ClientGone):
            raise
        except ExplanationCancelled:  # stopped for the budget or a client that left
            if time.monotonic() >= job.deadline:
                raise service.over_budget(n_rows) from None
            raise _ClientGone from None
        except Exception as exc:  # noqa: BLE001 - the log has the traceback; the client one line
            # A failed forward pass was logged with its traceback on the inference thread.
            logger.error("scoring %d rows failed: %s", n_rows, exc,
                         exc_info=exc if isinstance(job, CallJob) else None)
            raise HTTPException(500, detail=f"Scoring failed on the server ({type(exc).__name__}: "
                                            f"{exc}); the server log has the details.") from None

    async def answered(request: Request, work) -> Response:
        try:
            return await work(request, time.monotonic() + service.request_timeout)
        except _OverBudget:
            raise service.over_budget(0) from None
        except _ClientGone:
            logger.info("%s %s: the client went away; its queued rows were dropped", request.method,
                        request.url.path)
            return Response(status_code=499)  # nobody reads it: the connection is gone

    def json_body(model_name: str, *, csv: bool = False) -> dict:
        content = {"application/json": {"schema": {"$ref": f"#/components/schemas/{model_name}"}}}
        if csv:
            content["multipart/form-data"] = {"schema": _csv_upload_schema()}
        return {"requestBody": {"required": True, "content": content}}

    @app.get("/health", response_model=Health, response_model_exclude_unset=True)
    async def health(request: Request) -> JSONResponse:
        """Liveness, and the run being served: task, classes, target, backbone, input columns,
        limits and how inference runs (with the queue now). Never waits for inference."""
        return JSONResponse(service.health(details=_authorized(request.scope["headers"], token)))

    @app.post("/predict", response_model=PredictResponse, responses=errors,
              openapi_extra=json_body("PredictRequest", csv=True))
    async def predict(request: Request) -> Response:
        """Predictions (and class probabilities) for JSON ``{"rows": [...]}`` or a CSV uploaded as ``file``.

        Binary labels follow the run's saved decision threshold, as ``fintune predict`` does.
        """
        media = _media_type(request)
        if media != "multipart/form-data" and not _is_json(media):
            raise _unsupported(media, csv=True)

        async def work(request: Request, deadline: float) -> Response:
            if media == "multipart/form-data":
                raw = await _uploaded_csv(request)
                frame, warnings = await service.off_loop(service.rows_from_csv, raw)
            else:
                body = await request.body()
                frame, warnings, _ = await service.off_loop(
                    service.rows_from_json, body, service.predict_model, max_predict_rows)
            try:
                job = await service.off_loop(service.encode, frame, deadline)
            except _OverBudget:
                raise service.over_budget(len(frame)) from None
            outputs = await scored(request, job, len(frame))
            content = await service.off_loop(service.predict_reply, frame, outputs, warnings)
            return Response(content, media_type="application/json")

        return await answered(request, work)

    @app.post("/explain", response_model=ExplainResponse, responses=errors, openapi_extra=json_body("ExplainRequest"))
    async def explain(request: Request) -> Response:
        """SHAP values per input column for up to the explain limit of JSON rows (slow on a CPU)."""
        media = _media_type(request)
        if not _is_json(media):
            raise _unsupported(media, csv=False)

        async def work(request: Request, deadline: float) -> Response:
            body = await request.body()
            frame, warnings, parsed = await service.off_loop(
                service.rows_from_json, body, service.explain_model, max_explain_rows)
            service.check_label(parsed.label)

            def explain_now(should_stop):
                return service.explain(frame, parsed.label, warnings, should_stop)

            job = CallJob(explain_now, deadline=deadline)
            return Response(await scored(request, job, len(frame)), media_type="application/json")

        return await answered(request, work)

    def openapi() -> dict:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            for model in (service.predict_model, service.explain_model):
                model_schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
                components.update(model_schema.pop("$defs", {}))
                components[model.__name__] = model_schema
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi
    return app


def _unsupported(media: str, *, csv: bool) -> HTTPException:
    alternative = " or a CSV as the multipart field 'file'" if csv else ""
    return HTTPException(415, detail=f"Content-Type {media or 'none'!r} is not accepted: send JSON "
                                     f"(Content-Type: application/json){alternative}.")


async def _uploaded_csv(request: Request) -> bytes:
    try:
        form = await request.form(max_files=1, max_fields=10)
    except (MultiPartException, StarletteHTTPException) as exc:
        detail = getattr(exc, "detail", None) or getattr(exc, "message", "")
        raise _invalid(["body"], f"The upload is not valid multipart/form-data ({detail}): send the CSV as the "
                                 "multipart field 'file', e.g. curl -F file=@rows.csv.") from None
    try:
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise _invalid(["body", "file"], "No file in the multipart field 'file': upload the CSV as file, "
                                             "e.g. curl -F file=@rows.csv.", "missing")
        return await upload.read()
    finally:
        await form.close()
