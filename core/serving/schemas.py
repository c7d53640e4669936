"""The service's request and response models; the request models are built from the run's columns.

One required, nullable field per input column, typed by its role (numeric: a number or null;
categorical, text, datetime: a string or null). Other keys in a row are allowed: the routes report
them under ``warnings``.
"""

# No ``from __future__ import annotations``: pydantic builds the models from runtime annotations.

import math
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, create_model
from pydantic_core import PydanticCustomError

EXPECTED = {  # what a cell of each role must hold, as the 422 messages say it
    "numeric": "a number or null",
    "categorical": "a string or null",
    "text": "a string or null",
    "datetime": "a date string such as 2024-03-31 (ISO 8601) or null",
}


# --------------------------------------------------------------------------- response models


class InputColumn(BaseModel):
    """One input column of the run and its role."""

    name: str
    role: str = Field(description="numeric, categorical, text or datetime")


class Limits(BaseModel):
    """The service's limits per request."""

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
    rows_dropped: int = Field(
        description="rows not scored: their client went away or their time budget ran out"
    )


class Health(BaseModel):
    """The run being served. Without the API token (when one is set) only status and run_id."""

    status: str
    run_id: str
    task: str | None = None
    target: str | None = None
    backbone: str | None = None
    classes: list[str] | None = None
    positive_class: str | None = None
    threshold: float | None = Field(
        None,
        description="binary: positive-class probability at "
        "which a row is labelled positive; null: "
        "the most probable class",
    )
    columns: list[InputColumn] | None = None
    limits: Limits | None = None
    inference: Inference | None = None


class Prediction(BaseModel):
    """The prediction for one request row."""

    row: int = Field(description="position of the row in the request (0-based)")
    prediction: str | float | None = Field(
        description="class label, or the predicted value (regression)"
    )
    probabilities: dict[str, float] | None = Field(
        None, description="classification: probability per class"
    )
    reasons: list[str] | None = Field(
        None,
        description="binary: for a row the decision declines, the inputs that pushed it most "
        "toward decline, strongest first (e.g. 'credit_amount 15,000: higher than 92% of "
        "applicants'); empty for an approved row; null for other tasks or when not asked for",
    )


class PredictResponse(BaseModel):
    """The reply of ``/predict``."""

    run_id: str
    task: str
    predictions: list[Prediction]
    warnings: list[str] = Field(
        description="e.g. columns the model does not use, which were ignored"
    )


class RowExplanation(BaseModel):
    """SHAP values of one request row."""

    row: int
    values: dict[str, float] = Field(description="SHAP value per input column")
    base_value: float = Field(description="the output for the reference row")
    output_value: float = Field(
        description="base_value + the sum of the values: the model's output for the row"
    )


class ExplainResponse(BaseModel):
    """The reply of ``/explain``."""

    run_id: str
    output: str = Field(
        description="what is explained: the class whose probability it is, or the target"
    )
    rows: list[RowExplanation]
    warnings: list[str]


# --------------------------------------------------------------------------- request models


def _refuse_nan(value):
    """JSON has no NaN or Infinity (Python's json.dumps writes them anyway): refuse them rather than
    read a missing value or the category "nan". A missing value is null."""
    if isinstance(value, float) and not math.isfinite(value):
        spelt = "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
        raise PydanticCustomError("not_finite", "{value} is not a JSON value", {"value": spelt})
    return value


def row_model(spec) -> type[BaseModel]:
    """One required, nullable field per input column. Aliases carry the column names, which need
    not be Python identifiers; extra keys are allowed (reported as warnings, ignored by the
    model)."""
    fields: dict[str, Any] = {}
    for i, column in enumerate(spec.feature_columns):
        role = spec.roles[column]
        kind = float if role == "numeric" else str
        described = Field(alias=column, title=column, description=f"{role}: {EXPECTED[role]}")
        fields[f"column_{i}"] = (Annotated[kind | None, BeforeValidator(_refuse_nan)], described)
    # coerce_numbers_to_str: a category coded 3 reads as "3", as str(3) does when the table is
    # serialised.
    config = ConfigDict(extra="allow", coerce_numbers_to_str=True)
    return create_model("Row", __config__=config, **fields)


def request_models(
    spec, max_predict_rows: int, max_explain_rows: int
) -> tuple[type[BaseModel], type[BaseModel]]:
    """The ``PredictRequest`` and ``ExplainRequest`` models for the run's input columns."""
    row = row_model(spec)
    strict = ConfigDict(extra="forbid")
    predict = create_model(
        "PredictRequest",
        __config__=strict,
        rows=(
            list[row],
            Field(min_length=1, max_length=max_predict_rows, description="rows to score"),
        ),
        reasons=(
            bool,
            Field(
                True,
                description="binary runs: give each declined row its reasons (false: skip "
                "them, which is faster)",
            ),
        ),
    )
    explain = create_model(
        "ExplainRequest",
        __config__=strict,
        rows=(
            list[row],
            Field(min_length=1, max_length=max_explain_rows, description="rows to explain"),
        ),
        label=(
            str | None,
            Field(
                None,
                alias="class",
                description="class whose probability is "
                "explained (default: a binary run's positive class, else the "
                "last; leave out for regression)",
            ),
        ),
    )
    return predict, explain
