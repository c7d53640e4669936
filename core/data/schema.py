"""The table's schema: each column's role, the task, the target's classes, checked (TableSpec).

Everything here raises :class:`DataError` with the column and the fix.
"""

from __future__ import annotations

import difflib
import math
import numbers
import re
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..config import DataConfig
from ..errors import DataError
from .read import MIN_ROWS, _check_columns

MAX_CLASSES = 1000
_ID_NAME = re.compile(r"(^|[_\s-])(id|uuid|guid|key|number|no|nr)$|^id[_\s-]|identifier", re.I)
_DATE_HINT = re.compile(r"\d{1,4}[-/.]\d{1,2}[-/.]\d{1,4}|\d{4}-\d{2}|\d{1,2}:\d{2}")


# --------------------------------------------------------------------------- roles and task


def infer_roles(frame: pd.DataFrame, target: str | None = None) -> dict[str, str]:
    """Guess each column's role: numeric, categorical, text, datetime, id, or ignore (constant)."""
    return {c: _infer_role(frame[c], c) for c in frame.columns if c != target}


def _infer_role(series: pd.Series, name: str) -> str:
    values = series.dropna()
    if values.empty or values.nunique() <= 1:
        return "ignore"
    if pd.api.types.is_bool_dtype(series):
        return "categorical"
    if pd.api.types.is_datetime64_any_dtype(series):
        return "datetime"
    if pd.api.types.is_numeric_dtype(series):
        if _ID_NAME.search(name) and values.nunique() == len(values):
            return "id"
        return "numeric"
    strings = values.astype(str)
    if _looks_datetime(strings):
        return "datetime"
    if np.isfinite(to_number(strings)).mean() > 0.98:
        return "numeric"  # numbers stored as text: "1,234.50", "$12", "3.5%"
    n_unique = strings.nunique()
    unique_ratio = n_unique / len(strings)
    mean_words = strings.str.split().str.len().mean()
    if n_unique <= 50 or unique_ratio < 0.05:
        return "categorical"
    if unique_ratio > 0.98 and (_ID_NAME.search(name) or mean_words < 1.5):
        return "id"
    if mean_words >= 2 or strings.str.len().mean() >= 20:
        return "text"
    return "categorical"


_NUMBER_NOISE = re.compile(r"[,\s$€£¥%]")


def to_number(series: pd.Series) -> np.ndarray:
    """Floats from a column, reading "1,234.50", "$12" and "3.5%" as numbers; NaN where not a
    number."""
    if pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series):
        values = series.to_numpy(dtype=float, na_value=np.nan).copy()
    else:
        cleaned = series.astype(str).str.replace(_NUMBER_NOISE, "", regex=True)
        values = pd.to_numeric(cleaned, errors="coerce").to_numpy(dtype=float, copy=True)
    values[~np.isfinite(values)] = np.nan
    return values


def is_missing(value) -> bool:
    """One cell's value is missing: None, NaN or NaT, a number that is not finite, or blank text."""
    if isinstance(value, str):
        return not value.strip()
    if isinstance(value, numbers.Real):
        return not math.isfinite(float(value))
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):  # a list or array is a value, not a missing one
        return False


def _looks_datetime(strings: pd.Series) -> bool:
    sample = strings.head(200)
    if sample.str.len().max() > 40 or not sample.str.contains(_DATE_HINT).mean() > 0.9:
        return False
    return parse_datetime(sample).notna().mean() > 0.9


def parse_datetime(series: pd.Series) -> pd.Series:
    """Parse dates in ISO or common formats; unparseable values become NaT."""
    if pd.api.types.is_datetime64_any_dtype(series):
        return series
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            parsed = pd.to_datetime(series, errors="coerce", format="ISO8601", utc=True)
        except (ValueError, TypeError):
            parsed = pd.Series(pd.NaT, index=series.index)
        if parsed.notna().mean() < 0.9:
            parsed = pd.to_datetime(series, errors="coerce", format="mixed", utc=True)
    return parsed.dt.tz_localize(None)


def infer_task(target: pd.Series) -> str:
    """binary, multiclass or regression, from the target's values."""
    values = target.dropna()
    n_unique = values.nunique()
    if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
        with np.errstate(invalid="ignore"):  # inf is not integral: mod gives NaN
            integral = bool(np.all(np.mod(values.to_numpy(dtype=float), 1) == 0))
        if n_unique > 2 and not (integral and n_unique <= 20):
            return "regression"
    return "binary" if n_unique <= 2 else "multiclass"


# --------------------------------------------------------------------------- validation


@dataclass(frozen=True)
class TableSpec:
    """The validated view of a table: roles per column, the task and the class labels."""

    target: str
    task: str
    roles: dict[str, str]
    classes: tuple[str, ...]  # empty for regression
    warnings: tuple[str, ...] = ()
    positive_class: str | None = None  # binary: the event class (default, fraud) the metrics score

    @property
    def positive_index(self) -> int | None:
        """Index of the positive class in ``classes`` (binary only)."""
        return (
            self.classes.index(self.positive_class) if self.positive_class in self.classes else None
        )

    def columns(self, role: str) -> list[str]:
        return [c for c, r in self.roles.items() if r == role]

    @property
    def feature_columns(self) -> list[str]:
        return [
            c for c, r in self.roles.items() if r in ("numeric", "categorical", "text", "datetime")
        ]

    def to_dict(self) -> dict:
        return {
            "target": self.target,
            "task": self.task,
            "roles": self.roles,
            "classes": list(self.classes),
            "warnings": list(self.warnings),
            "positive_class": self.positive_class,
        }

    @classmethod
    def from_dict(cls, raw: dict) -> TableSpec:
        return cls(
            target=raw["target"],
            task=raw["task"],
            roles=dict(raw["roles"]),
            classes=tuple(raw["classes"]),
            warnings=tuple(raw.get("warnings", ())),
            positive_class=raw.get("positive_class")
            or _default_positive(raw["task"], tuple(raw["classes"])),
        )


def describe_table(frame: pd.DataFrame, config: DataConfig) -> TableSpec:
    """Validate the table against the config and settle roles, task and classes."""
    _check_columns(
        list(map(str, frame.columns)), "The table"
    )  # frames can arrive without read_table
    target = config.target
    if target not in frame.columns:
        close = difflib.get_close_matches(target, list(map(str, frame.columns)), n=1)
        hint = (
            f" Did you mean {close[0]!r}?" if close else f" Columns are: {_preview(frame.columns)}."
        )
        raise DataError(f"Target column {target!r} is not in the table.{hint}")
    unknown = [c for c in config.roles if c not in frame.columns]
    if unknown:
        raise DataError(
            f"Role given for column {unknown[0]!r}, which is not in the table: fix the name."
        )
    notes: list[str] = []
    y = frame[target]
    missing = int(y.isna().sum())
    if missing == len(y):
        raise DataError(
            f"Target column {target!r} has no values: choose a column that holds the labels."
        )
    if missing:
        notes.append(f"{missing} rows with no value in target {target!r} are left out.")
        y = y.dropna()
    if len(y) < MIN_ROWS:
        raise DataError(
            f"Only {len(y)} labelled rows: FinTune needs at least {MIN_ROWS} to train and test."
        )
    task = config.task or infer_task(y)
    classes: tuple[str, ...] = ()
    positive_class = None
    if task == "regression":
        numeric = pd.to_numeric(y, errors="coerce")
        bad = numeric.isna() | ~np.isfinite(numeric.fillna(0).to_numpy(dtype=float))
        if bad.any():
            label = bad.idxmax()
            problem = "is not numeric" if pd.isna(numeric.loc[label]) else "is not a finite number"
            raise DataError(
                f"Target column {target!r} {problem} at row {frame.index.get_loc(label) + 2} "
                f"(value {str(y.loc[label])!r}): regression needs finite numbers; fix the value or "
                "choose a classification task."
            )
    else:
        labels = target_labels(y)
        counts = labels.value_counts()
        if len(counts) < 2:
            raise DataError(
                f"Target column {target!r} has only one class ({counts.index[0]!r}): a classifier "
                "needs at least two; choose another target or add rows of the other classes."
            )
        if len(counts) > MAX_CLASSES:
            raise DataError(
                f"Target column {target!r} has {len(counts)} classes, more than {MAX_CLASSES}: "
                "choose a coarser target, or set the task to regression if it is a number."
            )
        if task == "binary" and len(counts) > 2:
            raise DataError(
                f"Task is binary but {target!r} has {len(counts)} classes: set task multiclass."
            )
        classes = tuple(sorted(counts.index, key=_natural_key))
        if task == "binary":
            positive_class = _positive_class(config.positive_class, counts, classes, target)
    roles = infer_roles(frame, target)
    roles.update(config.roles)
    time_column = config.time_column
    if time_column is not None:
        if time_column not in frame.columns:
            raise DataError(
                f"Split column {time_column!r} is not in the table: name a date column."
            )
        if time_column == target:
            raise DataError(
                "The chronological split column cannot be the target: name a date column."
            )
    if not any(role in ("numeric", "categorical", "text", "datetime") for role in roles.values()):
        raise DataError(
            f"No usable feature: every column besides {target!r} is an identifier, constant or "
            "ignored. Add feature columns or change a column's role."
        )
    if config.positive_class is not None and task != "binary":
        raise DataError(
            f"A positive class is for binary targets, and {target!r} is {task}: leave it unset."
        )
    return TableSpec(
        target=target,
        task=task,
        roles=roles,
        classes=classes,
        warnings=tuple(notes),
        positive_class=positive_class,
    )


def _positive_class(
    given: str | None, counts: pd.Series, classes: tuple[str, ...], target: str
) -> str:
    """The event class: the one given, else the rarer class (defaults and frauds are the
    minority)."""
    if given is not None:
        if str(given) not in classes:
            raise DataError(
                f"Positive class {given!r} is not a value of {target!r}: choose one of "
                f"{list(classes)}."
            )
        return str(given)
    rarest = counts[counts == counts.min()].index
    return max(rarest, key=_natural_key)  # a tie (50/50) keeps the conventional "1" / later label


def _default_positive(task: str, classes: tuple[str, ...]) -> str | None:
    """Specs saved before positive classes existed scored ``classes[1]``."""
    return classes[1] if task == "binary" and len(classes) == 2 else None


def target_labels(y: pd.Series) -> pd.Series:
    """Class labels as strings; integral floats (1.0) read as integers (1)."""
    if pd.api.types.is_float_dtype(y) and np.all(np.mod(y.dropna().to_numpy(), 1) == 0):
        y = y.astype("Int64")
    return y.astype(str).where(y.notna())


def _natural_key(label: str):
    try:
        return (0, float(label), "")
    except ValueError:
        return (1, 0.0, label)


def _preview(columns, n: int = 8) -> str:
    names = [repr(str(c)) for c in list(columns)[:n]]
    return ", ".join(names) + (", ..." if len(columns) > n else "")
