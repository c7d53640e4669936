"""Rows into train, validation and test: stratified random, or chronological with an embargo."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from ..config import DataConfig
from ..errors import DataError
from .schema import TableSpec, parse_datetime, target_labels

_DATE_NAME = re.compile(r"date|time|day|period|month", re.I)


# --------------------------------------------------------------------------- splitting


def resolve_split(spec: TableSpec, config: DataConfig) -> str:
    """The split a config means for this table: ``auto`` is by time when there is a date column."""
    if config.split != "auto":
        return config.split
    dates = spec.columns("datetime")
    if not dates:
        return "random"
    named = [c for c in dates if _DATE_NAME.search(str(c))]
    return f"time:{(named or dates)[0]}"


def describe_split(spec: TableSpec, config: DataConfig) -> str:
    """One line for people: "chronological by 'date' (embargo 5 dates)" or "stratified random"."""
    split = resolve_split(spec, config)
    if split == "random":
        return "stratified random" if spec.task != "regression" else "random"
    embargo = f", embargo {config.embargo} dates" if config.embargo else ""
    return f"chronological by {split[5:]!r}{embargo}"


def split_rows(
    frame: pd.DataFrame, spec: TableSpec, config: DataConfig, seed: int
) -> dict[str, np.ndarray]:
    """Row positions for train / val / test (labelled rows only)."""
    labelled = np.flatnonzero(frame[spec.target].notna().to_numpy())
    split = resolve_split(spec, config)
    if split.startswith("time:"):
        return _chronological_split(frame, labelled, split[5:], config)
    return _random_split(frame, spec, labelled, config, seed)


def _random_split(frame, spec, rows, config, seed) -> dict[str, np.ndarray]:
    from sklearn.model_selection import train_test_split

    strata = None
    if spec.task != "regression":
        labels = target_labels(frame[spec.target].iloc[rows])
        if labels.value_counts().min() >= 3:
            strata = labels.to_numpy()
    holdout = config.val_fraction + config.test_fraction
    train, rest = train_test_split(rows, test_size=holdout, random_state=seed, stratify=strata)
    rest_strata = None
    if strata is not None:
        rest_labels = target_labels(frame[spec.target].iloc[rest])
        if rest_labels.value_counts().min() >= 2:
            rest_strata = rest_labels.to_numpy()
    val, test = train_test_split(
        rest, test_size=config.test_fraction / holdout, random_state=seed, stratify=rest_strata
    )
    return {"train": np.sort(train), "val": np.sort(val), "test": np.sort(test)}


def _chronological_split(frame, rows, column, config) -> dict[str, np.ndarray]:
    times = parse_datetime(frame[column].iloc[rows])
    if times.isna().mean() > 0.5:
        raise DataError(
            f"Column {column!r} does not hold dates: choose a date column for the time split."
        )
    keep = times.notna().to_numpy()
    rows, times = rows[keep], times[keep]
    order = np.argsort(times.to_numpy(), kind="stable")
    rows, stamps = rows[order], times.to_numpy()[order]
    n = len(rows)
    # Cut at timestamp boundaries so no later split holds a row from the same instant as train.
    cut_val = _boundary(stamps, int(round(n * (1 - config.val_fraction - config.test_fraction))))
    cut_test = _boundary(stamps, int(round(n * (1 - config.test_fraction))))
    # The embargo drops the first dates after each cut, so labels that look ahead (a 5-day return)
    # cannot overlap the next period's rows.
    val_start = _skip_dates(stamps, cut_val, config.embargo)
    test_start = _skip_dates(stamps, cut_test, config.embargo)
    parts = {"train": rows[:cut_val], "val": rows[val_start:cut_test], "test": rows[test_start:]}
    for name, part in parts.items():
        if len(part) == 0:
            embargo = f" after an embargo of {config.embargo} dates" if config.embargo else ""
            raise DataError(
                f"The time split by {column!r} leaves the {name} split empty{embargo}: too few "
                "distinct dates; use a smaller embargo, a random split or a finer date column."
            )
    return parts


def _skip_dates(stamps: np.ndarray, position: int, n_dates: int) -> int:
    """The position ``n_dates`` distinct dates after ``position``."""
    for _ in range(n_dates):
        if position >= len(stamps):
            break
        position = _boundary(stamps, position + 1) if position + 1 < len(stamps) else len(stamps)
    return position


def _boundary(stamps: np.ndarray, position: int) -> int:
    position = min(max(position, 1), len(stamps) - 1)
    while position < len(stamps) and stamps[position] == stamps[position - 1]:
        position += 1
    return position
