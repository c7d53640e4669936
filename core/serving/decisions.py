"""The service's decision routes: the smallest changes that flip one row's decision
(``POST /counterfactuals``, on the inference thread) and fairness by group of the served run
(``GET /fairness``, from the run folder's files: no model).
"""

# No ``from __future__ import annotations``: pydantic builds the models from runtime annotations.
import math
from pathlib import Path

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, create_model

from ..explain.counterfactual import MAX_CHANGES, counterfactuals
from ..runs.fairness import run_fairness

MAX_RESULTS = 20


class Change(BaseModel):
    """One changed input."""

    column: str
    old: str | float | None
    new: str | float | None


class CounterfactualOut(BaseModel):
    """One set of changes that flips the decision, scored again as the run serves."""

    changes: list[Change]
    phrase: str = Field(description="e.g. 'credit_amount 15,000 → 4,500; duration_months 48 → 24'")
    probability: float = Field(description="of the positive class, after the changes")
    decision: str = Field(description="after the changes, e.g. 'good (approved)'")


class CounterfactualResponse(BaseModel):
    """The reply of ``/counterfactuals``."""

    run_id: str
    probability: float = Field(description="the row's probability of the positive class")
    decision: str
    target_decision: str = Field(description="what a flip gives")
    threshold: float
    results: list[CounterfactualOut] = Field(description="fewest changes first, then smallest")
    candidates_scored: int
    seconds: float
    message: str = Field(description="why the list is empty, else ''")
    warnings: list[str]


class FairnessResponse(BaseModel):
    """The reply of ``/fairness``: the tables of ``fintune fairness``, one record per line."""

    run_id: str
    positive_class: str
    threshold: float
    rows: int
    rows_used: str = Field(description="test, or held_out (test and validation rows)")
    columns: list[str]
    groups: list[dict] = Field(description="per (column, group): rows, positives, the metrics")
    disparities: list[dict] = Field(description="approval ratio to the most-approved group")
    gaps: list[dict] = Field(description="parity, equal-opportunity and equalized-odds gaps")
    notes: list[str]


def counterfactual_request_model(row: type[BaseModel]) -> type[BaseModel]:
    """``CounterfactualRequest``: one row of the run's columns and the columns that may change."""
    return create_model(
        "CounterfactualRequest",
        __config__=ConfigDict(extra="forbid"),
        rows=(list[row], Field(min_length=1, max_length=1, description="the one row")),
        actionable=(
            list[str],
            Field(min_length=1, description="number or category columns that may change"),
        ),
        max_changes=(int, Field(2, ge=1, le=MAX_CHANGES, description="columns changed at once")),
        results=(int, Field(5, ge=1, le=MAX_RESULTS, description="results at most")),
    )


def _plain(value):
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return None
    return value if isinstance(value, (int, float)) else str(value)


def counterfactual_reply(
    run_dir: Path, frame: pd.DataFrame, parsed, warnings: list[str]
) -> CounterfactualResponse:
    """The search for the request's row (raises core errors, which the service answers 422)."""
    found = counterfactuals(
        run_dir,
        frame,
        list(parsed.actionable),
        max_changes=parsed.max_changes,
        n_results=parsed.results,
    )
    return CounterfactualResponse(
        run_id=run_dir.name,
        probability=found.probability,
        decision=found.decision,
        target_decision=found.target_decision,
        threshold=found.threshold,
        results=[
            CounterfactualOut(
                changes=[
                    Change(column=c, old=_plain(old), new=_plain(new))
                    for c, (old, new) in result.changes.items()
                ],
                phrase=result.phrase,
                probability=result.probability,
                decision=result.decision,
            )
            for result in found.results
        ],
        candidates_scored=found.n_scored,
        seconds=round(found.seconds, 3),
        message=found.message,
        warnings=warnings,
    )


def _records(frame: pd.DataFrame) -> list[dict]:
    return [{str(k): _plain(v) for k, v in record.items()} for record in frame.to_dict("records")]


def fairness_reply(run_dir: Path, by: list[str], rows: str, bands: int) -> FairnessResponse:
    """Fairness by group of the served run (raises core errors, which the service answers)."""
    result = run_fairness(run_dir, by or None, rows=rows, bands=bands)
    return FairnessResponse(
        run_id=run_dir.name,
        positive_class=str(result.positive_class),
        threshold=float(result.threshold),
        rows=int(result.rows),
        rows_used=result.rows_used,
        columns=list(result.columns),
        groups=_records(result.groups),
        disparities=_records(result.disparities),
        gaps=_records(result.gaps),
        notes=list(result.notes),
    )
