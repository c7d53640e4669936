"""What-if: change cells of one row and score it the way the run serves.

:func:`edit_row` changes cells of one row (checked against the run's columns and roles),
:func:`score_rows` gives the probability and the decision, and :func:`value_choices` the values
an editor offers per categorical column. The smallest changes that flip a decision are searched
in :mod:`.counterfactual`.
"""

from __future__ import annotations

import logging
import numbers
from pathlib import Path

import numpy as np
import pandas as pd

from ..data.schema import is_missing
from ..errors import ConfigError, DataError
from .attributions import _resolve, _training_rows

logger = logging.getLogger(__name__)

MAX_CHOICES = 200  # categories offered per column by value_choices


# --------------------------------------------------------------------------- decision wording


def _decision(tuner, run_dir: Path | None, decision):
    """The decision in force: the one given, the run's saved one, or the positive class at 0.5."""
    from ..runs import folder as runs
    from ..stats.thresholds import Decision

    if decision is not None:
        return decision
    saved = runs.read_decision(run_dir) if run_dir is not None else None
    return saved or Decision(str(tuner.spec_.positive_class), 0.5)


def _labels(spec, decision) -> tuple[str, str]:
    """The decision's wording: (flagged, approved), e.g. ("bad (flagged)", "good (approved)")."""
    classes = [str(c) for c in spec.classes]
    positive = str(decision.positive_class)
    if positive not in classes or len(classes) != 2:
        raise ConfigError(
            f"The decision is for class {positive!r}, but this run's classes are {classes}: "
            "choose the threshold again for this run."
        )
    negative = classes[1 - classes.index(positive)]
    return f"{positive} (flagged)", f"{negative} (approved)"


# --------------------------------------------------------------------------- scoring and editing


def _check_row(tuner, row, what: str = "row") -> None:
    if not isinstance(row, pd.DataFrame):
        raise DataError(
            f"{what} must be a one-row pandas DataFrame (e.g. frame.iloc[[i]]), "
            f"not {type(row).__name__}."
        )
    if len(row) != 1:
        raise DataError(f"{what} has {len(row)} rows: pass exactly one, e.g. frame.iloc[[i]].")
    tuner.preprocessor_.check_columns(row)


def score_rows(source, rows: pd.DataFrame, *, decision=None) -> pd.DataFrame:
    """The model's answer for each row: one line per row, scored the way the run serves.

    ``source`` is a run folder or a fitted FineTuner. Columns: ``row`` (the input's index), the
    target when ``rows`` has it, ``prediction``, one ``prob_<class>`` per class, and ``decision``.
    A binary run also gets ``probability`` (of ``positive_class``) and ``threshold``, and its
    ``decision`` names the class and what it means, "bad (flagged)" or "good (approved)": flagged
    when the probability is at or above the threshold of ``decision`` (a
    :class:`core.stats.thresholds.Decision`; default: the run's saved one, else 0.5). Other
    tasks' ``decision`` is the prediction as text.
    """
    tuner, run_dir = _resolve(source)
    if not isinstance(rows, pd.DataFrame) or rows.empty:
        raise DataError(
            "rows must be a pandas DataFrame with at least one row of the run's columns."
        )
    tuner.preprocessor_.check_columns(rows)
    spec = tuner.spec_
    if spec.task != "binary":
        table = tuner.predictions_frame(rows)
        if spec.task == "regression":
            table["decision"] = [_format(v) for v in table["prediction"]]
        else:
            table["decision"] = table["prediction"].astype(str)
        return table
    decision = _decision(tuner, run_dir, decision)
    flagged, approved = _labels(spec, decision)
    table = tuner.predictions_frame(rows, decision=decision)
    table["probability"] = table[f"prob_{decision.positive_class}"]
    table["positive_class"] = str(decision.positive_class)
    table["threshold"] = float(decision.threshold)
    table["decision"] = np.where(table["probability"] >= decision.threshold, flagged, approved)
    return table


def edit_row(source, row: pd.DataFrame, changes: dict[str, object]) -> pd.DataFrame:
    """A copy of the one-row frame ``row`` with ``changes`` ({column: new value}) applied.

    Columns must be input columns of the run. A numeric column's value must read as a number
    ("4500", "15,000" and 4500 do; "" or None is a missing value), a date column's as a date;
    a categorical column takes any value (one unseen in training counts as "other"), in the
    column's own type where it reads as one. Raises :class:`DataError` naming the column or value.
    """
    from ..data.schema import parse_datetime, to_number

    tuner, _ = _resolve(source)
    _check_row(tuner, row)
    spec = tuner.spec_
    if not isinstance(changes, dict):
        raise DataError(
            f"changes must be a dict of column -> new value, not {type(changes).__name__}."
        )
    edited = row.copy()
    for column, value in changes.items():
        role = _input_role(spec, column, "edit one of")
        missing = is_missing(value)
        if role == "numeric":
            number = np.nan if missing else to_number(pd.Series([value], dtype=object))[0]
            if not missing and not np.isfinite(number):
                raise DataError(
                    f"{value!r} is not a number, and {column!r} is a numeric column: enter a "
                    "number such as 4500 (or leave it empty for a missing value)."
                )
            value = _plain_number(number, integral=pd.api.types.is_integer_dtype(row[column]))
        elif role == "datetime":
            if not missing and pd.isna(parse_datetime(pd.Series([str(value)])).iloc[0]):
                raise DataError(
                    f"{value!r} is not a date, and {column!r} is a date column: enter a date such "
                    "as 2024-03-31."
                )
        elif role == "categorical" and isinstance(value, str) and not missing:
            value = _in_column_type(value, row[column])
        # A whole new column: the edited value keeps its own type (4500.5 in an int column).
        edited[column] = pd.Series([np.nan if missing else value], index=row.index, dtype=object)
        if role == "numeric":
            edited[column] = pd.to_numeric(edited[column])
    return edited


def _input_role(spec, column: str, instead: str) -> str:
    """``column``'s role, raising DataError when it is the target or not an input of the run;
    ``instead`` leads the run's input columns in the message ("edit one of")."""
    if column == spec.target:
        raise DataError(
            f"{column!r} is the target the model predicts, not an input: {instead} "
            f"{_listing(spec.feature_columns)}."
        )
    if column not in spec.feature_columns:
        raise DataError(
            f"{column!r} is not an input column of this run: {instead} "
            f"{_listing(spec.feature_columns)}."
        )
    return spec.roles[column]


def _in_column_type(value: str, column: pd.Series):
    """A typed value for a categorical column read from text: "2" is 2 in a column of numbers."""
    if pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column):
        number = pd.to_numeric(pd.Series([value]), errors="coerce").iloc[0]
        if pd.notna(number):
            return _plain_number(float(number), integral=pd.api.types.is_integer_dtype(column))
    return value


def _plain_number(number: float, *, integral: bool):
    if not np.isfinite(number):
        return np.nan
    return int(number) if integral and float(number).is_integer() else float(number)


def _listing(columns: list[str], limit: int = 20) -> str:
    shown = ", ".join(map(repr, columns[:limit]))
    more = len(columns) - limit
    return f"{shown} (and {more} more)" if more > 0 else shown


def _format(value) -> str:
    """A value as a phrase shows it: 15,000; 0.125; "rent"; (missing)."""
    if is_missing(value) and not isinstance(value, str):
        return "(missing)"
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return f'"{value}"'
    if float(value).is_integer():
        return f"{int(value):,}"
    return f"{value:,.0f}" if abs(value) >= 1e5 else f"{value:,.6g}"


def value_choices(source) -> dict[str, list]:
    """{categorical column: the categories seen in the run's training rows, most frequent first}
    (at most :data:`MAX_CHOICES` each): the values a what-if editor offers."""
    tuner, run_dir = _resolve(source)
    if run_dir is None:
        raise ConfigError("value_choices needs a run folder, whose training rows are known.")
    training = _training_rows(run_dir, tuner)
    choices = {}
    for column in tuner.spec_.columns("categorical"):
        seen = training[column].value_counts(dropna=True).index[:MAX_CHOICES]
        choices[column] = [v.item() if isinstance(v, np.generic) else v for v in seen]
    return choices
