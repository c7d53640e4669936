"""A REST scoring service for one finished run: ``/health``, ``/predict``, ``/explain``, and an OpenAPI schema.

``create_app(run_dir)`` loads the run once (weights only through ``FineTuner.load``, i.e. safetensors) and
returns a FastAPI app; ``fintune serve RUN_DIR`` runs it under uvicorn on 127.0.0.1.

The request models are built from the run's own input columns, one field per column typed by its role
(numeric: a number or null; categorical, text, datetime: a string or null). Every input column must be
present in every row, with null for an unknown value: that is what the model was trained on, and it turns a
misspelt column name into a 422 instead of a silent missing value. Other keys are allowed, ignored by the
model and reported under ``warnings``, as ``fintune predict`` does for extra file columns.

Bad input is a 422 whose ``detail`` entries name the field (``loc``) and say the fix (``msg``); a body over
the size limit is a 413. With an API token (``FINTUNE_API_TOKEN`` for the CLI) every path but ``/health``
needs ``Authorization: Bearer <token>``, and ``/health`` shows the run's details only to those who send it.
"""

# No ``from __future__ import annotations``: FastAPI reads the endpoints' annotations at runtime.

import hmac
import html
import logging
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.formparsers import MultiPartException

from .data import parse_datetime, read_table, to_number
from .errors import ConfigError, DataError, FinTuneError
from .explain import explain_rows, explanation_frame
from .predict import decision_for, load_model

logger = logging.getLogger(__name__)

MAX_PREDICT_ROWS = 10_000
MAX_EXPLAIN_ROWS = 20  # SHAP reruns the model per column and row: seconds per row on a CPU
MAX_BODY_BYTES = 10 * 1024 * 1024
MIN_TOKEN_CHARS = 16
MAX_REPORTED_ERRORS = 20  # a 10,000-row file with one bad column would otherwise list 10,000 errors
TOKEN_ENV = "FINTUNE_API_TOKEN"

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


def _row_model(spec) -> type[BaseModel]:
    """One required, nullable field per input column. Aliases carry the column names, which need not be
    Python identifiers; extra keys are allowed (reported as warnings, ignored by the model)."""
    fields: dict[str, Any] = {}
    for i, column in enumerate(spec.feature_columns):
        role = spec.roles[column]
        kind = float if role == "numeric" else str
        fields[f"column_{i}"] = (kind | None, Field(alias=column, title=column, description=f"{role}: {_EXPECTED[role]}"))
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


class _Service:
    """The loaded run and what the routes do with it. One lock around the model: inference moves it
    between devices, so two requests must not use it at once."""

    def __init__(self, run_dir: Path, *, max_predict_rows: int, max_explain_rows: int, max_body_bytes: int):
        self.run_dir = run_dir
        self.tuner = load_model(run_dir)
        self.decision = decision_for(run_dir, self.tuner)
        self.spec = self.tuner.spec_
        self.limits = Limits(max_predict_rows=max_predict_rows, max_explain_rows=max_explain_rows,
                             max_body_bytes=max_body_bytes)
        self.predict_model, self.explain_model = _request_models(self.spec, max_predict_rows, max_explain_rows)
        self.lock = threading.Lock()

    @property
    def run_id(self) -> str:
        return self.run_dir.name

    def health(self, *, details: bool) -> Health:
        if not details:
            return Health(status="ok", run_id=self.run_id)
        spec = self.spec
        return Health(
            status="ok", run_id=self.run_id, task=spec.task, target=spec.target,
            backbone=self.tuner.config.model.backbone, classes=list(spec.classes),
            positive_class=spec.positive_class if spec.task == "binary" else None,
            threshold=self.decision.threshold if self.decision is not None and spec.task == "binary" else None,
            columns=[InputColumn(name=c, role=spec.roles[c]) for c in spec.feature_columns],
            limits=self.limits,
        )

    # ----------------------------------------------------------------- inputs

    def rows_from_json(self, body: bytes, model: type[BaseModel], max_rows: int):
        try:
            parsed = model.model_validate_json(body)
        except ValidationError as exc:
            raise HTTPException(422, detail=_problems(exc.errors(include_url=False), self.spec, max_rows)) from None
        frame = pd.DataFrame.from_records([row.model_dump(by_alias=True) for row in parsed.rows])
        self._check_values(frame, _json_row)
        return frame, parsed

    def rows_from_csv(self, raw: bytes) -> pd.DataFrame:
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
            self.tuner.preprocessor_.check_columns(frame)
        except DataError as exc:
            raise _invalid(["body", "file"], str(exc), "missing") from None
        frame = frame.reset_index(drop=True)
        self._check_values(frame, _csv_row)
        return frame

    def _check_values(self, frame: pd.DataFrame, name_row) -> None:
        problems = _value_errors(frame, self.spec, name_row)
        if problems:
            raise HTTPException(422, detail=problems)

    # ----------------------------------------------------------------- work

    def predict(self, frame: pd.DataFrame) -> PredictResponse:
        warnings = self.tuner.preprocessor_.check_columns(frame)
        with self.lock:
            table = self.tuner.predictions_frame(frame, decision=self.decision)
        classes = list(self.spec.classes)
        probabilities = table[[f"prob_{c}" for c in classes]].to_numpy(dtype=float) if classes else None
        predictions = []
        for i, (row, label) in enumerate(zip(table["row"], table["prediction"], strict=True)):
            predicted = _finite(label) if self.spec.task == "regression" else str(label)
            probs = None if probabilities is None else dict(zip(classes, map(float, probabilities[i]), strict=True))
            predictions.append(Prediction(row=int(row), prediction=predicted, probabilities=probs))
        return PredictResponse(run_id=self.run_id, task=self.spec.task, predictions=predictions, warnings=warnings)

    def explain(self, frame: pd.DataFrame, label: str | None) -> ExplainResponse:
        classes = list(self.spec.classes)
        if label is not None and label not in classes:
            raise _invalid(["body", "class"], f"'class' {label!r} is not one of this run's classes {classes}: pick "
                                              "one, or leave it out." if classes else
                           "This is a regression run: the predicted value is explained; leave 'class' out.")
        warnings = self.tuner.preprocessor_.check_columns(frame)
        with self.lock:
            explanation = explain_rows(self.run_dir, frame, class_index=label)
        table = explanation_frame(explanation)
        columns = list(explanation.feature_names)
        rows = [RowExplanation(row=int(line["row"]), values={c: float(line[c]) for c in columns},
                               base_value=float(line["base_value"]), output_value=float(line["prediction"]))
                for _, line in table.iterrows()]
        return ExplainResponse(run_id=self.run_id, output=str(explanation.output_names), rows=rows, warnings=warnings)


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
    max_explain_rows: int = MAX_EXPLAIN_ROWS,
    max_body_bytes: int = MAX_BODY_BYTES,
) -> FastAPI:
    """A FastAPI app scoring with the run in ``run_dir``, loaded once, now.

    ``token``: when given, every path but ``/health`` needs ``Authorization: Bearer <token>``.
    Raises :class:`~core.errors.RunError` when the run has no saved model.
    """
    if token is not None and len(token.strip()) < MIN_TOKEN_CHARS:
        raise ConfigError(f"The API token has {len(token.strip())} characters: use at least {MIN_TOKEN_CHARS}, e.g. "
                          "python -c 'import secrets; print(secrets.token_urlsafe(32))'.")
    if min(max_predict_rows, max_explain_rows, max_body_bytes) < 1:
        raise ConfigError("max_predict_rows, max_explain_rows and max_body_bytes must be at least 1.")
    token = token.strip() if token is not None else None
    service = _Service(Path(run_dir), max_predict_rows=max_predict_rows, max_explain_rows=max_explain_rows,
                       max_body_bytes=max_body_bytes)
    spec = service.spec
    logger.info("serving run %s (%s, target %r)", service.run_id, spec.task, spec.target)

    # A constant title: FastAPI writes it unescaped into the /docs page's HTML.
    app = FastAPI(title="FinTune scoring service", version="1", redoc_url=None,
                  description=html.escape(f"Scores rows with run {service.run_id}: {spec.task}, target "
                                          f"{spec.target}. Request rows take the run's input columns."))
    app.add_middleware(_Guard, token=token, max_body_bytes=max_body_bytes)

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
              422: {"description": "invalid rows: each detail entry names the field and the fix"}}

    def json_body(model_name: str, *, csv: bool = False) -> dict:
        content = {"application/json": {"schema": {"$ref": f"#/components/schemas/{model_name}"}}}
        if csv:
            content["multipart/form-data"] = {"schema": _csv_upload_schema()}
        return {"requestBody": {"required": True, "content": content}}

    @app.get("/health", response_model=Health, response_model_exclude_unset=True)
    def health(request: Request) -> Health:
        """The run being served: task, classes, target, backbone, input columns and limits."""
        return service.health(details=_authorized(request.scope["headers"], token))

    @app.post("/predict", response_model=PredictResponse, responses=errors,
              openapi_extra=json_body("PredictRequest", csv=True))
    async def predict(request: Request) -> PredictResponse:
        """Predictions (and class probabilities) for JSON ``{"rows": [...]}`` or a CSV uploaded as ``file``.

        Binary labels follow the run's saved decision threshold, as ``fintune predict`` does.
        """
        media = _media_type(request)
        if media == "multipart/form-data":
            raw = await _uploaded_csv(request)
            frame = await run_in_threadpool(service.rows_from_csv, raw)
        elif _is_json(media):
            body = await request.body()
            frame, _ = await run_in_threadpool(service.rows_from_json, body, service.predict_model, max_predict_rows)
        else:
            raise _unsupported(media, csv=True)
        return await run_in_threadpool(service.predict, frame)

    @app.post("/explain", response_model=ExplainResponse, responses=errors, openapi_extra=json_body("ExplainRequest"))
    async def explain(request: Request) -> ExplainResponse:
        """SHAP values per input column for up to the explain limit of JSON rows (slow on a CPU)."""
        media = _media_type(request)
        if not _is_json(media):
            raise _unsupported(media, csv=False)
        body = await request.body()
        frame, parsed = await run_in_threadpool(service.rows_from_json, body, service.explain_model, max_explain_rows)
        return await run_in_threadpool(service.explain, frame, parsed.label)

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
