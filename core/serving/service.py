"""A REST scoring service for one finished run: ``/health``, ``/predict``, ``/explain``,
``/counterfactuals``, ``/fairness``, OpenAPI.

``create_app(run_dir)`` loads the run once (weights only through ``FineTuner.load``, i.e.
safetensors) and returns a FastAPI app; ``fintune serve RUN_DIR`` runs it under uvicorn on
127.0.0.1. ``/predict`` gives each row a binary run's decision declines its reasons
(:mod:`core.explain.reasons`); ``/counterfactuals`` and ``/fairness`` are in :mod:`.decisions`.
This module holds the app and its routes; the served run is in
:mod:`.runtime`, the request and response models in :mod:`.schemas`, the 422 messages in
:mod:`.validation`, the token and body limit in :mod:`.guard`.

The request models are built from the run's own input columns, one field per column typed by its
role (numeric: a number or null; categorical, text, datetime: a string or null). Every input column
must be present in every row, with null for an unknown value: that is what the model was trained
on, and it turns a misspelt column name into a 422 instead of a silent missing value. Other keys
are allowed, ignored by the model and reported under ``warnings``, as ``fintune predict`` does for
extra file columns.

Bad input is a 422 whose ``detail`` entries name the field (``loc``) and say the fix (``msg``); a
body over the size limit is a 413. JSON has no NaN or Infinity: such a value is a 422 too (a
missing value is null). With an API token (``FINTUNE_API_TOKEN`` for the CLI) every path but
``/health`` needs ``Authorization: Bearer <token>``, and ``/health`` shows the run's details only
to those who send it.

Concurrency: ``/health`` is a coroutine that touches no lock and no thread pool, so it answers at
any load. Parsing, tokenising and writing replies run on a few request threads of the service's
own; the model runs only on one inference thread (:mod:`core.serving.batching`), which scores the
queued requests' rows together in micro-batches. Each request has a time budget
(``request_timeout``, default 60 s; ``FINTUNE_REQUEST_TIMEOUT``): past it the reply is a 503 saying
to send fewer rows or raise the budget, and its queued rows are dropped, as they are when the
client goes away.
"""

# No ``from __future__ import annotations``: FastAPI reads the endpoints' annotations at runtime.

import asyncio
import contextlib
import gc
import html
import logging
import sys
import time
from pathlib import Path
from typing import Annotated, Literal

from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response

from ..errors import ConfigError, DataError, FinTuneError
from ..explain.attributions import ExplanationCancelled
from . import decisions
from .batching import CallJob, Job
from .guard import Guard, authorized
from .runtime import (
    MAX_REASON_ROWS,
    ClientGone,
    OverBudget,
    ServedRun,
    resolve_threads,
    resolve_timeout,
)
from .schemas import ExplainResponse, Health, PredictResponse, row_model
from .validation import invalid, is_json, media_type, problems, unsupported, uploaded_csv

logger = logging.getLogger(__name__)

MAX_PREDICT_ROWS = 10_000  # per request; a file of any size goes through `fintune predict`
MAX_EXPLAIN_ROWS_PER_REQUEST = 20  # SHAP reruns the model per column and row: seconds a row (CPU)
MAX_BODY_BYTES = 10 * 1024 * 1024
MIN_TOKEN_CHARS = 16
TOKEN_ENV = "FINTUNE_API_TOKEN"
INFERENCE_BATCH_ROWS = 64  # rows per forward pass: MiniLM on a CPU is as fast per row as at 256


# --------------------------------------------------------------------------- the app


def _csv_upload_schema() -> dict:
    return {
        "type": "object",
        "required": ["file"],
        "properties": {
            "file": {
                "type": "string",
                "format": "binary",
                "description": "CSV with a header row naming the run's input columns",
            }
        },
    }


def _query_flag(request: Request, name: str, *, default: bool) -> bool:
    """A true/false query parameter (``?reasons=false``); a 422 naming it when it is neither."""
    raw = request.query_params.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in ("true", "1", "yes"):
        return True
    if value in ("false", "0", "no"):
        return False
    raise invalid(["query", name], f"{name}={raw!r}: use true or false.", "bool_parsing")


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
        raise ConfigError(
            f"The API token has {len(token.strip())} characters: use at least "
            f"{MIN_TOKEN_CHARS}, e.g. "
            "python -c 'import secrets; print(secrets.token_urlsafe(32))'."
        )
    if min(max_predict_rows, max_explain_rows, max_body_bytes, batch_size) < 1:
        raise ConfigError(
            "max_predict_rows, max_explain_rows, max_body_bytes and batch_size must be at least 1."
        )
    token = token.strip() if token is not None else None
    timeout = resolve_timeout(request_timeout)
    service = ServedRun(
        Path(run_dir),
        max_predict_rows=max_predict_rows,
        max_explain_rows=max_explain_rows,
        max_body_bytes=max_body_bytes,
        request_timeout=timeout,
        threads=resolve_threads(threads),
        batch_size=batch_size,
    )
    spec = service.spec
    logger.info(
        "serving run %s (%s, target %r): %s, %s, %d threads, %d rows per batch, %g s per request",
        service.run_id,
        spec.task,
        spec.target,
        service.device,
        service.precision,
        service.threads,
        batch_size,
        timeout,
    )

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
    app = FastAPI(
        title="FinTune scoring service",
        version="1",
        redoc_url=None,
        lifespan=lifespan,
        description=html.escape(
            f"Scores rows with run {service.run_id}: {spec.task}, "
            f"target {spec.target}. Request rows take the run's "
            "input columns."
        ),
    )
    app.add_middleware(Guard, token=token, max_body_bytes=max_body_bytes)
    app.state.inference = service.worker  # the inference queue and its counters (tests, monitoring)

    @app.exception_handler(RequestValidationError)
    async def _on_invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        detail = problems(list(exc.errors()), spec, max_predict_rows, prefix=())
        return JSONResponse({"detail": detail}, status_code=422)

    @app.exception_handler(FinTuneError)
    async def _on_fintune_error(request: Request, exc: FinTuneError) -> JSONResponse:
        if isinstance(exc, (DataError, ConfigError)):
            detail = [{"loc": ["body"], "msg": str(exc), "type": "value_error"}]
            return JSONResponse({"detail": detail}, status_code=422)
        # The run cannot do this, whatever is sent.
        return JSONResponse({"detail": str(exc)}, status_code=409)

    errors = {
        401: {"description": "missing or wrong API token"},
        413: {"description": "body over the size limit"},
        415: {"description": "neither JSON nor a multipart CSV upload"},
        422: {"description": "invalid rows: each detail entry names the field and the fix"},
        503: {
            "description": "over the time budget per request, or too much work queued: "
            "send fewer rows"
        },
    }

    async def scored(request: Request, job: Job | CallJob, n_rows: int):
        """The job's result, or the reply that says why there is none."""
        try:
            return await service.run(request, job, n_rows)
        except OverBudget:
            raise service.over_budget(n_rows) from None
        except (FinTuneError, HTTPException, ClientGone):
            raise
        except ExplanationCancelled:  # stopped for the budget or a client that left
            if time.monotonic() >= job.deadline:
                raise service.over_budget(n_rows) from None
            raise ClientGone from None
        except Exception as exc:  # noqa: BLE001 - the log has the traceback; the client one line
            # A failed forward pass was logged with its traceback on the inference thread.
            logger.error(
                "scoring %d rows failed: %s",
                n_rows,
                exc,
                exc_info=exc if isinstance(job, CallJob) else None,
            )
            raise HTTPException(
                500,
                detail=f"Scoring failed on the server ({type(exc).__name__}: "
                f"{exc}); the server log has the details.",
            ) from None

    async def reasons_for(request: Request, frame, outputs, deadline: float):
        """The declined rows' reasons, worked out on the inference thread like an explanation (so
        the event loop never waits on them); a warning instead when there are too many."""
        probabilities, n_declined = service.declined_probabilities(outputs)
        if n_declined == 0:
            return [[] for _ in range(len(frame))], None
        if n_declined > MAX_REASON_ROWS:
            return None, (
                f"No reasons: the decision declines {n_declined:,} rows of this request, and "
                f"reasons are given for up to {MAX_REASON_ROWS:,} per request: send fewer rows "
                "(or score the file with fintune predict)."
            )

        def reasons_now(should_stop):
            return service.reasons(frame, probabilities, should_stop)

        return await scored(request, CallJob(reasons_now, deadline=deadline), n_declined)

    async def answered(request: Request, work) -> Response:
        try:
            return await work(request, time.monotonic() + service.request_timeout)
        except OverBudget:
            raise service.over_budget(0) from None
        except ClientGone:
            logger.info(
                "%s %s: the client went away; its queued rows were dropped",
                request.method,
                request.url.path,
            )
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
        return JSONResponse(service.health(details=authorized(request.scope["headers"], token)))

    @app.post(
        "/predict",
        response_model=PredictResponse,
        responses=errors,
        openapi_extra=json_body("PredictRequest", csv=True),
    )
    async def predict(request: Request) -> Response:
        """Predictions (and class probabilities) for JSON ``{"rows": [...]}`` or a CSV upload.

        The CSV goes as the multipart field ``file``. Binary labels follow the run's saved
        decision threshold, as ``fintune predict`` does, and each declined row gets its
        ``reasons`` (the inputs that pushed it most toward decline, strongest first); leave them
        out with ``"reasons": false`` in the JSON body or ``?reasons=false`` for a CSV upload.
        """
        media = media_type(request)
        if media != "multipart/form-data" and not is_json(media):
            raise unsupported(media, csv=True)

        async def work(request: Request, deadline: float) -> Response:
            if media == "multipart/form-data":
                raw = await uploaded_csv(request)
                frame, warnings = await service.off_loop(service.rows_from_csv, raw)
                wants_reasons = _query_flag(request, "reasons", default=True)
            else:
                body = await request.body()
                frame, warnings, parsed = await service.off_loop(
                    service.rows_from_json, body, service.predict_model, max_predict_rows
                )
                wants_reasons = parsed.reasons
            try:
                job = await service.off_loop(service.encode, frame, deadline)
            except OverBudget:
                raise service.over_budget(len(frame)) from None
            outputs = await scored(request, job, len(frame))
            reasons = None
            if wants_reasons and service.reason_decision is not None:
                reasons, warning = await reasons_for(request, frame, outputs, deadline)
                warnings = warnings if warning is None else [*warnings, warning]
            content = await service.off_loop(
                service.predict_reply, frame, outputs, warnings, reasons
            )
            return Response(content, media_type="application/json")

        return await answered(request, work)

    @app.post(
        "/explain",
        response_model=ExplainResponse,
        responses=errors,
        openapi_extra=json_body("ExplainRequest"),
    )
    async def explain(request: Request) -> Response:
        """SHAP values per input column for up to the explain limit of JSON rows (slow on a CPU)."""
        media = media_type(request)
        if not is_json(media):
            raise unsupported(media, csv=False)

        async def work(request: Request, deadline: float) -> Response:
            body = await request.body()
            frame, warnings, parsed = await service.off_loop(
                service.rows_from_json, body, service.explain_model, max_explain_rows
            )
            service.check_label(parsed.label)

            def explain_now(should_stop):
                return service.explain(frame, parsed.label, warnings, should_stop)

            job = CallJob(explain_now, deadline=deadline)
            return Response(await scored(request, job, len(frame)), media_type="application/json")

        return await answered(request, work)

    counterfactual_model = decisions.counterfactual_request_model(row_model(spec))

    @app.post(
        "/counterfactuals",
        response_model=decisions.CounterfactualResponse,
        responses=errors,
        openapi_extra=json_body("CounterfactualRequest"),
    )
    async def counterfactuals(request: Request) -> Response:
        """The smallest changes to the ``actionable`` columns of one row that flip a binary run's
        decision, searched over the training data's values; each result scored again."""
        media = media_type(request)
        if not is_json(media):
            raise unsupported(media, csv=False)

        async def work(request: Request, deadline: float) -> Response:
            body = await request.body()
            frame, warnings, parsed = await service.off_loop(
                service.rows_from_json, body, counterfactual_model, 1
            )

            def search_now(should_stop):  # on the inference thread: the search runs the model
                reply = decisions.counterfactual_reply(service.run_dir, frame, parsed, warnings)
                return reply.model_dump_json().encode()

            job = CallJob(search_now, deadline=deadline)
            return Response(await scored(request, job, 1), media_type="application/json")

        return await answered(request, work)

    @app.get("/fairness", response_model=decisions.FairnessResponse, responses=errors)
    async def fairness(
        by: Annotated[list[str], Query(description="columns to group by (repeat)")] = (),
        rows: Annotated[Literal["test", "held_out"], Query()] = "test",
        bands: Annotated[int, Query(ge=2, le=10, description="quantile bands of numbers")] = 4,
    ) -> Response:
        """How the run's decision treats each group of the ``by`` columns on its test rows
        (default: the inputs named like protected attributes), with bootstrap intervals."""
        reply = await service.off_loop(
            decisions.fairness_reply, service.run_dir, list(by), rows, bands
        )
        return Response(reply.model_dump_json().encode(), media_type="application/json")

    def openapi() -> dict:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title, version=app.version, description=app.description, routes=app.routes
            )
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            for model in (service.predict_model, service.explain_model, counterfactual_model):
                model_schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
                components.update(model_schema.pop("$defs", {}))
                components[model.__name__] = model_schema
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi
    return app
